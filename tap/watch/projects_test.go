package watch

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
	"github.com/mistral-tap/mistral-tap/tap/mistral"
)

// authEngine behaves like Mistral 15 with auth on: the token names its
// project ("tok-<project>"); project "svc" is admin. Executions cross
// projects with all_projects (admins only); tasks never do, and
// all_projects there is a 400.
type authEngine struct {
	mu    sync.Mutex
	execs []map[string]any
	tasks []map[string]any
	reqs  []string // "<resource> <project>"
}

func (e *authEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	project := strings.TrimPrefix(r.Header.Get("X-Auth-Token"), "tok-")
	res := strings.TrimPrefix(r.URL.Path, "/v2/")
	e.reqs = append(e.reqs, res+" "+project)
	q := r.URL.Query()
	all := q.Get("all_projects") == "true"
	rows := e.execs
	switch {
	case res == "tasks" && q.Has("all_projects"):
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"faultstring": "Unknown argument: \"all_projects\""}`)
		return
	case res == "tasks":
		rows = e.tasks
	case all && project != "svc":
		w.WriteHeader(http.StatusForbidden)
		return
	}
	out := []map[string]any{}
	for _, row := range rows {
		if !all && row["project_id"] != project {
			continue
		}
		if !matches(row, q) {
			continue
		}
		out = append(out, row)
	}
	json.NewEncoder(w).Encode(map[string]any{res: out})
}

// matches applies the gte: time filters and state=nin: the watcher uses.
func matches(row map[string]any, q url.Values) bool {
	for _, col := range []string{"updated_at", "created_at"} {
		if v := q.Get(col); v != "" && row[col].(string) < strings.TrimPrefix(v, "gte:") {
			return false
		}
	}
	if v := q.Get("root_execution_id"); v != "" && row["root_execution_id"] != v {
		return false
	}
	if v := q.Get("state"); strings.HasPrefix(v, "nin:") && slices.Contains(strings.Split(v[4:], ","), row["state"].(string)) {
		return false
	}
	return true
}

func (e *authEngine) exec(id, project, state, ts string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.execs = slices.DeleteFunc(e.execs, func(r map[string]any) bool { return r["id"] == id })
	e.execs = append(e.execs, map[string]any{"id": id, "project_id": project, "state": state, "created_at": ts, "updated_at": ts, "workflow_name": "wf"})
}

func (e *authEngine) task(id, execID, project, state, ts string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tasks = slices.DeleteFunc(e.tasks, func(r map[string]any) bool { return r["id"] == id })
	e.tasks = append(e.tasks, map[string]any{"id": id, "workflow_execution_id": execID, "project_id": project, "state": state, "created_at": ts, "updated_at": ts, "name": "t"})
}

// takeReqs returns and forgets the requests so far, sorted.
func (e *authEngine) takeReqs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.reqs
	e.reqs = nil
	slices.Sort(r)
	return r
}

// refusal is what mistral.KeystoneError says when a project is out of reach.
type refusal struct{}

func (refusal) Error() string  { return "keystone: no role in project" }
func (refusal) NoAccess() bool { return true }

// scopes plays tap/mistral's InProject: an Engine whose token is that
// project's, or one that Keystone refuses.
type scopes struct {
	base    *url.URL
	refused map[string]bool
}

func (s scopes) InProject(id string) Engine {
	if s.refused[id] {
		return refusedEngine{}
	}
	return s.client(id)
}

func (s scopes) client(project string) *mistral.Client {
	c, err := mistral.New(mistral.Options{BaseURL: s.base, Headers: map[string]string{"X-Auth-Token": "tok-" + project}})
	if err != nil {
		panic(err)
	}
	return c
}

type refusedEngine struct{}

func (refusedEngine) Executions(context.Context, url.Values) iter.Seq2[[]event.Execution, error] {
	return func(yield func([]event.Execution, error) bool) { yield(nil, refusal{}) }
}

func (refusedEngine) Tasks(context.Context, url.Values) iter.Seq2[[]event.Task, error] {
	return func(yield func([]event.Task, error) bool) { yield(nil, refusal{}) }
}

func perProjectWatcher(t *testing.T, e *authEngine, refused map[string]bool, now *time.Time, o *observer, logs *strings.Builder) *Watcher {
	t.Helper()
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	sc := scopes{base: u, refused: refused}
	w, err := New(Options{Engine: sc.client("svc"), Interval: time.Second, AllProjects: true, Projects: sc, Observer: o,
		Now: func() time.Time { return *now }, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	w.setCheckpoint("2026-12-01 10:00:00")
	return w
}

func taskIDs(o *observer) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var ids []string
	for _, ob := range o.obs {
		if ob.Task != nil && !slices.Contains(ids, ob.Task.ID) {
			ids = append(ids, ob.Task.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

func TestTasksOfEveryProjectWithRunningExecutions(t *testing.T) {
	e := &authEngine{}
	// e0 ran before the watcher's checkpoint and is still running: only
	// the seed list of unfinished executions reveals its project.
	e.exec("e0", "p0", event.StateRunning, "2026-12-01 09:00:00")
	e.task("t0", "e0", "p0", event.StateRunning, "2026-12-01 10:00:05")
	e.exec("e1", "p1", event.StateRunning, "2026-12-01 10:00:01")
	e.task("t1", "e1", "p1", event.StateSuccess, "2026-12-01 10:00:02")
	e.exec("e2", "p2", event.StateSuccess, "2026-12-01 10:00:01")
	e.task("t2", "e2", "p2", event.StateSuccess, "2026-12-01 10:00:01")
	e.task("t9", "e9", "p9", event.StateRunning, "2026-12-01 10:00:01") // no execution seen: not polled
	now := time.Date(2026, 12, 1, 10, 0, 6, 0, time.UTC)
	o := &observer{}
	var logs strings.Builder
	w := perProjectWatcher(t, e, nil, &now, o, &logs)
	ctx := context.Background()

	if err := w.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := taskIDs(o), []string{"t0", "t1", "t2"}; !slices.Equal(got, want) {
		t.Errorf("tasks observed %v, want %v", got, want)
	}
	want := []string{"executions svc", "executions svc", "executions svc", // seed + two lists
		"tasks p0", "tasks p0", "tasks p1", "tasks p1", "tasks p2", "tasks p2"}
	if got := e.takeReqs(); !slices.Equal(got, want) {
		t.Errorf("first poll requests\n got %v\nwant %v", got, want)
	}

	// p2's execution finished: after the grace only p0 and p1 (running)
	// are polled; then both finish and an idle poll costs two requests.
	now = now.Add(projectGrace + time.Second)
	if err := w.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := e.takeReqs(), []string{"executions svc", "executions svc", "tasks p0", "tasks p0", "tasks p1", "tasks p1"}; !slices.Equal(got, want) {
		t.Errorf("second poll requests\n got %v\nwant %v", got, want)
	}
	e.exec("e0", "p0", event.StateSuccess, "2026-12-01 10:00:20")
	e.exec("e1", "p1", event.StateError, "2026-12-01 10:00:20")
	if err := w.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	e.takeReqs()
	now = now.Add(projectGrace + time.Second)
	if err := w.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := e.takeReqs(), []string{"executions svc", "executions svc"}; !slices.Equal(got, want) {
		t.Errorf("idle poll requests\n got %v\nwant %v", got, want)
	}
}

func TestRefusedProjectSkippedAndReportedOnce(t *testing.T) {
	e := &authEngine{}
	e.exec("e1", "p1", event.StateRunning, "2026-12-01 10:00:01")
	e.task("t1", "e1", "p1", event.StateRunning, "2026-12-01 10:00:01")
	e.exec("e3", "p3", event.StateRunning, "2026-12-01 10:00:01")
	e.task("t3", "e3", "p3", event.StateRunning, "2026-12-01 10:00:01")
	now := time.Date(2026, 12, 1, 10, 0, 6, 0, time.UTC)
	o := &observer{}
	var logs strings.Builder
	w := perProjectWatcher(t, e, map[string]bool{"p3": true}, &now, o, &logs)
	for range 3 {
		if err := w.Poll(context.Background()); err != nil {
			t.Fatalf("a project out of reach must not fail the poll: %v", err)
		}
	}
	if got := taskIDs(o); !slices.Equal(got, []string{"t1"}) {
		t.Errorf("tasks observed %v, want [t1]", got)
	}
	if n := strings.Count(logs.String(), "cannot read the tasks of a project"); n != 1 {
		t.Errorf("refusal logged %d times, want once:\n%s", n, logs.String())
	}
	if u := w.Unreadable(); len(u) != 1 || u["p3"] == "" {
		t.Errorf("Unreadable() = %v, want p3", u)
	}
}
