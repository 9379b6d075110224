package watch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
	"github.com/mistral-tap/mistral-tap/tap/mistral"
)

// engine is a minimal list endpoint: rows sorted by (updated_at, id), the
// updated_at=gte: filter, limit and marker, as Mistral implements them.
type engine struct {
	mu       sync.Mutex
	execs    []map[string]any
	tasks    []map[string]any
	requests []*url.URL
	down     bool
	// before, when set, runs at the start of each request (outside mu):
	// the engine changing between two lists of one poll.
	before func(*url.URL)
}

func (e *engine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if e.before != nil {
		e.before(r.URL)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.requests = append(e.requests, r.URL)
	if e.down {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"faultcode": "Server", "faultstring": "database down", "debuginfo": null}`)
		return
	}
	var rows []map[string]any
	res := strings.TrimPrefix(r.URL.Path, "/v2/")
	switch res {
	case "executions":
		rows = e.execs
	case "tasks":
		rows = e.tasks
	default:
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	col := "updated_at"
	if q.Get("created_at") != "" {
		col = "created_at"
	}
	since := strings.TrimPrefix(q.Get(col), "gte:")
	var out []map[string]any
	for _, row := range rows {
		if v, ok := row[col].(string); ok && v >= since {
			out = append(out, row)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a["updated_at"] != b["updated_at"] {
			return a["updated_at"].(string) < b["updated_at"].(string)
		}
		return a["id"].(string) < b["id"].(string)
	})
	if m := q.Get("marker"); m != "" {
		for i, row := range out {
			if row["id"] == m {
				out = out[i+1:]
				break
			}
		}
	}
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	if out == nil {
		out = []map[string]any{}
	}
	json.NewEncoder(w).Encode(map[string]any{res: out})
}

func (e *engine) add(kind, id, state, updated string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	row := map[string]any{"id": id, "state": state, "created_at": updated, "updated_at": updated, "workflow_name": "wf"}
	list := &e.execs
	if kind == "task" {
		row["workflow_execution_id"] = "e1"
		list = &e.tasks
	}
	for i, r := range *list {
		if r["id"] == id {
			(*list)[i] = row
			return
		}
	}
	*list = append(*list, row)
}

func (e *engine) reqs() []*url.URL {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*url.URL(nil), e.requests...)
}

type observer struct {
	mu  sync.Mutex
	obs []event.Observation
}

func (o *observer) ObserveSync(_ context.Context, obs []event.Observation) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.obs = append(o.obs, obs...)
	return nil
}

type memCP struct{ m sync.Map }

func (c *memCP) Checkpoint(_ context.Context, k string) (string, error) {
	v, _ := c.m.Load(k)
	s, _ := v.(string)
	return s, nil
}
func (c *memCP) SetCheckpoint(_ context.Context, k, v string) error { c.m.Store(k, v); return nil }

// client returns a mistral.Client of h with pages of pageSize.
func client(t *testing.T, h http.Handler, pageSize int, headers map[string]string) *mistral.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	c, err := mistral.New(mistral.Options{BaseURL: u, PageSize: pageSize, Headers: headers})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newWatcher(t *testing.T, e *engine, now time.Time, o *observer, cp *memCP) *Watcher {
	t.Helper()
	w, err := New(Options{Engine: client(t, e, 2, nil), Interval: time.Millisecond, Observer: o, Checkpoints: cp, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.loadCheckpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	return w
}

func TestPollPagesAndAdvances(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	e := &engine{}
	e.add("exec", "old", "SUCCESS", "2026-11-28 09:00:00") // before start: never read
	for i := range 5 {
		e.add("exec", fmt.Sprintf("e%d", i), "RUNNING", "2026-11-28 10:00:0"+strconv.Itoa(i))
	}
	e.add("task", "t1", "SUCCESS", "2026-11-28 10:00:03")
	o, cp := &observer{}, &memCP{}
	w := newWatcher(t, e, now, o, cp)

	if err := w.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(o.obs) != 6 {
		t.Fatalf("observations = %d, want 6 (5 executions over 3 pages + 1 task)", len(o.obs))
	}
	for _, ob := range o.obs {
		if ob.Source != event.SourceWatch || (ob.Execution != nil && ob.Execution.ID == "old") {
			t.Errorf("unexpected observation %+v", ob)
		}
	}
	got, _ := cp.Checkpoint(context.Background(), checkpointKey)
	if got != "2026-11-28 10:00:04" {
		t.Errorf("checkpoint = %q", got)
	}
	reqs := e.reqs()
	first := reqs[0].Query()
	for k, want := range map[string]string{
		"updated_at": "gte:2026-11-28 09:59:58", // checkpoint minus the overlap
		"sort_keys":  "updated_at,id",
		"sort_dirs":  "asc,asc",
		"limit":      "2",
		"fields":     mistral.ExecutionFields,
	} {
		if first.Get(k) != want {
			t.Errorf("query %s = %q, want %q", k, first.Get(k), want)
		}
	}
	if !strings.Contains(reqs[0].RawQuery, "09:59:58") || strings.Contains(reqs[0].RawQuery, "+") {
		t.Errorf("space must be sent as %%20: %s", reqs[0].RawQuery)
	}
	if reqs[1].Query().Get("marker") != "e1" {
		t.Errorf("second page marker = %q", reqs[1].Query().Get("marker"))
	}
}

// TestPollIsConstantWhenIdle: with nothing changing, every poll costs the
// same four requests (executions and tasks, by updated_at and by
// created_at) however many executions exist.
func TestPollIsConstantWhenIdle(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	for _, n := range []int{0, 10, 1000} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			e := &engine{}
			for i := range n {
				e.add("exec", fmt.Sprintf("e%05d", i), "RUNNING", "2026-11-28 08:00:00")
			}
			w := newWatcher(t, e, now, &observer{}, &memCP{})
			for range 5 {
				if err := w.Poll(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if got := len(e.reqs()); got != 20 {
				t.Errorf("%d requests for 5 idle polls, want 20", got)
			}
		})
	}
}

// TestIdleAfterBurstSettles: rows stamped within the overlap before the
// checkpoint were re-read by every idle poll (a burst of executions ending
// in one second cost 3 pages per list for as long as nothing else
// changed). Once a poll that started overlap+1s after the checkpoint's row
// was seen has read the overlap, idle polls ask only for rows stamped after
// the checkpoint's second: four requests. A new row moves the checkpoint
// and brings the overlap back.
func TestIdleAfterBurstSettles(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	e := &engine{}
	// 5 executions and 5 tasks stamped in the same second, pages of 2.
	for i := range 5 {
		e.add("exec", fmt.Sprintf("e%d", i), "SUCCESS", "2026-11-28 10:00:01")
		e.add("task", fmt.Sprintf("t%d", i), "SUCCESS", "2026-11-28 10:00:01")
	}
	o := &observer{}
	var now time.Time
	w, err := New(Options{Engine: client(t, e, 2, nil), Interval: time.Second, Observer: o, Checkpoints: &memCP{},
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	now = t0
	if err := w.loadCheckpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		at        time.Duration // clock at the poll
		add       string        // a row stamped at this time appears before the poll
		wantReqs  int
		wantSince string
	}{
		{at: 2 * time.Second, wantReqs: 12, wantSince: "2026-11-28 09:59:58"}, // the burst, 3 pages × 4 lists
		{at: 3 * time.Second, wantReqs: 12, wantSince: "2026-11-28 09:59:59"}, // too soon to settle
		{at: 6 * time.Second, wantReqs: 12, wantSince: "2026-11-28 09:59:59"}, // reads the overlap once more, settles
		{at: 7 * time.Second, wantReqs: 4, wantSince: "2026-11-28 10:00:02"},  // idle: four requests
		{at: 60 * time.Second, wantReqs: 4, wantSince: "2026-11-28 10:00:02"},
		{at: 61 * time.Second, add: "2026-11-28 10:01:00", wantReqs: 4, wantSince: "2026-11-28 10:00:02"},
		{at: 62 * time.Second, wantReqs: 4, wantSince: "2026-11-28 10:00:58"}, // moved: the overlap is back
	}
	for i, st := range steps {
		if st.add != "" {
			e.add("exec", "new", "RUNNING", st.add)
		}
		now = t0.Add(st.at)
		before := len(e.reqs())
		if err := w.Poll(context.Background()); err != nil {
			t.Fatal(err)
		}
		reqs := e.reqs()
		if got := len(reqs) - before; got != st.wantReqs {
			t.Errorf("poll %d at +%v: %d requests, want %d", i, st.at, got, st.wantReqs)
		}
		if got := strings.TrimPrefix(reqs[before].Query().Get("updated_at"), "gte:"); got != st.wantSince {
			t.Errorf("poll %d at +%v: updated_at >= %s, want %s", i, st.at, got, st.wantSince)
		}
	}
	found := false
	for _, ob := range o.obs {
		found = found || (ob.Execution != nil && ob.Execution.ID == "new")
	}
	if !found {
		t.Error("the row added after the watcher settled was not observed")
	}
}

func TestResumeFromCheckpoint(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	e := &engine{}
	e.add("exec", "during-downtime", "SUCCESS", "2026-11-28 11:00:00")
	cp := &memCP{}
	cp.SetCheckpoint(context.Background(), checkpointKey, "2026-11-28 10:30:00")
	o := &observer{}
	w := newWatcher(t, e, now, o, cp)
	if err := w.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(o.obs) != 1 {
		t.Fatalf("a restart must pick up what changed while down: %d observations", len(o.obs))
	}
}

func TestEngineDownThenUp(t *testing.T) {
	e := &engine{down: true}
	o := &observer{}
	w := newWatcher(t, e, time.Now(), o, &memCP{})
	err := w.Poll(context.Background())
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "database down") {
		t.Fatalf("error = %v, want the status and Mistral's faultstring", err)
	}
	if d := w.failed(err, 0); d < time.Second || d > 30*time.Second {
		t.Errorf("backoff %v out of range", d)
	}
	if d := w.failed(err, 20*time.Second); d != 30*time.Second {
		t.Errorf("backoff cap = %v", d)
	}
	e.mu.Lock()
	e.down = false
	e.mu.Unlock()
	if err := w.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := w.Stats(); s.Errors != 2 || s.Requests != 5 || s.Polls != 1 {
		t.Errorf("stats %+v, want 2 errors, 5 requests (1 failed, 4 listed), 1 poll", s)
	}
}

// TestOutageLoggedOnce: however many polls fail with the same error, the
// outage is logged once, and its end once.
func TestOutageLoggedOnce(t *testing.T) {
	var logs strings.Builder
	w, err := New(Options{Engine: client(t, &engine{}, 2, nil), Interval: time.Second, Observer: &observer{},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	down := errors.New("watch: mistral: GET /v2/executions: engine answered 503: database down")
	wait := time.Duration(0)
	var waits []time.Duration
	for range 3 {
		wait = w.failed(down, wait)
		waits = append(waits, wait)
	}
	w.recovered()
	w.recovered()
	if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}; !slices.Equal(waits, want) {
		t.Errorf("back-off %v, want %v", waits, want)
	}
	out := logs.String()
	if strings.Count(out, "cannot poll the engine") != 1 || strings.Count(out, "reaches the engine again") != 1 {
		t.Errorf("want one outage and one recovery line:\n%s", out)
	}
}

// TestPollKeepsTheLaterReadOfARow: a task listed by the updated_at list
// and, after it changed, by the created_at list reaches the tracker as the
// later read. Seen on the real Mistral: task a RUNNING in the first list,
// SUCCESS (and the next task b RUNNING) in the second; keeping the first
// put b's launch before a's success.
func TestPollKeepsTheLaterReadOfARow(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	e := &engine{}
	e.add("exec", "e1", "RUNNING", "2026-11-28 10:00:00")
	e.add("task", "a", "RUNNING", "2026-11-28 10:00:00")
	var once sync.Once
	e.before = func(u *url.URL) {
		if strings.HasSuffix(u.Path, "/tasks") && u.Query().Get("created_at") != "" {
			once.Do(func() {
				e.add("task", "a", "SUCCESS", "2026-11-28 10:00:00")
				e.add("task", "b", "RUNNING", "2026-11-28 10:00:01")
			})
		}
	}
	o := &observer{}
	w := newWatcher(t, e, now, o, &memCP{})
	if err := w.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, ob := range o.obs {
		if ob.Task != nil {
			if _, dup := states[ob.Task.ID]; dup {
				t.Errorf("task %s observed twice in one poll", ob.Task.ID)
			}
			states[ob.Task.ID] = ob.Task.State
		}
	}
	if states["a"] != "SUCCESS" || states["b"] != "RUNNING" {
		t.Errorf("task states handed to the tracker = %v, want a SUCCESS, b RUNNING", states)
	}
}

// failingLists is an Engine whose lists named in fail answer boom.
type failingLists struct {
	Engine
	fail string // "executions" or "tasks"
}

var boom = errors.New("boom")

func (f failingLists) Executions(ctx context.Context, q url.Values) iter.Seq2[[]event.Execution, error] {
	if f.fail == "executions" {
		return func(yield func([]event.Execution, error) bool) { yield(nil, boom) }
	}
	return f.Engine.Executions(ctx, q)
}

func (f failingLists) Tasks(ctx context.Context, q url.Values) iter.Seq2[[]event.Task, error] {
	if f.fail == "tasks" {
		return func(yield func([]event.Task, error) bool) { yield(nil, boom) }
	}
	return f.Engine.Tasks(ctx, q)
}

type failingObserver struct{}

func (failingObserver) ObserveSync(context.Context, []event.Observation) error { return boom }

type failingCP struct{ memCP }

func (*failingCP) SetCheckpoint(context.Context, string, string) error { return boom }

// TestPollFailureKeepsCheckpoint: a poll that fails at any step returns an
// error naming the step (wrapping the cause), and neither moves the
// checkpoint nor counts as a poll, so that the next poll reads the same
// rows again.
func TestPollFailureKeepsCheckpoint(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	start := now.Format(tsLayout)
	tests := []struct {
		name       string
		fail       string // the list that fails, if any
		perProject bool
		observer   Observer
		cp         Checkpoints
		want       string
		wantReqs   uint64
	}{
		{name: "executions list", fail: "executions", want: "watch: boom", wantReqs: 1},
		{name: "tasks list", fail: "tasks", want: "watch: boom", wantReqs: 3}, // two execution lists (one page each), then tasks
		{name: "seeding the unfinished executions", fail: "executions", perProject: true,
			want: "watch: listing unfinished executions: watch: boom", wantReqs: 1},
		{name: "recording the observations", observer: failingObserver{}, want: "watch: recording a poll: boom", wantReqs: 4},
		{name: "saving the checkpoint", cp: &failingCP{}, want: "watch: saving checkpoint: boom", wantReqs: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &engine{}
			e.add("exec", "e1", "RUNNING", "2026-11-28 10:00:01")
			e.add("task", "t1", "RUNNING", "2026-11-28 10:00:01")
			o := Options{Engine: failingLists{Engine: client(t, e, 10, nil), fail: tt.fail}, Interval: time.Second,
				Observer: tt.observer, Checkpoints: tt.cp, Now: func() time.Time { return now }}
			if o.Observer == nil {
				o.Observer = &observer{}
			}
			if o.Checkpoints == nil {
				o.Checkpoints = &memCP{}
			}
			if tt.perProject {
				o.AllProjects, o.Projects = true, scopes{}
			}
			w, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.loadCheckpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
			err = w.Poll(context.Background())
			if err == nil || err.Error() != tt.want || !errors.Is(err, boom) {
				t.Fatalf("error = %v, want %q wrapping the cause", err, tt.want)
			}
			w.mu.Lock()
			cp := w.checkpoint
			w.mu.Unlock()
			if cp != start {
				t.Errorf("checkpoint moved to %s after a failed poll, want %s", cp, start)
			}
			if saved, _ := o.Checkpoints.Checkpoint(context.Background(), checkpointKey); saved != "" {
				t.Errorf("checkpoint %q saved after a failed poll", saved)
			}
			if s := w.Stats(); s.Polls != 0 || s.Resources != 0 || s.Requests != tt.wantReqs {
				t.Errorf("stats %+v, want no poll, no resources, %d requests", s, tt.wantReqs)
			}
		})
	}
}

// TestPollWithoutCheckpoint: Poll called before Run loaded a checkpoint
// starts from the clock (minus the overlap) and moves on from there.
func TestPollWithoutCheckpoint(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	e := &engine{}
	e.add("exec", "old", "SUCCESS", "2026-11-28 09:59:00")
	e.add("exec", "e1", "RUNNING", "2026-11-28 09:59:59")
	e.add("exec", "e2", "RUNNING", "2026-11-28 10:00:03")
	o := &observer{}
	w, err := New(Options{Engine: client(t, e, 10, nil), Interval: time.Second, Observer: o, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.reqs()[0].Query().Get("updated_at"); got != "gte:2026-11-28 09:59:58" {
		t.Errorf("first list updated_at = %q, want the clock minus the overlap", got)
	}
	var ids []string
	for _, ob := range o.obs {
		ids = append(ids, ob.Execution.ID)
	}
	if !slices.Equal(ids, []string{"e1", "e2"}) {
		t.Errorf("observed %v, want [e1 e2]", ids)
	}
	w.mu.Lock()
	cp := w.checkpoint
	w.mu.Unlock()
	if cp != "2026-11-28 10:00:03" {
		t.Errorf("checkpoint = %q, want the newest row's", cp)
	}
}
