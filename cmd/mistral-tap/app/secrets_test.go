package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/cmd/mistral-tap/app"
	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/testenv/fakemistral"
)

const urlSecretsConfig = `
listen: 127.0.0.1:0
upstream: %[1]s
state_dir: %[2]s
admin: {listen: %[3]s, token: admin-token-0123456789}
watch: {interval: 100ms}
log: {level: debug}
delivery:
  allow_networks: ["127.0.0.0/8"]
  retries: 0
callbacks:
  - name: gone
    events: [WORKFLOW_LAUNCHED]
    url: http://user:${PASS}@%[4]s/gone/${PATHSECRET}?q=${PLAINQ}
  - name: failing
    events: [WORKFLOW_LAUNCHED]
    url: http://%[4]s/fail/${PATHSECRET}?q=${PLAINQ}
    retry: {max_attempts: 1}
`

// TestURLSecretsNeverLeave: values that came from ${NAME} in callback
// URLs (path, query, password) reach neither the logs, nor last_error,
// nor the admin API, nor disabled_callbacks; the plain user name and
// common words are not redacted (issue 11 #4, #5).
func TestURLSecretsNeverLeave(t *testing.T) {
	eng := fakemistral.New(fakemistral.Options{})
	defer eng.Close()
	es := httptest.NewServer(eng)
	defer es.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/gone/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "gone: "+r.URL.String(), http.StatusGone)
	})
	mux.HandleFunc("/fail/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no hook at "+r.URL.String(), http.StatusBadRequest)
	})
	rs := httptest.NewServer(mux)
	defer rs.Close()

	secrets := []string{"pa55word-value", "pathsecretvalue", "plainqvalue"}
	env := []string{"PASS=" + secrets[0], "PATHSECRET=" + secrets[1], "PLAINQ=" + secrets[2]}
	state, adminAddr := t.TempDir(), freeAddr(t)
	cfgPath := writeConfig(t, fmt.Sprintf(urlSecretsConfig, es.URL, state, adminAddr, strings.TrimPrefix(rs.URL, "http://")))
	src := config.Source{Path: cfgPath, Environ: func() []string { return env }}
	cfg, err := config.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Options{Config: cfg, Source: src, Logger: log, Listener: ln})
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	defer stop()

	proxyURL := "http://" + ln.Addr().String()
	post(t, proxyURL+"/v2/workflows", "text/plain", "version: '2.0'\nsec_wf:\n  tasks:\n    a:\n      action: std.noop\n")
	if code, b := post(t, proxyURL+"/v2/executions", "application/json", `{"workflow_name": "sec_wf"}`); code != 201 {
		t.Fatalf("start: %d %s", code, b)
	}
	adminGet := func() string {
		req, _ := http.NewRequest("GET", "http://"+adminAddr+"/deliveries", nil)
		req.Header.Set("Authorization", "Bearer admin-token-0123456789")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = fmt.Fprint(&b, resp.Status)
		buf := make([]byte, 1<<16)
		n, _ := resp.Body.Read(buf)
		return b.String() + string(buf[:n])
	}
	var deliveries string
	deadline := time.Now().Add(15 * time.Second)
	for !(strings.Contains(deliveries, `"gone"`) && strings.Contains(deliveries, `"dead"`) && strings.Count(deliveries, "last_error") >= 2) {
		if time.Now().After(deadline) {
			t.Fatalf("deliveries did not fail as expected: %s", deliveries)
		}
		time.Sleep(50 * time.Millisecond)
		deliveries = adminGet()
	}
	stop()

	st, err := store.Open(filepath.Join(state, store.FileName), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dis, err := st.DisabledCallbacks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rows, err := st.List(context.Background(), store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var lastErrors []string
	for _, d := range rows {
		lastErrors = append(lastErrors, d.LastError)
	}
	places := map[string]string{
		"logs":                   logs.String(),
		"admin GET /deliveries":  deliveries,
		"last_error":             strings.Join(lastErrors, "\n"),
		"disabled_callbacks.url": dis["gone"].URL,
	}
	if dis["gone"].URL == "" {
		t.Errorf("callback gone not disabled: %+v", dis)
	}
	for where, text := range places {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s leaks %q:\n%s", where, s, text)
			}
		}
	}
	if !strings.Contains(dis["gone"].URL, "user:REDACTED@") || !strings.Contains(places["last_error"], "/fail/REDACTED?q=REDACTED") {
		t.Errorf("redacted URLs not as expected: %q\n%s", dis["gone"].URL, places["last_error"])
	}
	if !strings.Contains(places["logs"], "callback=gone") {
		t.Errorf("plain words redacted in the logs:\n%s", places["logs"])
	}
}
