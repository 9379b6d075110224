package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/testenv/fakemistral"
	"github.com/mistral-tap/mistral-tap/testenv/receiver"
)

// apiRecorder answers like /v2/listeners and records what it was asked.
type apiRecorder struct {
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	method, path, query, token string
	body                       map[string]any
}

func (a *apiRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rec := recorded{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, token: r.Header.Get("X-Auth-Token")}
	_ = json.Unmarshal(b, &rec.body)
	a.mu.Lock()
	a.reqs = append(a.reqs, rec)
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == "POST" && rec.body["url"] == "http://bad":
		w.WriteHeader(400)
		io.WriteString(w, `{"faultcode": "Client", "faultstring": "url: host \"bad\" is not allowed", "debuginfo": null}`)
	case r.Method == "POST":
		w.WriteHeader(201)
		scope, _ := json.Marshal(rec.body["execution_id"])
		if rec.body["execution_id"] == nil {
			scope, _ = json.Marshal(rec.body["task_execution_id"])
		}
		io.WriteString(w, `{"id": "6f1c", "execution_id": `+string(scope)+`, "events": ["WORKFLOW_SUCCEEDED"], "url": "http://r/", "method": "POST", "headers": {"X-B": "", "X-A": ""}, "format": "mistral", "project_id": "p1", "created_at": "2026-12-02 10:00:00", "updated_at": "2026-12-02 10:00:00", "expires_at": "2026-12-09 10:00:00", "secret": "whsec_c2VjcmV0"}`)
	case r.Method == "GET" && r.URL.Path == "/v2/listeners" && r.URL.Query().Get("marker") == "":
		io.WriteString(w, `{"listeners": [{"id": "a1", "workflow_name": "deploy_*", "events": [], "url": "http://r/", "project_id": "p1", "created_at": "2026-12-02 10:00:00", "expires_at": null}], "next": "http://`+r.Host+`/v2/listeners?marker=a1"}`)
	case r.Method == "GET" && r.URL.Path == "/v2/listeners":
		io.WriteString(w, `{"listeners": [{"id": "b2", "task_execution_id": "t9", "events": ["TASK_FAILED"], "url": "http://r/", "project_id": "p1", "created_at": "2026-12-02 10:00:01", "expires_at": "2026-12-09 10:00:01"}]}`)
	case r.Method == "DELETE" && r.URL.Path == "/v2/listeners/a1":
		w.WriteHeader(204)
	default:
		w.WriteHeader(404)
		io.WriteString(w, `{"faultcode": "Client", "faultstring": "Listener not found [id=nope]", "debuginfo": null}`)
	}
}

