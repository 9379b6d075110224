package listeners

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// fakeDispatcher records what the registry asks and backfills from a
// history of events per root, calling keep in order as the dispatcher does.
type fakeDispatcher struct {
	mu      sync.Mutex
	history map[string][]*event.Event
	routes  map[string]notifier.Route
	roots   map[string][]string
	kept    map[string][]string // route -> event ids kept by the backfill
	removed []string            // "name: reason"
	busy    map[string]bool     // routes with pending deliveries
	fail    error
	added   chan string
	readied []string // routes added with a Ready
	// live, if set, runs after the route is added and before the backfill,
	// as an Accept racing with AddListener does.
	live func()
}

func newFakeDispatcher() *fakeDispatcher {
	return &fakeDispatcher{
		history: map[string][]*event.Event{}, routes: map[string]notifier.Route{}, roots: map[string][]string{},
		kept: map[string][]string{}, busy: map[string]bool{}, added: make(chan string, 16),
	}
}

func (d *fakeDispatcher) AddListenerWith(ctx context.Context, rt notifier.Route, o notifier.ListenerOptions) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail != nil {
		return 0, d.fail
	}
	name := rt.Callback.Name
	if o.Ready != nil {
		d.readied = append(d.readied, name)
		// As the dispatcher: before any Accept matches the route.
		if err := o.Ready(ctx); err != nil {
			return 0, err
		}
	}
	var roots []string
	if o.Roots != nil {
		var err error
		if roots, err = o.Roots(ctx); err != nil {
			return 0, err
		}
	}
	d.routes[name], d.roots[name] = rt, roots
	if d.live != nil {
		d.live()
	}
	for _, r := range roots {
		for _, ev := range d.history[r] {
			if o.Keep(ev) {
				d.kept[name] = append(d.kept[name], ev.ID)
			}
		}
	}
	d.added <- name
	return len(d.kept[name]), nil
}

func (d *fakeDispatcher) RemoveListener(name, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.routes, name)
	d.removed = append(d.removed, name+": "+reason)
}

func (d *fakeDispatcher) ListenerIdle(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.busy[name]
}

var _ Dispatcher = (*fakeDispatcher)(nil)

// tree is a parent execution P with tasks T1 and T2; T1 starts S, whose
// task TS starts SS; T2 starts S2. All under root P, in causal order.
type tree struct{ evs []*event.Event }

func (tr *tree) exec(id, parentTask, wf string, typ event.Type) *event.Event {
	x := &event.Execution{ID: id, WorkflowName: wf, ProjectID: "proj-a", State: "RUNNING"}
	if parentTask != "" {
		x.TaskExecutionID = &parentTask
	}
	ev := &event.Event{ID: "ev-" + id + "-" + string(typ), Type: typ, RootExecutionID: "P", Execution: x, Sequence: uint64(len(tr.evs) + 1)}
	tr.evs = append(tr.evs, ev)
	return ev
}

func (tr *tree) task(id, exec, wf string, typ event.Type) *event.Event {
	ev := &event.Event{ID: "ev-" + id + "-" + string(typ), Type: typ, RootExecutionID: "P", Sequence: uint64(len(tr.evs) + 1),
		Task: &event.Task{ID: id, Name: "t-" + id, WorkflowExecutionID: exec, WorkflowName: wf, ProjectID: "proj-a"}}
	tr.evs = append(tr.evs, ev)
	return ev
}

