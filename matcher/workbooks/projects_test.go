package workbooks

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/mistral-tap/mistral-tap/tap/mistral"
)

// fakeProjects scopes an Engine to a project with a static token
// "tok-<project>", which perProjectMistral turns back into the project.
type fakeProjects struct {
	base  string
	names map[string]string
}

func (f fakeProjects) Projects(context.Context) (map[string]string, error) { return f.names, nil }
func (f fakeProjects) InProject(id string) Engine                          { return scopedEngine(f.base, id) }
func (f fakeProjects) ProjectID(string) (string, bool)                     { return "", false }

func scopedEngine(base, project string) *mistral.Client {
	u, _ := url.Parse(base)
	c, err := mistral.New(mistral.Options{BaseURL: u, Headers: map[string]string{"X-Auth-Token": "tok-" + project}})
	if err != nil {
		panic(err)
	}
	return c
}

func newScoped(t *testing.T, base string, o Options) *Resolver {
	t.Helper()
	o.Engine = scopedEngine(base, "")
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// perProjectMistral answers /v2/workbooks with the token's project's
// workbooks only, and 400 to all_projects, as Mistral 15 does.
func perProjectMistral(t *testing.T, byProject map[string][]workbook) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("all_projects") {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"faultstring": "Unknown argument: \"all_projects\""}`)
			return
		}
		p := strings.TrimPrefix(r.Header.Get("X-Auth-Token"), "tok-")
		var parts []string
		for _, wb := range byProject[p] {
			parts = append(parts, fmt.Sprintf(`{"name": %q, "namespace": %q, "definition": %q}`, wb.Name, wb.Namespace, wb.Definition))
		}
		fmt.Fprintf(w, `{"workbooks": [%s]}`, strings.Join(parts, ","))
	}))
}

func TestPerProjectIndex(t *testing.T) {
	srv := perProjectMistral(t, map[string][]workbook{
		"p1": {{Name: "ops", Definition: "workflows:\n  main: {}\n  only1: {}\n"}},
		"p2": {{Name: "ops", Definition: "workflows:\n  main: {}\n"}, {Name: "ops.x", Definition: "workflows:\n  y: {}\n"}},
		"p3": {{Name: "ops.x", Definition: "workflows:\n  y: {}\n"}, {Name: "ops", Definition: "workflows:\n  x.y: {}\n"}},
	})
	defer srv.Close()
	r := newScoped(t, srv.URL, Options{AllProjects: true, Projects: fakeProjects{srv.URL, map[string]string{"p1": "admin", "p2": "demo", "p3": "alt"}}})
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		project, wf, want string
		ok                bool
	}{
		{"p1", "ops.main", "ops", true},
		{"p2", "ops.main", "ops", true}, // both projects have a workbook "ops"
		{"p1", "ops.only1", "ops", true},
		{"p2", "ops.only1", "", false}, // p1's workbook is not p2's
		{"p2", "ops.x.y", "ops.x", true},
		{"p3", "ops.x.y", "", false}, // claimed by two workbooks of p3
		{"p4", "ops.main", "", false},
	}
	for _, tt := range tests {
		got, ok := r.WorkbookIn(tt.project, tt.wf, "")
		if got != tt.want || ok != tt.ok {
			t.Errorf("WorkbookIn(%q, %q) = %q, %v; want %q, %v", tt.project, tt.wf, got, ok, tt.want, tt.ok)
		}
	}
	// Across projects: "ops.main" is "ops" everywhere; "ops.x.y" is "ops.x"
	// in p2 but ambiguous in p3, so unknown.
	if got, ok := r.WorkbookOf("ops.main", ""); got != "ops" || !ok {
		t.Errorf("WorkbookOf(ops.main) = %q, %v", got, ok)
	}
	if got, ok := r.WorkbookOf("ops.x.y", ""); ok {
		t.Errorf("WorkbookOf(ops.x.y) = %q, want unknown", got)
	}
}

func TestWithoutProjectsOneIndex(t *testing.T) {
	srv := perProjectMistral(t, map[string][]workbook{"": {{Name: "ops", Definition: "workflows:\n  main: {}\n"}}})
	defer srv.Close()
	r := newScoped(t, srv.URL, Options{AllProjects: true})
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatalf("all_projects must not be sent to /v2/workbooks: %v", err)
	}
	if got, ok := r.WorkbookIn("any-project", "ops.main", ""); got != "ops" || !ok {
		t.Errorf("WorkbookIn without Projects = %q, %v; want the one index's answer", got, ok)
	}
}
