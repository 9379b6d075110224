package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
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
		io.WriteString(w, `{"id": "6f1c", "execution_id": "`+fmt.Sprint(rec.body["execution_id"])+`", "events": ["WORKFLOW_SUCCEEDED"], "url": "http://r/", "method": "POST", "headers": {"X-B": "", "X-A": ""}, "format": "mistral", "project_id": "p1", "created_at": "2026-12-02 10:00:00", "updated_at": "2026-12-02 10:00:00", "expires_at": "2026-12-09 10:00:00", "secret": "whsec_c2VjcmV0"}`)
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
