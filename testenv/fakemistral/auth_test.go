package fakemistral

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const authFlow = `version: '2.0'
wf_a:
  tasks:
    t1:
      action: std.sleep seconds=30
`

// TestAuth: with Tokens set, requests need a known token, resources belong
// to the creating token's project, other projects' are 404 by id and
// absent from lists, and an admin sees them by id and with all_projects.
func TestAuth(t *testing.T) {
	e := New(Options{Tokens: map[string]Token{"tok-a": {Project: "pa"}, "tok-b": {Project: "pb"}, "tok-adm": {Project: "padm", Admin: true}}})
	srv := httptest.NewServer(e)
	t.Cleanup(func() { srv.Close(); e.Close() })
	do := func(tok, method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("X-Auth-Token", tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return resp.StatusCode, m
	}
	if st, _ := do("tok-a", "POST", "/v2/workflows", authFlow); st != 201 {
		t.Fatalf("define as pa: %d", st)
	}
	st, ex := do("tok-a", "POST", "/v2/executions", `{"workflow_name": "wf_a"}`)
	if st != 201 || ex["project_id"] != "pa" {
		t.Fatalf("start as pa: %d %v", st, ex)
	}
	id := ex["id"].(string)
	_, tasks := do("tok-a", "GET", "/v2/executions/"+id+"/tasks", "")
	taskID := tasks["tasks"].([]any)[0].(map[string]any)["id"].(string)

	count := func(m map[string]any, key string) int { l, _ := m[key].([]any); return len(l) }
	tests := []struct {
		name, tok, path string
		wantStatus      int
		wantItems       int    // for lists, -1 otherwise
		listKey         string // the list's envelope key
	}{
		{"no token", "", "/v2/executions/" + id, 401, -1, ""},
		{"unknown token", "nope", "/v2/executions", 401, -1, ""},
		{"owner by id", "tok-a", "/v2/executions/" + id, 200, -1, ""},
		{"other project by id", "tok-b", "/v2/executions/" + id, 404, -1, ""},
		{"other project task", "tok-b", "/v2/tasks/" + taskID, 404, -1, ""},
		{"owner task", "tok-a", "/v2/tasks/" + taskID, 200, -1, ""},
		{"other project workflow", "tok-b", "/v2/workflows/wf_a", 404, -1, ""},
		{"owner workflow", "tok-a", "/v2/workflows/wf_a", 200, -1, ""},
		{"other project list", "tok-b", "/v2/executions", 200, 0, "executions"},
		{"other project task list", "tok-b", "/v2/tasks", 200, 0, "tasks"},
		{"other project workflow list", "tok-b", "/v2/workflows", 200, 0, "workflows"},
		{"owner list", "tok-a", "/v2/executions", 200, 1, "executions"},
		{"admin by id", "tok-adm", "/v2/executions/" + id, 200, -1, ""},
		{"admin task by id", "tok-adm", "/v2/tasks/" + taskID, 200, -1, ""},
		{"admin list, own project", "tok-adm", "/v2/executions", 200, 0, "executions"},
		{"admin list, all projects", "tok-adm", "/v2/executions?all_projects=true", 200, 1, "executions"},
		{"all_projects is no use without admin", "tok-b", "/v2/executions?all_projects=true", 200, 0, "executions"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, body := do(tc.tok, "GET", tc.path, "")
			if st != tc.wantStatus {
				t.Fatalf("GET %s as %q: %d, want %d (%v)", tc.path, tc.tok, st, tc.wantStatus, body)
			}
			if tc.wantItems >= 0 && count(body, tc.listKey) != tc.wantItems {
				t.Fatalf("GET %s as %q: %d items, want %d (%v)", tc.path, tc.tok, count(body, tc.listKey), tc.wantItems, body)
			}
		})
	}
	// Another project cannot start the private workflow; it can start a
	// shared one (made through the Go API) in its own project.
	if st, _ := do("tok-b", "POST", "/v2/executions", `{"workflow_name": "wf_a"}`); st != 404 {
		t.Errorf("pb starts pa's workflow: %d, want 404", st)
	}
	if err := e.DefineWorkflow(strings.ReplaceAll(authFlow, "wf_a", "wf_shared"), ""); err != nil {
		t.Fatal(err)
	}
	if st, ex := do("tok-b", "POST", "/v2/executions", `{"workflow_name": "wf_shared"}`); st != 201 || ex["project_id"] != "pb" {
		t.Errorf("pb starts the shared workflow: %d %v", st, ex)
	}
	// Mistral's notifier reports each execution's own project.
	projects := map[string]bool{}
	for _, ev := range e.NotifierEvents() {
		projects[ev.Payload["project_id"].(string)] = true
	}
	if !projects["pa"] || !projects["pb"] {
		t.Errorf("notifier projects = %v, want pa and pb", projects)
	}
}
