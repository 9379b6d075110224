package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/cmd/mistral-tap/app"
	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/testenv/fakemistral"
	"github.com/mistral-tap/mistral-tap/testenv/receiver"
)

// syncBuffer collects log output from many goroutines; wrote is closed
// and replaced at every write, for tests that wait for a line.
type syncBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{}
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wrote != nil {
		close(s.wrote)
		s.wrote = nil
	}
	return s.b.Write(p)
}

// next returns the buffer's contents and a channel closed at the next
// write.
func (s *syncBuffer) next() (string, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wrote == nil {
		s.wrote = make(chan struct{})
	}
	return s.b.String(), s.wrote
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Secrets of the ops scenario; each must never reach the logs.
var opsSecrets = []string{
	"urlpass-4711", "querytok-4712", "hdrtok-4713", "signsecret-4714",
	"oldsecret-4715", "watchtok-4716", "admintok-4717-0123456789", "customhdr-4718",
}

const opsConfig = `
listen: 127.0.0.1:0
upstream: %[1]s
state_dir: %[2]s
ops:
  listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
  token: admintok-4717-0123456789
watch:
  interval: 100ms
  headers: {X-Auth-Token: watchtok-4716}
log:
  level: debug
delivery:
  allow_networks: ["127.0.0.0/8"]
  retries: 1
  retry_wait_min: 10ms
  retry_wait_max: 20ms
callbacks:
  - name: ok
    events: ["*"]
    url: %[3]s/ok
  - name: failing
    events: ["*"]
    url: http://someone:urlpass-4711@%[4]s/fail?token=querytok-4712
    headers: {Authorization: "Bearer hdrtok-4713", X-Custom: customhdr-4718}
    secret: signsecret-4714
    secrets: [oldsecret-4715]
    retry: {initial_interval: 50ms, max_interval: 100ms}
`

// TestOpsEndpointsAndRedaction runs the whole product with ops endpoints
// on, secrets in URLs, headers and signing keys, and a receiver that
// always fails with a body quoting the request back; it checks /healthz,
// /readyz and /metrics, then greps every log line for the secrets.
func TestOpsEndpointsAndRedaction(t *testing.T) {
	t.Parallel() // own engine, receivers, ports and state dir
	eng := fakemistral.New(fakemistral.Options{})
	defer eng.Close()
	es := httptest.NewServer(eng)
	defer es.Close()
	okRecv := receiver.New()
	mux := http.NewServeMux()
	mux.Handle("/ok", okRecv)
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		// A hostile receiver echoes credentials into its error body.
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "rejected auth=%s url=%s", r.Header.Get("Authorization"), r.URL)
	})
	rs := httptest.NewServer(mux)
	defer rs.Close()

	opsAddr := freeAddr(t)
	cfgPath := filepath.Join(t.TempDir(), "mistral-tap.yaml")
	yaml := fmt.Sprintf(opsConfig, es.URL, t.TempDir(), rs.URL, strings.TrimPrefix(rs.URL, "http://"))
	yaml = strings.Replace(yaml, "ops:\n  listen: 127.0.0.1:0", "ops:\n  listen: "+opsAddr, 1)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	src := config.Source{Path: cfgPath}
	cfg, err := config.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxyURL := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Options{Config: cfg, Source: src, Logger: log, Listener: ln, Version: "test"})
	}()
	defer func() {
		cancel()
		<-done
	}()

	opsURL := "http://" + opsAddr
	waitHTTP(t, opsURL+"/readyz", 200)
	if code, _ := get(t, opsURL+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}

	// A client quoting a configured secret in its request target: the
	// proxy's debug request lines must not carry it.
	get(t, proxyURL+"/v2/executions?marker=watchtok-4716")
	// Traffic: define a workflow, run it twice through the proxy.
	post(t, proxyURL+"/v2/workflows", "text/plain", "version: '2.0'\nops_wf:\n  tasks:\n    a:\n      action: std.noop\n")
	for range 2 {
		code, b := post(t, proxyURL+"/v2/executions", "application/json", `{"workflow_name": "ops_wf"}`)
		if code != 201 {
			t.Fatalf("start: %d %s", code, b)
		}
		var x struct{ ID string }
		json.Unmarshal(b, &x)
		wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := eng.WaitDone(wctx, x.ID); err != nil {
			t.Fatal(err)
		}
		wcancel()
	}
	// 2 executions × (WORKFLOW_LAUNCHED, TASK_LAUNCHED, TASK_SUCCEEDED, WORKFLOW_SUCCEEDED).
	rctx, rcancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer rcancel()
	if _, err := okRecv.WaitFor(rctx, 8); err != nil {
		t.Fatalf("ok receiver: %v", err)
	}

	// The failing callback's deliveries are dead letters (400 is permanent).
	want := []string{
		`mistral_tap_proxy_requests_total{code="201",method="POST",route="executions"} 2`,
		`mistral_tap_proxy_requests_total{code="201",method="POST",route="workflows"} 1`,
		`mistral_tap_deliveries_total{callback="ok",outcome="delivered"} 8`,
		`mistral_tap_deliveries_total{callback="failing",outcome="permanent"} 8`,
		`mistral_tap_events_total{inferred="false",source="tap",type="WORKFLOW_LAUNCHED"}`,
		`mistral_tap_observations_total{source="tap"}`,
		`mistral_tap_observations_total{source="watch"}`,
		`mistral_tap_watch_polls_total`,
		`mistral_tap_delivery_queue_pending{callback="failing"} 0`,
		`mistral_tap_config_last_reload_successful 1`,
	}
	deadline := time.Now().Add(15 * time.Second)
	var body string
	for {
		_, body = get(t, opsURL+"/metrics")
		missing := ""
		for _, w := range want {
			if !strings.Contains(body, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack %q:\n%s", missing, grepLines(body, "mistral_tap_"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Both launches were counted once; the tap saw at least one (the
	// watcher may win the race for the other on a busy machine).
	if n := metric(t, opsAddr, `mistral_tap_events_total{inferred="false",source="tap",type="WORKFLOW_LAUNCHED"}`) +
		metric(t, opsAddr, `mistral_tap_events_total{inferred="false",source="watch",type="WORKFLOW_LAUNCHED"}`); n != 2 {
		t.Errorf("WORKFLOW_LAUNCHED counted %v times, want 2", n)
	}
	for _, s := range []string{"execution_id", "root_execution"} {
		if strings.Contains(body, s) {
			t.Errorf("metrics carry %q labels", s)
		}
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	done <- nil // for the deferred receive
	out := logs.String()
	if !strings.Contains(out, "failing") || !strings.Contains(out, "REDACTED") {
		t.Errorf("logs do not show the failing deliveries redacted; got:\n%s", out)
	}
	for _, s := range opsSecrets {
		if strings.Contains(out, s) {
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, s) {
					t.Errorf("secret %q logged: %s", s, line)
				}
			}
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func post(t *testing.T, u, ctype, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(u, ctype, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// waitHTTP polls u until it answers code, or fails the test after 10s.
func waitHTTP(t *testing.T, u string, code int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, b := get(t, u)
		if c == code {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %s, want %d", u, c, b, code)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