func newTree() *tree {
	tr := &tree{}
	tr.exec("P", "", "wb.parent", event.WorkflowLaunched)
	tr.task("T1", "P", "wb.parent", event.TaskLaunched)
	tr.exec("S", "T1", "child", event.WorkflowLaunched)
	tr.task("TS", "S", "child", event.TaskLaunched)
	tr.exec("SS", "TS", "grandchild", event.WorkflowLaunched)
	tr.task("TSS", "SS", "grandchild", event.TaskLaunched)
	tr.task("T2", "P", "wb.parent", event.TaskLaunched)
	tr.exec("S2", "T2", "child", event.WorkflowLaunched)
	tr.task("TS2", "S2", "child", event.TaskLaunched)
	tr.task("TSS", "SS", "grandchild", event.TaskSucceeded)
	tr.exec("SS", "TS", "grandchild", event.WorkflowSucceeded)
	tr.task("TS", "S", "child", event.TaskSucceeded)
	tr.exec("S", "T1", "child", event.WorkflowSucceeded)
	tr.task("T1", "P", "wb.parent", event.TaskSucceeded)
	tr.task("TS2", "S2", "child", event.TaskFailed)
	tr.exec("S2", "T2", "child", event.WorkflowFailed)
	tr.task("T2", "P", "wb.parent", event.TaskFailed)
	tr.exec("P", "", "wb.parent", event.WorkflowFailed)
	return tr
}

type regEnv struct {
	r      *Registry
	st     *memStore
	d      *fakeDispatcher
	sealer *Sealer
	now    time.Time
	mu     sync.Mutex
}

func (e *regEnv) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *regEnv) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

