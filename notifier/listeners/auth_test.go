package listeners

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/testenv/fakemistral"
)

// fakeEngine runs a parent workflow with a sub-workflow on the fake engine
// and returns the API's URL and the ids of interest.
func fakeEngine(t *testing.T) (base, parent, sub, subTask string) {
	t.Helper()
	eng := fakemistral.New(fakemistral.Options{})
	t.Cleanup(eng.Close)
	srv := httptest.NewServer(eng)
	t.Cleanup(srv.Close)
	const flows = "version: '2.0'\nparent:\n  tasks:\n    call:\n      workflow: child\nchild:\n  tasks:\n    leaf:\n      action: std.noop\n"
	if err := eng.DefineWorkflow(flows, ""); err != nil {
		t.Fatal(err)
	}
	wb := "version: '2.0'\nname: book\nworkflows:\n  w:\n    tasks:\n      t:\n        action: std.noop\n"
	if err := eng.DefineWorkbook(wb, ""); err != nil {
		t.Fatal(err)
	}
	parent, err := eng.Start("parent", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.WaitDone(t.Context(), parent); err != nil {
		t.Fatal(err)
	}
	var execs struct{ Executions []resource }
	getJSON(t, srv.URL+"/v2/executions", &execs)
	for _, x := range execs.Executions {
		if x.ID != parent {
			sub = x.ID
		}
	}
	var tasks struct{ Tasks []resource }
	getJSON(t, srv.URL+"/v2/tasks", &tasks)
	for _, tk := range tasks.Tasks {
		if tk.WorkflowExecutionID == sub {
			subTask = tk.ID
		}
	}
	if sub == "" || subTask == "" {
		t.Fatalf("fake engine: no sub-execution (%q) or its task (%q)", sub, subTask)
	}
	return srv.URL, parent, sub, subTask
}

func getJSON(t *testing.T, u string, out any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

func TestMistralAuthorizerFakeEngine(t *testing.T) {
	base, parent, sub, subTask := fakeEngine(t)
	m, err := NewMistralAuthorizer(MistralOptions{URL: base + "/"})
	if err != nil {
		t.Fatal(err)
	}
	const project = "<default-project>"
	tests := []struct {
		s       Scope
		want    Grant
		wantErr error
	}{
		{Scope{ScopeExecution, parent}, Grant{ProjectID: project, RootID: parent}, nil},
		{Scope{ScopeExecution, sub}, Grant{ProjectID: project, RootID: parent}, nil},
		{Scope{ScopeTask, subTask}, Grant{ProjectID: project, RootID: parent}, nil},
		{Scope{ScopeWorkflow, "child"}, Grant{ProjectID: project}, nil},
		{Scope{ScopeWorkflow, "ch*"}, Grant{}, nil}, // a glob: auth is off, so any project
		{Scope{ScopeWorkbook, "book"}, Grant{ProjectID: project}, nil},
		{Scope{ScopeExecution, "nope"}, Grant{}, ErrNotFound},
		{Scope{ScopeTask, "nope"}, Grant{}, ErrNotFound},
		{Scope{ScopeWorkflow, "nope"}, Grant{}, ErrNotFound},
		{Scope{ScopeWorkbook, "nope"}, Grant{}, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.s.Kind+"="+tt.s.Value, func(t *testing.T) {
			g, err := m.Authorize(t.Context(), "", tt.s)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if g != tt.want {
				t.Errorf("grant %+v, want %+v", g, tt.want)
			}
		})
	}
	g, err := m.Caller(t.Context(), "")
	if err != nil || !g.Admin {
		t.Errorf("Caller with auth off = %+v, %v; want Admin (open as Mistral)", g, err)
	}
}

// authMistral is Mistral with Keystone auth on, reduced to what the
// authorizer asks: tokens scoped to projects, another project's resources
// answer 404, a "ro" token gets 403 on executions.
func authMistral(t *testing.T) *httptest.Server {
	t.Helper()
	tokens := map[string]string{"tok-a": "proj-a", "tok-b": "proj-b", "ro": "proj-a", "empty": "proj-e"}
	owner := map[string]string{"/v2/executions/x1": "proj-a", "/v2/tasks/t1": "proj-a", "/v2/workbooks/wb": "proj-a"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := r.Header.Get("X-Auth-Token")
		p, ok := tokens[tok]
		if !ok {
			w.WriteHeader(401)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		list := func(key string) {
			if p == "proj-e" {
				_, _ = w.Write([]byte(`{"` + key + `": []}`))
				return
			}
			_, _ = w.Write([]byte(`{"` + key + `": [{"id": "i", "project_id": "` + p + `"}], "next": "http://h/v2/` + key + `?limit=1&marker=i"}`))
		}
		switch {
		case tok == "ro" && strings.HasPrefix(r.URL.Path, "/v2/executions/"):
			w.WriteHeader(403)
		case r.URL.Path == "/v2/executions" && r.URL.Query().Get("limit") == "1":
			list("executions")
		case r.URL.Path == "/v2/workbooks":
			list("workbooks")
		case r.URL.Path == "/v2/workflows" && r.URL.Query().Get("name") == "":
			list("workflows")
		case r.URL.Path == "/v2/workflows" && r.URL.Query().Get("name") == "wf" && p == "proj-a":
			_, _ = w.Write([]byte(`{"workflows": [{"id": "w", "project_id": "proj-a"}]}`))
		case r.URL.Path == "/v2/workflows":
			_, _ = w.Write([]byte(`{"workflows": []}`))
		case owner[r.URL.Path] != p:
			w.WriteHeader(404)
		case r.URL.Path == "/v2/tasks/t1":
			_, _ = w.Write([]byte(`{"id": "t1", "workflow_execution_id": "x1", "project_id": "proj-a"}`))
		default:
			_, _ = w.Write([]byte(`{"id": "` + strings.TrimPrefix(r.URL.Path, "/v2/executions/") + `", "project_id": "` + p + `", "root_execution_id": null}`))
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestMistralAuthorizerAuthOn(t *testing.T) {
	srv := authMistral(t)
	m, _ := NewMistralAuthorizer(MistralOptions{URL: srv.URL})
	tests := []struct {
		token   string
		s       Scope
		want    Grant
		wantErr error
	}{
		{"tok-a", Scope{ScopeExecution, "x1"}, Grant{ProjectID: "proj-a", RootID: "x1"}, nil},
		{"tok-a", Scope{ScopeTask, "t1"}, Grant{ProjectID: "proj-a", RootID: "x1"}, nil},
		{"tok-a", Scope{ScopeWorkbook, "wb"}, Grant{ProjectID: "proj-a"}, nil},
		{"tok-a", Scope{ScopeWorkflow, "wf"}, Grant{ProjectID: "proj-a"}, nil},
		{"tok-b", Scope{ScopeWorkflow, "w*"}, Grant{ProjectID: "proj-b"}, nil},
		{"tok-b", Scope{ScopeExecution, "x1"}, Grant{}, ErrNotFound},
		{"tok-b", Scope{ScopeWorkflow, "wf"}, Grant{}, ErrNotFound},
		{"ro", Scope{ScopeExecution, "x1"}, Grant{}, ErrForbidden},
		{"", Scope{ScopeExecution, "x1"}, Grant{}, ErrUnauthorized},
		{"forged", Scope{ScopeTask, "t1"}, Grant{}, ErrUnauthorized},
		{"empty", Scope{ScopeWorkflow, "*"}, Grant{}, ErrNoProject},
	}
	for _, tt := range tests {
		t.Run(tt.token+" "+tt.s.Value, func(t *testing.T) {
			g, err := m.Authorize(t.Context(), tt.token, tt.s)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if g != tt.want {
				t.Errorf("grant %+v, want %+v", g, tt.want)
			}
			if err != nil && tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Errorf("error %q quotes the token", err)
			}
		})
	}
	for tok, want := range map[string]string{"tok-a": "proj-a", "tok-b": "proj-b"} {
		if g, err := m.Caller(t.Context(), tok); err != nil || g != (Grant{ProjectID: want}) {
			t.Errorf("Caller(%s) = %+v, %v; want %s", tok, g, err, want)
		}
	}
	if _, err := m.Caller(t.Context(), ""); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Caller without token: %v, want ErrUnauthorized", err)
	}
	if _, err := m.Caller(t.Context(), "empty"); !errors.Is(err, ErrNoProject) {
		t.Errorf("Caller with a project that has nothing: %v, want ErrNoProject", err)
	}
}

func TestMistralAuthorizerKeystone(t *testing.T) {
	mistral := authMistral(t)
	var subject string
	ks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		subject = r.Header.Get("X-Subject-Token")
		if r.URL.Path != "/v3/auth/tokens" || r.Header.Get("X-Auth-Token") != "tok-a" || subject != "tok-a" {
			w.WriteHeader(404)
			return
		}
		_, _ = w.Write([]byte(`{"token": {"project": {"id": "ks-proj", "name": "demo"}}}`))
	}))
	defer ks.Close()
	m, _ := NewMistralAuthorizer(MistralOptions{URL: mistral.URL, KeystoneURL: ks.URL + "/"})
	if g, err := m.Caller(t.Context(), "tok-a"); err != nil || g.ProjectID != "ks-proj" {
		t.Fatalf("Caller = %+v, %v; want Keystone's project", g, err)
	}
}

func TestMistralAuthorizerDown(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	m, _ := NewMistralAuthorizer(MistralOptions{URL: srv.URL})
	_, err := m.Authorize(t.Context(), "tok", Scope{ScopeExecution, "x"})
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("err = %v, want a failure to ask naming 503", err)
	}
	srv.Close()
	if _, err := m.Caller(t.Context(), "tok"); err == nil || errors.Is(err, ErrUnauthorized) {
		t.Fatalf("closed server: err = %v, want a failure to ask", err)
	}
	if _, err := NewMistralAuthorizer(MistralOptions{URL: "not a url"}); err == nil {
		t.Fatal("NewMistralAuthorizer accepted a bad URL")
	}
}

// TestMistralAuthorizerProbeCached: with auth on, the "is auth off?" probe
// is sent once per probeTTL, not once per listing.
func TestMistralAuthorizerProbeCached(t *testing.T) {
	var probes int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Auth-Token") == "" {
			probes++
			w.WriteHeader(401)
			return
		}
		_, _ = w.Write([]byte(`{"executions": [{"id": "x", "project_id": "p"}]}`))
	}))
	defer srv.Close()
	m, _ := NewMistralAuthorizer(MistralOptions{URL: srv.URL})
	now := t0
	m.now = func() time.Time { return now }
	for range 3 {
		if g, err := m.Caller(t.Context(), "tok"); err != nil || g.ProjectID != "p" {
			t.Fatalf("Caller = %+v, %v", g, err)
		}
	}
	if probes != 1 {
		t.Fatalf("%d probes for 3 listings, want 1", probes)
	}
	now = now.Add(probeTTL)
	_, _ = m.Caller(t.Context(), "tok")
	if probes != 2 {
		t.Fatalf("%d probes after probeTTL, want 2", probes)
	}
}