// TestListenersCLI runs the built binary against a recording API: the
// requests it makes (scope, body, token, paging) and what it prints.
func TestListenersCLI(t *testing.T) {
	api := &apiRecorder{}
	srv := httptest.NewServer(api)
	defer srv.Close()
	tests := []struct {
		name     string
		args     []string
		env      []string
		wantCode int
		wantOut  []string // substrings of stdout+stderr
		notOut   []string
		wantReq  *recorded // the last request
	}{
		{name: "add execution", args: []string{"add", "execution", "ex-1", "http://r/", "--events", "WORKFLOW_SUCCEEDED,TASK_FAILED", "--header", "Authorization=Bearer hdr-secret", "--header", "X-A=1", "--url", srv.URL + "/v2"},
			env:     []string{"OS_AUTH_TOKEN=tok-1"},
			wantOut: []string{"id:                6f1c", "execution_id:      ex-1", "headers:           X-A, X-B", "secret:            whsec_c2VjcmV0", "shown only now"},
			notOut:  []string{"hdr-secret"},
			wantReq: &recorded{method: "POST", path: "/v2/listeners", token: "tok-1", body: map[string]any{"execution_id": "ex-1", "url": "http://r/",
				"events": []any{"WORKFLOW_SUCCEEDED", "TASK_FAILED"}, "headers": map[string]any{"Authorization": "Bearer hdr-secret", "X-A": "1"}}}},
		{name: "add task with flags", args: []string{"add", "task", "t-1", "http://r/", "--method", "PUT", "--format", "envelope", "--secret", "mine", "--expires-at", "2026-12-03 00:00:00", "--os-auth-token", "tok-2"},
			env:     []string{"MISTRAL_URL=" + srv.URL},
			wantOut: []string{"id:                6f1c"}, notOut: []string{"shown only now"},
			wantReq: &recorded{method: "POST", path: "/v2/listeners", token: "tok-2", body: map[string]any{"task_execution_id": "t-1", "url": "http://r/",
				"method": "PUT", "format": "envelope", "secret": "mine", "expires_at": "2026-12-03 00:00:00"}}},
		{name: "add refused", args: []string{"add", "workflow", "wf", "http://bad", "--url", srv.URL}, wantCode: 1,
			wantOut: []string{`400 Bad Request: url: host "bad" is not allowed`}},
		{name: "unknown scope", args: []string{"add", "cron", "x", "http://r/", "--url", srv.URL}, wantCode: 2, wantOut: []string{`unknown scope "cron"`}},
		{name: "bad header", args: []string{"add", "execution", "x", "http://r/", "--header", "Authorization: Bearer zz-secret", "--url", srv.URL}, wantCode: 2,
			wantOut: []string{"want K=V"}, notOut: []string{"zz-secret"}},
		{name: "too few arguments", args: []string{"add", "execution", "x", "--url", srv.URL}, wantCode: 2, wantOut: []string{"add wants SCOPE ID-OR-NAME URL"}},
		{name: "list follows next", args: []string{"list", "--url", srv.URL},
			wantOut: []string{"workflow_name=deploy_*", "task_execution_id=t9", "TASK_FAILED", "2026-12-09 10:00:01"},
			wantReq: &recorded{method: "GET", path: "/v2/listeners", query: "marker=a1"}},
		{name: "get unknown", args: []string{"get", "nope", "--url", srv.URL}, wantCode: 1, wantOut: []string{"404 Not Found: Listener not found [id=nope]"}},
		{name: "delete", args: []string{"delete", "a1", "--url", srv.URL}, wantOut: []string{"deleted listener a1"},
			wantReq: &recorded{method: "DELETE", path: "/v2/listeners/a1"}},
		{name: "bad url", args: []string{"list", "--url", "127.0.0.1:8990"}, wantCode: 2, wantOut: []string{"want http(s)://host:port"}},
		{name: "unknown verb", args: []string{"remove", "a1"}, wantCode: 2, wantOut: []string{`unknown listeners command "remove"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(binary(t), append([]string{"listeners"}, tc.args...)...)
			cmd.Env = append(filterEnv(filterListenerEnv(cmd.Environ())), tc.env...)
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != tc.wantCode {
				t.Fatalf("exit %d, want %d\n%s", code, tc.wantCode, out)
			}
			for _, s := range tc.wantOut {
				if !strings.Contains(string(out), s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tc.notOut {
				if strings.Contains(string(out), s) {
					t.Errorf("output shows %q:\n%s", s, out)
				}
			}
			if tc.wantReq == nil {
				return
			}
			api.mu.Lock()
			last := api.reqs[len(api.reqs)-1]
			api.mu.Unlock()
			got, _ := json.Marshal(last.body)
			want, _ := json.Marshal(tc.wantReq.body)
			if last.method != tc.wantReq.method || last.path != tc.wantReq.path || last.query != tc.wantReq.query ||
				last.token != tc.wantReq.token || string(got) != string(want) {
				t.Errorf("request = %s %s?%s token %q %s\nwant      %s %s?%s token %q %s", last.method, last.path, last.query, last.token, got,
					tc.wantReq.method, tc.wantReq.path, tc.wantReq.query, tc.wantReq.token, want)
			}
		})
	}
}

// filterListenerEnv drops the caller's MISTRAL_URL and OS_AUTH_TOKEN.
func filterListenerEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "MISTRAL_URL=") && !strings.HasPrefix(kv, "OS_AUTH_TOKEN=") {
			out = append(out, kv)
		}
	}
	return out
}

const cliRunConfig = `
listen: %[1]s
upstream: %[2]s
state_dir: %[3]s
ops: {listen: %[4]s}
watch: {interval: 100ms}
delivery: {allow_networks: ["127.0.0.0/8"]}
`

// TestListenersCLIAgainstRun drives a running `mistral-tap run` (in front
// of the fake engine) with the CLI binary: add prints the secret once and
// the listener receives the execution's events, list and get show it,
// delete removes it (get then fails with the API's fault).
func TestListenersCLIAgainstRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	eng := fakemistral.New(fakemistral.Options{})
	t.Cleanup(eng.Close)
	es := httptest.NewServer(eng)
	t.Cleanup(es.Close)
	recv := receiver.New()
	rs := httptest.NewServer(recv)
	t.Cleanup(rs.Close)
	listen, ops := freePort(t), freePort(t)
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	writeFile(t, cfg, fmt.Sprintf(cliRunConfig, listen, es.URL, t.TempDir(), ops))
	p := runBinary(t, cfg)
	waitReady(t, p, ops)
	proxy := "http://" + listen
	if code, b := doPost(t, proxy+"/v2/workflows", "text/plain", "version: '2.0'\ncli_wf:\n  tasks:\n    a:\n      action: std.noop\n"); code != 201 {
		t.Fatalf("define: %d %s", code, b)
	}
	code, b := doPost(t, proxy+"/v2/executions", "application/json", `{"workflow_name": "cli_wf"}`)
	if code != 201 {
		t.Fatalf("start: %d %s", code, b)
	}
	var ex struct{ ID string }
	json.Unmarshal(b, &ex)

	cli := func(wantCode int, args ...string) string {
		t.Helper()
		cmd := exec.Command(binary(t), append([]string{"listeners"}, args...)...)
		cmd.Env = append(filterEnv(filterListenerEnv(cmd.Environ())), "MISTRAL_URL="+proxy+"/v2")
		out, _ := cmd.CombinedOutput()
		if c := cmd.ProcessState.ExitCode(); c != wantCode {
			t.Fatalf("listeners %v: exit %d, want %d\n%s", args, c, wantCode, out)
		}
		return string(out)
	}
	out := cli(0, "add", "execution", ex.ID, rs.URL+"/l", "--events", "EXECUTION")
	if !strings.Contains(out, "secret:            whsec_") || !strings.Contains(out, "shown only now") {
		t.Errorf("add did not print the generated secret:\n%s", out)
	}
	id := ""
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "id:"); ok {
			id = strings.TrimSpace(v)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reqs, err := recv.WaitFor(ctx, 2)
	if err != nil {
		t.Fatalf("the listener got %d deliveries: %v", len(recv.Requests()), err)
	}
	for i, want := range []string{"WORKFLOW_LAUNCHED", "WORKFLOW_SUCCEEDED"} {
		if !strings.Contains(string(reqs[i].Body), `"event": "`+want+`"`) && !strings.Contains(string(reqs[i].Body), `"event":"`+want+`"`) {
			t.Errorf("delivery %d: want %s, got %s", i, want, reqs[i].Body)
		}
	}
	if out := cli(0, "list"); !strings.Contains(out, id) || !strings.Contains(out, "execution_id="+ex.ID) {
		t.Errorf("list:\n%s", out)
	}
	if out := cli(0, "get", id); strings.Contains(out, "secret") || !strings.Contains(out, "events:            EXECUTION") {
		t.Errorf("get (no secret, events):\n%s", out)
	}
	cli(0, "delete", id)
	if out := cli(1, "get", id); !strings.Contains(out, "404") {
		t.Errorf("get after delete:\n%s", out)
	}
}