func newRegEnv(t *testing.T) *regEnv {
	t.Helper()
	e := &regEnv{st: &memStore{}, d: newFakeDispatcher(), now: t0}
	e.sealer, _ = NewSealer(testKey(3))
	base := config.Callback{Timeout: 7 * time.Second, Ordering: "root", Concurrency: 4, Headers: map[string]string{"X-Base": "no"}, Workflow: "base-filter"}
	var err error
	e.r, err = NewRegistry(RegistryOptions{Store: e.st, Dispatcher: e.d, Sealer: e.sealer, Base: base, Now: e.clock, Settle: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// add stores a listener and returns its id.
func (e *regEnv) add(t *testing.T, id, scope, value, root, project string, events ...string) string {
	t.Helper()
	if len(events) == 0 {
		events = []string{"*"}
	}
	sealed, err := e.sealer.Seal(id, Spec{URL: "https://h.example/" + id, Method: "POST", Format: "envelope", Headers: map[string]string{"Authorization": "Bearer " + id}, Secret: "whsec_c2VjcmV0c2VjcmV0"})
	if err != nil {
		t.Fatal(err)
	}
	l := store.Listener{ID: id, ProjectID: project, Scope: scope, ScopeValue: value, RootID: root, Events: events, Spec: sealed, CreatedAt: t0}
	if err := e.st.CreateListener(t.Context(), l, 0); err != nil {
		t.Fatal(err)
	}
	return id
}

func (e *regEnv) sync(t *testing.T) {
	t.Helper()
	if err := e.r.sync(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// matched returns the ids of tr's events each listener gets live.
func matched(r *Registry, evs []*event.Event) map[string][]string {
	out := map[string][]string{}
	for _, ev := range evs {
		for _, name := range r.Match(ev) {
			out[strings.TrimPrefix(name, RoutePrefix)] = append(out[strings.TrimPrefix(name, RoutePrefix)], ev.ID)
		}
	}
	return out
}

func evIDs(evs []*event.Event, keep func(*event.Event) bool) []string {
	var out []string
	for _, ev := range evs {
		if keep(ev) {
			out = append(out, ev.ID)
		}
	}
	return out
}

func TestRegistryScopes(t *testing.T) {
	tr := newTree()
	subtree := map[string]bool{"S": true, "TS": true, "SS": true, "TSS": true}
	tests := []struct {
		name                     string
		scope, value, root, proj string
		events                   []string
		want                     func(*event.Event) bool
	}{
		{"root execution", ScopeExecution, "P", "P", "proj-a", nil, func(*event.Event) bool { return true }},
		{"root execution, completions", ScopeExecution, "P", "P", "proj-a", []string{"on-execution-complete"},
			func(ev *event.Event) bool { return ev.Type.Terminal() && ev.Kind() == event.KindExecution }},
		{"sub-execution subtree", ScopeExecution, "S", "P", "proj-a", nil, func(ev *event.Event) bool { return subtree[ev.EntityID()] }},
		{"task", ScopeTask, "T2", "P", "proj-a", []string{"TASK"}, func(ev *event.Event) bool { return ev.EntityID() == "T2" }},
		{"workflow glob", ScopeWorkflow, "*child", "", "proj-a", nil, func(ev *event.Event) bool { return strings.HasSuffix(ev.WorkflowName(), "child") }},
		{"workflow glob, other project", ScopeWorkflow, "*", "", "proj-b", nil, func(*event.Event) bool { return false }},
		{"workflow glob, every project", ScopeWorkflow, "child", "", "", []string{"EXECUTION"},
			func(ev *event.Event) bool { return ev.WorkflowName() == "child" && ev.Kind() == event.KindExecution }},
		{"workbook", ScopeWorkbook, "wb", "", "proj-a", nil, func(ev *event.Event) bool { return ev.WorkflowName() == "wb.parent" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newRegEnv(t)
			e.r.SetActive(true)
			e.add(t, "L", tt.scope, tt.value, tt.root, tt.proj, tt.events...)
			e.sync(t)
			got := matched(e.r, tr.evs)["L"]
			if want := evIDs(tr.evs, tt.want); !slices.Equal(got, want) {
				t.Fatalf("matched\n %v\nwant\n %v", got, want)
			}
		})
	}
}

// TestRegistryBackfillThenLive: a sub-execution listener registered in the
// middle of the tree gets the earlier events through the backfill (its
// subtree learnt from them) and the later ones live.
func TestRegistryBackfillThenLive(t *testing.T) {
	tr := newTree()
	e := newRegEnv(t)
	e.r.SetActive(true)
	e.d.history["P"] = tr.evs[:5] // up to SS launched
	e.add(t, "L", ScopeExecution, "S", "P", "proj-a")
	e.sync(t)
	if got := e.d.roots[RouteName("L")]; !slices.Equal(got, []string{"P"}) {
		t.Fatalf("backfill roots %v, want [P]", got)
	}
	got := append(slices.Clone(e.d.kept[RouteName("L")]), matched(e.r, tr.evs[5:])["L"]...)
	want := []string{"ev-S-WORKFLOW_LAUNCHED", "ev-TS-TASK_LAUNCHED", "ev-SS-WORKFLOW_LAUNCHED", "ev-TSS-TASK_LAUNCHED",
		"ev-TSS-TASK_SUCCEEDED", "ev-SS-WORKFLOW_SUCCEEDED", "ev-TS-TASK_SUCCEEDED", "ev-S-WORKFLOW_SUCCEEDED"}
	if !slices.Equal(got, want) {
		t.Fatalf("backfill+live\n %v\nwant\n %v", got, want)
	}
}

func TestRegistryRoute(t *testing.T) {
	e := newRegEnv(t)
	e.add(t, "L", ScopeExecution, "P", "P", "proj-a")
	e.sync(t)
	if len(e.d.routes) != 0 {
		t.Fatal("an inactive registry activated a listener")
	}
	e.r.SetActive(true)
	e.sync(t)
	rt, ok := e.d.routes["listener:L"]
	if !ok {
		t.Fatalf("routes %v", e.d.routes)
	}
	cb := rt.Callback
	if cb.URL != "https://h.example/L" || cb.Format != "envelope" || cb.Headers["Authorization"] != "Bearer L" || cb.Headers["X-Base"] != "" {
		t.Errorf("callback %+v", cb)
	}
	if cb.Timeout != 7*time.Second || cb.Concurrency != 4 || cb.Workflow != "" {
		t.Errorf("callback %+v: want Base's delivery settings and none of its filters", cb)
	}
	if !slices.Equal(rt.Secrets, []string{"whsec_c2VjcmV0c2VjcmV0"}) || rt.Format == nil {
		t.Errorf("secrets %v format %v", rt.Secrets, rt.Format)
	}
	msg, err := rt.Format.Format(newTree().evs[0])
	if err != nil || !strings.Contains(string(msg.Body), `"type":"WORKFLOW_LAUNCHED"`) {
		t.Errorf("formatted %s, %v", msg.Body, err)
	}
	e.d.mu.Lock()
	e.d.routes = map[string]notifier.Route{}
	e.d.mu.Unlock()
	e.sync(t)
	if len(e.d.routes) != 0 {
		t.Error("a second sync activated the listener again")
	}
	e.st.openRoots = []string{"R1", "R2"}
	e.add(t, "W", ScopeWorkflow, "wf*", "", "proj-a")
	e.sync(t)
	if got := e.d.roots["listener:W"]; !slices.Equal(got, []string{"R1", "R2"}) {
		t.Errorf("workflow listener backfill roots %v, want the open roots", got)
	}
}

func TestRegistryFinishedScope(t *testing.T) {
	tr := newTree()
	e := newRegEnv(t)
	e.r.SetActive(true)
	e.add(t, "X", ScopeExecution, "S", "P", "proj-a", "on-task-complete")
	e.add(t, "T", ScopeTask, "T2", "P", "proj-a")
	e.add(t, "W", ScopeWorkflow, "*", "", "proj-a")
	e.sync(t)
	e.d.busy["listener:X"] = true
	matched(e.r, tr.evs) // S and T2 end
	e.sync(t)
	if len(e.d.removed) != 0 {
		t.Fatalf("removed %v before the settle time", e.d.removed)
	}
	e.advance(5 * time.Second)
	e.sync(t)
	if !slices.Equal(e.d.removed, []string{"listener:T: scope finished"}) {
		t.Fatalf("removed %v, want the idle task listener only", e.d.removed)
	}
	e.d.busy["listener:X"] = false
	e.sync(t)
	if !slices.Equal(e.d.removed, []string{"listener:T: scope finished", "listener:X: scope finished"}) {
		t.Fatalf("removed %v", e.d.removed)
	}
	if !slices.Equal(e.st.deleted, []string{"T", "X"}) || e.st.count() != 1 {
		t.Fatalf("deleted from the store %v, %d left; want T and X deleted, W kept", e.st.deleted, e.st.count())
	}
	if got := matched(e.r, tr.evs)["X"]; got != nil {
		t.Errorf("a removed listener still matches %v", got)
	}
}

// TestRegistryFinishedInBackfill: registered after its execution ended,
// a listener gets the history and then removes itself.
func TestRegistryFinishedInBackfill(t *testing.T) {
	tr := newTree()
	e := newRegEnv(t)
	e.r.SetActive(true)
	e.d.history["P"] = tr.evs
	e.add(t, "X", ScopeExecution, "P", "P", "proj-a")
	e.sync(t)
	if n := len(e.d.kept["listener:X"]); n != len(tr.evs) {
		t.Fatalf("backfilled %d events, want %d", n, len(tr.evs))
	}
	e.advance(5 * time.Second)
	e.sync(t)
	if !slices.Equal(e.d.removed, []string{"listener:X: scope finished"}) {
		t.Fatalf("removed %v", e.d.removed)
	}
}

func TestRegistryExpiryAndDeletion(t *testing.T) {
	e := newRegEnv(t)
	e.r.SetActive(true)
	e.add(t, "A", ScopeExecution, "P", "P", "proj-a")
	e.add(t, "B", ScopeExecution, "P", "P", "proj-a")
	e.st.ls[0].ExpiresAt = t0.Add(time.Hour)
	e.sync(t)
	e.advance(time.Hour)
	if got := e.r.Match(newTree().evs[0]); !slices.Equal(got, []string{"listener:B"}) {
		t.Fatalf("Match = %v once A expired, before any sync; want B only", got)
	}
	e.sync(t)
	if !slices.Equal(e.d.removed, []string{"listener:A: listener expired"}) || !slices.Equal(e.st.deleted, []string{"A"}) {
		t.Fatalf("removed %v, deleted %v", e.d.removed, e.st.deleted)
	}
	// Deleted by another replica's API: the route goes.
	_, _ = e.st.DeleteListener(t.Context(), "B")
	e.sync(t)
	if got := e.d.removed[len(e.d.removed)-1]; got != "listener:B: listener deleted" {
		t.Fatalf("removed %v", e.d.removed)
	}
	if got := e.r.Match(newTree().evs[0]); got != nil {
		t.Fatalf("Match = %v after every listener went", got)
	}
}

func TestRegistryActivationFailures(t *testing.T) {
	e := newRegEnv(t)
	e.r.SetActive(true)
	e.d.fail = errors.New("store down")
	e.add(t, "A", ScopeExecution, "P", "P", "proj-a")
	if err := e.r.sync(t.Context()); err == nil || !strings.Contains(err.Error(), "store down") {
		t.Fatalf("first failure: %v, want it reported", err)
	}
	if err := e.r.sync(t.Context()); err != nil {
		t.Fatalf("second failure reported again: %v", err)
	}
	if got := e.r.Match(newTree().evs[0]); got != nil {
		t.Fatalf("a listener whose route failed matches: %v", got)
	}
	e.d.fail = nil
	e.sync(t)
	if _, ok := e.d.routes["listener:A"]; !ok {
		t.Fatal("not activated once the dispatcher recovered")
	}
	// A spec sealed with another key is refused, not activated half.
	other, _ := NewSealer(testKey(9))
	sealed, _ := other.Seal("Z", Spec{URL: "http://h/", Method: "POST", Format: "mistral"})
	_ = e.st.CreateListener(t.Context(), store.Listener{ID: "Z", Scope: ScopeExecution, ScopeValue: "P", RootID: "P", Events: []string{"*"}, Spec: sealed}, 0)
	if err := e.r.sync(t.Context()); !errors.Is(err, ErrUnseal) {
		t.Fatalf("sync = %v, want ErrUnseal", err)
	}
}

func TestRegistryDeactivate(t *testing.T) {
	e := newRegEnv(t)
	e.r.SetActive(true)
	e.add(t, "A", ScopeExecution, "P", "P", "proj-a")
	e.sync(t)
	e.r.SetActive(false)
	if got := e.r.Match(newTree().evs[0]); got != nil {
		t.Fatalf("Match = %v while inactive", got)
	}
	if len(e.d.removed) != 0 {
		t.Fatalf("deactivation removed routes %v: their deliveries belong to the next leader", e.d.removed)
	}
	e.add(t, "B", ScopeExecution, "P", "P", "proj-a")
	_, _ = e.st.DeleteListener(t.Context(), "A") // by the other leader, meanwhile
	e.r.SetActive(true)
	e.sync(t)
	if got := e.r.Match(newTree().evs[0]); !slices.Equal(got, []string{"listener:B"}) {
		t.Fatalf("Match = %v after reactivation, want B only", got)
	}
	if !slices.Equal(e.d.removed, []string{"listener:A: listener deleted"}) {
		t.Fatalf("removed %v: the route of A, deleted while this replica was standby, must go", e.d.removed)
	}
}

// TestRegistryRunChanged: Changed makes Run sync at once (the interval is
// an hour here), and Match is safe while it does.
func TestRegistryRunChanged(t *testing.T) {
	e := newRegEnv(t)
	e.r.o.Interval = time.Hour
	e.r.SetActive(true)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- e.r.Run(ctx) }()
	tr := newTree()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				matched(e.r, tr.evs)
			}
		}
	}()
	for _, id := range []string{"A", "B", "C"} {
		e.add(t, id, ScopeExecution, "S", "P", "proj-a")
		e.r.Changed()
		select {
		case name := <-e.d.added:
			if name != RouteName(id) {
				t.Fatalf("activated %s, want %s", name, id)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("listener %s not activated after Changed", id)
		}
	}
	close(stop)
	wg.Wait()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestRegistryPrime: a live event of a grandchild matched while the
// backfill has not yet run is in the subtree, because the listener's Ready
// learnt the subtree from the history before any Accept matched the route.
func TestRegistryPrime(t *testing.T) {
	tr := newTree()
	e := newRegEnv(t)
	e.r.SetActive(true)
	e.d.history["P"] = tr.evs[:4] // up to TS launched
	e.st.history = map[string][]store.Recorded{}
	for _, ev := range tr.evs[:4] {
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		e.st.history["P"] = append(e.st.history["P"], store.Recorded{ID: ev.ID, RootID: "P", Event: b})
	}
	var got []string
	e.d.live = func() { got = e.r.Match(tr.evs[4]) } // SS launched, started by TS
	e.add(t, "L", ScopeExecution, "S", "P", "proj-a")
	e.sync(t)
	if !slices.Equal(got, []string{"listener:L"}) {
		t.Fatalf("live grandchild event matched %v during the backfill, want the listener", got)
	}
}

// rootsStore is a memStore with RootsSince.
type rootsStore struct {
	*memStore
	roots []string
	since time.Time
}

func (s *rootsStore) RootsSince(_ context.Context, since time.Time) ([]string, error) {
	s.since = since
	return s.roots, nil
}

// TestRegistryRootsSince: a workflow listener's backfill covers the open
// roots and the roots with events since its registration (executions that
// ended before it was activated).
func TestRegistryRootsSince(t *testing.T) {
	e := newRegEnv(t)
	rs := &rootsStore{memStore: e.st, roots: []string{"C", "A"}}
	e.st.openRoots = []string{"B", "C"}
	var err error
	e.r, err = NewRegistry(RegistryOptions{Store: rs, Dispatcher: e.d, Sealer: e.sealer, Now: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetActive(true)
	e.add(t, "W", ScopeWorkbook, "wb", "", "proj-a")
	e.add(t, "X", ScopeExecution, "P", "P", "proj-a")
	e.sync(t)
	if got := e.d.roots["listener:W"]; !slices.Equal(got, []string{"A", "B", "C"}) {
		t.Fatalf("workbook listener's roots %v, want open ∪ since registration", got)
	}
	if want := t0.Add(-time.Second); !rs.since.Equal(want) {
		t.Fatalf("RootsSince(%v), want a second before the registration (%v)", rs.since, want)
	}
	if got := e.d.roots["listener:X"]; !slices.Equal(got, []string{"P"}) {
		t.Fatalf("execution listener's roots %v, want its root only", got)
	}
	// A listener registered long ago looks back CatchUp only.
	e.advance(time.Hour)
	e.add(t, "V", ScopeWorkflow, "*", "", "proj-a")
	e.sync(t)
	if want := t0.Add(time.Hour - 10*time.Minute); !rs.since.Equal(want) {
		t.Fatalf("RootsSince(%v) for an old listener, want now - CatchUp (%v)", rs.since, want)
	}
}

// Only a sub-execution listener passes a Ready (it holds Accepts up while
// it reads its root's history); the other scopes never do. A history that
// cannot be read fails the activation rather than going live without the
// subtree.
func TestRegistryReadyOnlySubExecution(t *testing.T) {
	e := newRegEnv(t)
	e.r.SetActive(true)
	e.add(t, "root", ScopeExecution, "P", "P", "proj-a")
	e.add(t, "sub", ScopeExecution, "S", "P", "proj-a")
	e.add(t, "task", ScopeTask, "TS", "P", "proj-a")
	e.add(t, "wf", ScopeWorkflow, "child", "", "proj-a")
	e.add(t, "wb", ScopeWorkbook, "wb", "", "proj-a")
	e.sync(t)
	if len(e.d.routes) != 5 {
		t.Fatalf("%d routes added, want 5", len(e.d.routes))
	}
	if want := []string{RouteName("sub")}; !slices.Equal(e.d.readied, want) {
		t.Fatalf("routes added with a Ready: %v, want %v", e.d.readied, want)
	}

	e.st.histFail = errors.New("history down")
	e.add(t, "sub2", ScopeExecution, "S2", "P", "proj-a")
	if err := e.r.sync(t.Context()); err == nil || !strings.Contains(err.Error(), "history down") {
		t.Fatalf("sync = %v, want the history failure", err)
	}
	if _, ok := e.d.routes[RouteName("sub2")]; ok || e.r.get("sub2") != nil {
		t.Fatal("sub-execution listener active although its subtree could not be read")
	}
	e.st.histFail = nil
	e.sync(t)
	if _, ok := e.d.routes[RouteName("sub2")]; !ok {
		t.Fatal("not activated once the history could be read")
	}
}
