package track

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

type sink struct {
	mu     sync.Mutex
	events []event.Event
	states []event.EntityState
	fail   int // fail this many Accept calls first
}

func (s *sink) Accept(_ context.Context, evs []event.Event, st []event.EntityState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail > 0 {
		s.fail--
		return errors.New("disk full")
	}
	s.events = append(s.events, evs...)
	s.states = append(s.states, st...)
	return nil
}

func (s *sink) got() []event.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]event.Event(nil), s.events...)
}

var base = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

func ts(sec int) string   { return base.Add(time.Duration(sec) * time.Second).Format(tsLayout) }
func sp(s string) *string { return &s }

func ex(id, state string, created, updated int) event.Observation {
	x := &event.Execution{ID: id, WorkflowName: "wf", WorkflowID: "wfid", State: state, ProjectID: "p", CreatedAt: ts(created)}
	if updated >= 0 {
		x.UpdatedAt = sp(ts(updated))
	}
	return event.Observation{Source: event.SourceWatch, Execution: x, RequestedAt: base.Add(time.Duration(updated) * time.Second)}
}

func sub(id, state, parentTask, root string, created, updated int) event.Observation {
	o := ex(id, state, created, updated)
	o.Execution.TaskExecutionID = sp(parentTask)
	o.Execution.RootExecutionID = sp(root)
	return o
}

func tk(id, name, exec, state string, created, updated int, retry int) event.Observation {
	k := &event.Task{ID: id, Name: name, WorkflowExecutionID: exec, WorkflowName: "wf", State: state, Type: "ACTION", CreatedAt: ts(created), StartedAt: sp(ts(created))}
	if updated >= 0 {
		k.UpdatedAt = sp(ts(updated))
	}
	if event.Completed(state) {
		k.FinishedAt = sp(ts(updated))
	}
	if retry > 0 {
		k.RuntimeContext = sp(fmt.Sprintf(`{"retry_task_policy": {"retry_no": %d}}`, retry))
	}
	return event.Observation{Source: event.SourceWatch, Task: k, RequestedAt: base.Add(time.Duration(updated) * time.Second)}
}

// tkp is tk with Mistral's wait policies marked in runtime_context.
func tkp(id, state string, updated int, before, after bool) event.Observation {
	o := tk(id, "a", "e1", state, 0, updated, 0)
	rc := map[bool]string{true: `{"skip": true}`}
	var parts []string
	if before {
		parts = append(parts, `"wait_before_policy": `+rc[true])
	}
	if after {
		parts = append(parts, `"wait_after_policy": `+rc[true])
	}
	o.Task.RuntimeContext = sp("{" + strings.Join(parts, ", ") + "}")
	return o
}

// rerunAt sets a task's started_at, as Mistral does when it reruns it.
func rerunAt(o event.Observation, sec int) event.Observation {
	o.Task.StartedAt = sp(ts(sec))
	return o
}

func withRC(o event.Observation, rc string) event.Observation {
	o.Task.RuntimeContext = sp(rc)
	return o
}

// at moves an observation's request time later by d (same updated_at).
func at(o event.Observation, d time.Duration) event.Observation {
	o.RequestedAt = o.RequestedAt.Add(d)
	return o
}

func tap(o event.Observation) event.Observation { o.Source = event.SourceTap; return o }

func tasksFetched(o event.Observation) event.Observation { o.TasksFetched = true; return o }

// names renders events as "TYPE entity" (with a * for inferred) for
// readable comparisons.
func names(evs []event.Event) string {
	var b []string
	for _, e := range evs {
		s := string(e.Type) + " " + e.EntityID()
		if e.Inferred {
			s += "*"
		}
		b = append(b, s)
	}
	return strings.Join(b, ", ")
}

func newTracker(t *testing.T, s *sink, states ...event.EntityState) *Tracker {
	t.Helper()
	tr, err := New(Options{Sink: s, States: states, Horizon: base.Add(-time.Minute), Now: func() time.Time { return base.Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// feed runs each group of observations as one batch, in order.
func feed(t *testing.T, tr *Tracker, batches ...[]event.Observation) {
	t.Helper()
	for _, b := range batches {
		if err := tr.process(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
}

func batch(o ...event.Observation) []event.Observation { return o }

// derivationCase is a sequence of batches and the events it must yield.
type derivationCase struct {
	name    string
	batches [][]event.Observation
	want    string
}

// derivationCases are shared by TestTrackerDerivation and
// TestTrackerRestartAnywhere (every case must come out the same across a
// restart between any two of its batches).
var derivationCases = []derivationCase{
	{
		name:    "launch then success seen separately",
		batches: [][]event.Observation{batch(ex("e1", "RUNNING", 0, 0)), batch(ex("e1", "SUCCESS", 0, 3))},
		want:    "WORKFLOW_LAUNCHED e1, WORKFLOW_SUCCEEDED e1",
	},
	{
		name:    "first seen finished infers the launch",
		batches: [][]event.Observation{batch(ex("e1", "ERROR", 0, 3))},
		want:    "WORKFLOW_LAUNCHED e1*, WORKFLOW_FAILED e1",
	},
	{
		name:    "same transition seen twice yields one event",
		batches: [][]event.Observation{batch(ex("e1", "RUNNING", 0, 0)), batch(tap(ex("e1", "RUNNING", 0, 0))), batch(ex("e1", "SUCCESS", 0, 2), ex("e1", "SUCCESS", 0, 2))},
		want:    "WORKFLOW_LAUNCHED e1, WORKFLOW_SUCCEEDED e1",
	},
	{
		name:    "older observation after a newer one is ignored",
		batches: [][]event.Observation{batch(ex("e1", "SUCCESS", 0, 5)), batch(ex("e1", "RUNNING", 0, 1))},
		want:    "WORKFLOW_LAUNCHED e1*, WORKFLOW_SUCCEEDED e1",
	},
	{
		name:    "pause and resume",
		batches: [][]event.Observation{batch(ex("e1", "RUNNING", 0, 0)), batch(ex("e1", "PAUSED", 0, 1)), batch(ex("e1", "RUNNING", 0, 2)), batch(ex("e1", "SUCCESS", 0, 3))},
		want:    "WORKFLOW_LAUNCHED e1, WORKFLOW_PAUSED e1, WORKFLOW_RESUMED e1, WORKFLOW_SUCCEEDED e1",
	},
	{
		name:    "paused then success implies a resume",
		batches: [][]event.Observation{batch(ex("e1", "PAUSED", 0, 1)), batch(ex("e1", "SUCCESS", 0, 3))},
		want:    "WORKFLOW_LAUNCHED e1*, WORKFLOW_PAUSED e1, WORKFLOW_RESUMED e1*, WORKFLOW_SUCCEEDED e1",
	},
	{
		name:    "idle and waiting yield nothing",
		batches: [][]event.Observation{batch(tk("t1", "join", "e1", "WAITING", 0, 0, 0)), batch(tk("t1", "join", "e1", "RUNNING", 0, 1, 0))},
		want:    "TASK_RESUMED t1",
	},
	{
		name:    "delayed (wait-before) relaunches",
		batches: [][]event.Observation{batch(tk("t1", "a", "e1", "RUNNING", 0, 0, 0)), batch(tk("t1", "a", "e1", "DELAYED", 0, 1, 0)), batch(tk("t1", "a", "e1", "RUNNING", 0, 3, 0)), batch(tk("t1", "a", "e1", "SUCCESS", 0, 4, 0))},
		want:    "TASK_LAUNCHED t1, TASK_LAUNCHED t1, TASK_SUCCEEDED t1",
	},
	{
		name:    "retry cycles between two polls are inferred from retry_no",
		batches: [][]event.Observation{batch(tk("t1", "a", "e1", "RUNNING", 0, 0, 0)), batch(tk("t1", "a", "e1", "ERROR", 0, 9, 2))},
		want:    "TASK_LAUNCHED t1, TASK_FAILED t1*, TASK_LAUNCHED t1*, TASK_FAILED t1*, TASK_LAUNCHED t1*, TASK_FAILED t1",
	},
	{
		name:    "retry seen mid-delay",
		batches: [][]event.Observation{batch(tk("t1", "a", "e1", "RUNNING", 0, 0, 0)), batch(tk("t1", "a", "e1", "DELAYED", 0, 2, 1)), batch(tk("t1", "a", "e1", "SUCCESS", 0, 4, 1))},
		want:    "TASK_LAUNCHED t1, TASK_FAILED t1*, TASK_LAUNCHED t1*, TASK_SUCCEEDED t1",
	},
	{
		name: "a failed task updated again without a new start yields nothing",
		batches: [][]event.Observation{
			batch(ex("e1", "ERROR", 0, 2), tk("t1", "a", "e1", "ERROR", 0, 2, 0)),
			batch(ex("e1", "ERROR", 0, 6), tk("t1", "a", "e1", "ERROR", 0, 6, 0)),
		},
		want: "WORKFLOW_LAUNCHED e1*, TASK_LAUNCHED t1*, TASK_FAILED t1, WORKFLOW_FAILED e1",
	},
	{
		name: "rerun observed",
		batches: [][]event.Observation{
			batch(ex("e1", "ERROR", 0, 2), tk("t1", "a", "e1", "ERROR", 0, 2, 0)),
			batch(tk("t1", "a", "e1", "RUNNING", 0, 5, 0)),
			batch(ex("e1", "ERROR", 0, 6), tk("t1", "a", "e1", "ERROR", 0, 6, 0)),
		},
		want: "WORKFLOW_LAUNCHED e1*, TASK_LAUNCHED t1*, TASK_FAILED t1, WORKFLOW_FAILED e1, WORKFLOW_RERUN e1*, TASK_RERUN t1, TASK_FAILED t1, WORKFLOW_FAILED e1",
	},
	{
		name: "rerun by another client that failed again between two polls",
		batches: [][]event.Observation{
			batch(ex("e1", "ERROR", 0, 2), tk("t1", "a", "e1", "ERROR", 0, 2, 0)),
			batch(ex("e1", "ERROR", 0, 6), rerunAt(tk("t1", "a", "e1", "ERROR", 0, 6, 0), 5)),
		},
		want: "WORKFLOW_LAUNCHED e1*, TASK_LAUNCHED t1*, TASK_FAILED t1, WORKFLOW_FAILED e1, WORKFLOW_RERUN e1*, TASK_RERUN t1*, TASK_FAILED t1, WORKFLOW_FAILED e1",
	},
	{
		name: "whole execution revealed by one poll comes out in causal order",
		batches: [][]event.Observation{batch(
			ex("e1", "SUCCESS", 0, 1),
			tk("t2", "b", "e1", "SUCCESS", 0, 1, 0),
			tk("t1", "a", "e1", "SUCCESS", 0, 0, 0),
		)},
		want: "WORKFLOW_LAUNCHED e1*, TASK_LAUNCHED t1*, TASK_SUCCEEDED t1, TASK_LAUNCHED t2*, TASK_SUCCEEDED t2, WORKFLOW_SUCCEEDED e1",
	},
	{
		name: "sub-workflow nests inside its parent task",
		batches: [][]event.Observation{batch(
			sub("e2", "SUCCESS", "t1", "e1", 1, 2),
			ex("e1", "SUCCESS", 0, 3),
			tk("t1", "call", "e1", "SUCCESS", 0, 3, 0),
			tk("t2", "inner", "e2", "SUCCESS", 1, 2, 0),
		)},
		want: "WORKFLOW_LAUNCHED e1*, TASK_LAUNCHED t1*, WORKFLOW_LAUNCHED e2*, TASK_LAUNCHED t2*, TASK_SUCCEEDED t2, WORKFLOW_SUCCEEDED e2, TASK_SUCCEEDED t1, WORKFLOW_SUCCEEDED e1",
	},
	{
		name:    "first seen delayed (wait-before) then done",
		batches: [][]event.Observation{batch(tk("t1", "a", "e1", "DELAYED", 0, 0, 0)), batch(tk("t1", "a", "e1", "SUCCESS", 0, 1, 0))},
		want:    "TASK_LAUNCHED t1*, TASK_LAUNCHED t1*, TASK_SUCCEEDED t1",
	},
	{
		name:    "retry delay then final failure",
		batches: [][]event.Observation{batch(tk("t1", "a", "e1", "DELAYED", 0, 0, 2)), batch(tk("t1", "a", "e1", "ERROR", 0, 1, 2))},
		want:    "TASK_LAUNCHED t1*, TASK_FAILED t1*, TASK_LAUNCHED t1*, TASK_FAILED t1*, TASK_LAUNCHED t1*, TASK_FAILED t1",
	},
	{
		name:    "wait-before first seen done",
		batches: [][]event.Observation{batch(tkp("t1", "SUCCESS", 2, true, false))},
		want:    "TASK_LAUNCHED t1*, TASK_LAUNCHED t1*, TASK_SUCCEEDED t1",
	},
	{
		name:    "wait-before delay missed between polls",
		batches: [][]event.Observation{batch(tkp("t1", "RUNNING", 0, false, false)), batch(tkp("t1", "SUCCESS", 2, true, false))},
		want:    "TASK_LAUNCHED t1, TASK_LAUNCHED t1*, TASK_SUCCEEDED t1",
	},
	{
		name:    "wait-before delay seen",
		batches: [][]event.Observation{batch(tkp("t1", "RUNNING", 0, false, false)), batch(tkp("t1", "DELAYED", 0, true, false)), batch(tkp("t1", "RUNNING", 2, true, false)), batch(tkp("t1", "SUCCESS", 3, true, false))},
		want:    "TASK_LAUNCHED t1, TASK_LAUNCHED t1, TASK_SUCCEEDED t1",
	},
	{
		name:    "wait-after completes twice",
		batches: [][]event.Observation{batch(tkp("t1", "RUNNING", 0, false, false)), batch(tkp("t1", "SUCCESS", 1, false, false)), batch(tkp("t1", "DELAYED", 1, false, true)), batch(tkp("t1", "SUCCESS", 3, false, true))},
		want:    "TASK_LAUNCHED t1, TASK_SUCCEEDED t1, TASK_SUCCEEDED t1",
	},
	{
		name:    "wait-after first completion unseen",
		batches: [][]event.Observation{batch(tkp("t1", "RUNNING", 0, false, false)), batch(tkp("t1", "DELAYED", 1, false, true)), batch(tkp("t1", "SUCCESS", 3, false, true))},
		want:    "TASK_LAUNCHED t1, TASK_SUCCEEDED t1*, TASK_SUCCEEDED t1",
	},
	{
		name:    "wait-after all unseen",
		batches: [][]event.Observation{batch(tkp("t1", "SUCCESS", 3, false, true))},
		want:    "TASK_LAUNCHED t1*, TASK_SUCCEEDED t1*, TASK_SUCCEEDED t1",
	},
	{
		name:    "wait-after first seen delayed",
		batches: [][]event.Observation{batch(tkp("t1", "DELAYED", 1, false, true)), batch(tkp("t1", "SUCCESS", 3, false, true))},
		want:    "TASK_LAUNCHED t1*, TASK_SUCCEEDED t1*, TASK_SUCCEEDED t1",
	},
	{
		name:    "wait-after policy appears on a known success",
		batches: [][]event.Observation{batch(tkp("t1", "SUCCESS", 1, false, false)), batch(tkp("t1", "SUCCESS", 3, false, true))},
		want:    "TASK_LAUNCHED t1*, TASK_SUCCEEDED t1, TASK_SUCCEEDED t1",
	},
	{
		name: "a join first seen done started with TASK_RESUMED",
		batches: [][]event.Observation{batch(withRC(tk("t1", "c", "e1", "SUCCESS", 0, 2, 0),
			`{"triggered_by": [{"task_id": "a", "event": "on-success"}, {"task_id": "b", "event": "on-success"}]}`))},
		want: "TASK_RESUMED t1*, TASK_SUCCEEDED t1",
	},
	{
		name: "a task triggered once first seen done started with TASK_LAUNCHED",
		batches: [][]event.Observation{batch(withRC(tk("t1", "c", "e1", "SUCCESS", 0, 2, 0),
			`{"triggered_by": [{"task_id": "a", "event": "on-success"}]}`))},
		want: "TASK_LAUNCHED t1*, TASK_SUCCEEDED t1",
	},
	{
		name:    "history before the horizon is ignored",
		batches: [][]event.Observation{batch(ex("old", "SUCCESS", -3600, -3590))},
		want:    "",
	},
	{
		name: "a stale sighting in the same second as a newer one is ignored",
		batches: [][]event.Observation{batch(tk("t1", "a", "e1", "RUNNING", 0, 0, 0)),
			batch(at(tk("t1", "a", "e1", "SUCCESS", 0, 0, 0), time.Millisecond)),
			batch(tk("t1", "a", "e1", "RUNNING", 0, 0, 0))}, // a list requested before the SUCCESS was seen
		want: "TASK_LAUNCHED t1, TASK_SUCCEEDED t1",
	},
	{
		name: "pause and resume within one second, then a stale read of the pause",
		batches: [][]event.Observation{batch(ex("e1", "RUNNING", 0, 0)),
			batch(at(ex("e1", "PAUSED", 0, 1), time.Millisecond)),
			batch(at(ex("e1", "RUNNING", 0, 1), 2*time.Millisecond)),
			batch(at(ex("e1", "PAUSED", 0, 1), time.Millisecond))},
		want: "WORKFLOW_LAUNCHED e1, WORKFLOW_PAUSED e1, WORKFLOW_RESUMED e1",
	},
	{
		name:    "wait-before appears on a waiting join: resumed, delayed, launched",
		batches: [][]event.Observation{batch(tk("t1", "a", "e1", "WAITING", 0, 0, 0)), batch(tkp("t1", "SUCCESS", 2, true, false))},
		want:    "TASK_RESUMED t1*, TASK_LAUNCHED t1*, TASK_SUCCEEDED t1",
	},
	{
		name:    "retry after a wait-before delay runs first",
		batches: [][]event.Observation{batch(tk("t1", "a", "e1", "DELAYED", 0, 0, 0)), batch(tk("t1", "a", "e1", "ERROR", 0, 2, 1))},
		want:    "TASK_LAUNCHED t1*, TASK_LAUNCHED t1*, TASK_FAILED t1*, TASK_LAUNCHED t1*, TASK_FAILED t1",
	},
	{
		name:    "wait-after appears after a wait-before delay: launched, completes twice",
		batches: [][]event.Observation{batch(tkp("t1", "DELAYED", 0, true, false)), batch(tkp("t1", "SUCCESS", 2, true, true))},
		want:    "TASK_LAUNCHED t1*, TASK_LAUNCHED t1*, TASK_SUCCEEDED t1*, TASK_SUCCEEDED t1",
	},
	{
		name:    "never-updated entity uses created_at",
		batches: [][]event.Observation{batch(ex("e1", "RUNNING", 0, -1)), batch(ex("e1", "RUNNING", 0, 0))},
		want:    "WORKFLOW_LAUNCHED e1",
	},
}

func TestTrackerDerivation(t *testing.T) {
	for _, tt := range derivationCases {
		t.Run(tt.name, func(t *testing.T) {
			s := &sink{}
			tr := newTracker(t, s)
			feed(t, tr, tt.batches...)
			if got := names(s.got()); got != tt.want {
				t.Errorf("events:\n got  %s\n want %s", got, tt.want)
			}
			ids := map[string]bool{}
			for _, e := range s.got() {
				if ids[e.ID] {
					t.Errorf("duplicate event id %s for %s %s", e.ID, e.Type, e.EntityID())
				}
				ids[e.ID] = true
			}
		})
	}
}

func TestTrackerSequenceAndIDs(t *testing.T) {
	s := &sink{}
	tr := newTracker(t, s)
	feed(t, tr,
		batch(ex("e1", "RUNNING", 0, 0)),
		batch(tk("t1", "a", "e1", "SUCCESS", 0, 1, 0), sub("e2", "RUNNING", "t9", "e1", 1, 1)),
		batch(ex("e3", "RUNNING", 2, 2)),
	)
	evs := s.got()
	seq := map[string]uint64{}
	ids := map[string]bool{}
	for _, e := range evs {
		if e.Sequence != seq[e.RootExecutionID]+1 {
			t.Errorf("%s %s: sequence %d after %d", e.Type, e.EntityID(), e.Sequence, seq[e.RootExecutionID])
		}
		seq[e.RootExecutionID] = e.Sequence
		if ids[e.ID] || !strings.HasPrefix(e.ID, "evt_") {
			t.Errorf("bad or duplicate id %q", e.ID)
		}
		ids[e.ID] = true
	}
	if seq["e1"] != 4 || seq["e3"] != 1 {
		t.Errorf("sequences per root = %v, want e1:4 e3:1", seq)
	}

	// The same transitions derived by a fresh tracker (e.g. another replica,
	// or after losing state) get the same ids.
	s2 := &sink{}
	feed(t, newTracker(t, s2), batch(ex("e1", "RUNNING", 0, 0)))
	if s2.got()[0].ID != evs[0].ID {
		t.Errorf("ids are not deterministic: %s vs %s", s2.got()[0].ID, evs[0].ID)
	}
}

func TestTrackerRestartFromStates(t *testing.T) {
	s := &sink{}
	tr := newTracker(t, s)
	feed(t, tr, batch(ex("e1", "RUNNING", 0, 0), tk("t1", "a", "e1", "RUNNING", 0, 0, 0)))

	// A new tracker seeded with what the sink recorded continues where the
	// first stopped: no repeats, sequence continues.
	s2 := &sink{}
	tr2 := newTracker(t, s2, s.states...)
	feed(t, tr2,
		batch(ex("e1", "RUNNING", 0, 0), tk("t1", "a", "e1", "RUNNING", 0, 0, 0)),
		batch(tk("t1", "a", "e1", "SUCCESS", 0, 4, 0), ex("e1", "SUCCESS", 0, 4)),
	)
	evs := s2.got()
	if got := names(evs); got != "TASK_SUCCEEDED t1, WORKFLOW_SUCCEEDED e1" {
		t.Fatalf("after restart: %s", got)
	}
	if evs[0].Sequence != 3 || evs[1].Sequence != 4 {
		t.Errorf("sequence after restart = %d, %d; want 3, 4", evs[0].Sequence, evs[1].Sequence)
	}
}

// TestTrackerRestartAnywhere restarts the tracker between any two batches
// of every derivation case, seeded with the states its Sink recorded (the
// newest row per entity, as the stores upsert them), as a restart or a new
// leader does: the events must be exactly those of an uninterrupted run,
// same ids, same sequence numbers. What decides whether an observation is
// newer (the request time breaking same-second ties, the policies a task
// went through, its started_at) must therefore survive in EntityState.
func TestTrackerRestartAnywhere(t *testing.T) {
	for _, tt := range derivationCases {
		whole := &sink{}
		feed(t, newTracker(t, whole), tt.batches...)
		want := describe(whole.got())
		for k := 1; k < len(tt.batches); k++ {
			t.Run(fmt.Sprintf("%s/after %d", tt.name, k), func(t *testing.T) {
				before := &sink{}
				feed(t, newTracker(t, before), tt.batches[:k]...)
				after := &sink{}
				feed(t, newTracker(t, after, newest(before.states)...), tt.batches[k:]...)
				if got := describe(append(before.got(), after.got()...)); got != want {
					t.Errorf("with a restart after batch %d:\n got  %s\n want %s", k, got, want)
				}
			})
		}
	}
}

// newest keeps the last recorded state of each entity, in first-seen order.
func newest(states []event.EntityState) []event.EntityState {
	at := map[string]int{}
	var out []event.EntityState
	for _, st := range states {
		if i, ok := at[st.ID]; ok {
			out[i] = st
			continue
		}
		at[st.ID] = len(out)
		out = append(out, st)
	}
	return out
}

// describe renders events with their ids and sequence numbers.
func describe(evs []event.Event) string {
	var b []string
	for _, e := range evs {
		b = append(b, fmt.Sprintf("%s %s inferred=%t seq=%d %s", e.Type, e.EntityID(), e.Inferred, e.Sequence, e.ID))
	}
	return strings.Join(b, "\n      ")
}

func TestTrackerRunRetriesSinkAndDrains(t *testing.T) {
	s := &sink{fail: 2}
	tr := newTracker(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()

	if err := tr.ObserveSync(context.Background(), batch(ex("e1", "RUNNING", 0, 0))); err != nil {
		t.Fatal(err)
	}
	if n := len(s.got()); n != 1 {
		t.Fatalf("after sink recovered: %d events, want 1", n)
	}
	tr.Observe(ex("e1", "SUCCESS", 0, 1))
	cancel() // the queued observation must still be processed
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := names(s.got()); got != "WORKFLOW_LAUNCHED e1, WORKFLOW_SUCCEEDED e1" {
		t.Errorf("got %s", got)
	}
	if st := tr.Stats(); st.SinkErrors != 2 || st.Events != 2 {
		t.Errorf("stats = %+v", st)
	}
}

type fetcher struct{ obs []event.Observation }

func (f fetcher) Fetch(context.Context, string, bool) ([]event.Observation, error) { return f.obs, nil }

func TestTrackerCompletesTappedEnd(t *testing.T) {
	s := &sink{}
	tr, _ := New(Options{Sink: s, Horizon: base.Add(-time.Minute), Fetcher: fetcher{obs: batch(tk("t1", "a", "e1", "SUCCESS", 0, 1, 0))}})
	feed(t, tr, batch(tap(ex("e1", "RUNNING", 0, 0))), batch(tap(ex("e1", "SUCCESS", 0, 2))))
	if got := names(s.got()); got != "WORKFLOW_LAUNCHED e1, TASK_LAUNCHED t1*, TASK_SUCCEEDED t1, WORKFLOW_SUCCEEDED e1" {
		t.Errorf("got %s", got)
	}
}

func TestTrackerForget(t *testing.T) {
	s := &sink{}
	now := base.Add(10 * time.Second)
	tr, _ := New(Options{Sink: s, Horizon: base.Add(-time.Minute), Retention: time.Minute, Now: func() time.Time { return now }})
	feed(t, tr, batch(ex("e1", "SUCCESS", 0, 1), ex("e2", "RUNNING", 0, 1)))
	now = base.Add(time.Hour)
	tr.forget()
	if st := tr.Stats(); st.Tracked != 1 {
		t.Fatalf("tracked after forget = %d, want 1 (the running one)", st.Tracked)
	}
	// Seeing the forgotten one again (a client listing old executions) fires nothing.
	feed(t, tr, batch(tap(ex("e1", "SUCCESS", 0, 1))))
	if n := len(s.got()); n != 3 {
		t.Errorf("events = %d (%s), want 3", n, names(s.got()))
	}
}

func BenchmarkTrackerDerive(b *testing.B) {
	s := &sink{}
	tr, _ := New(Options{Sink: s, Horizon: base.Add(-time.Minute)})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprintf("e%d", i)
		_ = tr.process(context.Background(), batch(ex(id, "RUNNING", 0, 0)))
		_ = tr.process(context.Background(), batch(ex(id, "SUCCESS", 0, 1)))
		if len(s.events) > 10000 {
			s.events, s.states = nil, nil
		}
	}
}

// engineNow is a Fetcher that answers with the engine's current state of
// executions and their tasks, and counts its calls.
type engineNow struct {
	execs map[string]event.Observation
	tasks map[string][]event.Observation
	calls []string
}

func (e *engineNow) Fetch(_ context.Context, id string, tasks bool) ([]event.Observation, error) {
	e.calls = append(e.calls, fmt.Sprintf("%s tasks=%t", id, tasks))
	x, ok := e.execs[id]
	if !ok {
		return nil, errors.New("404")
	}
	out := []event.Observation{tap(x)}
	if tasks {
		for _, k := range e.tasks[id] {
			out = append(out, tap(k))
		}
	}
	return out, nil
}

// TestTrackerCompletesOutOfOrderSightings: what the tracker fetches so that
// events come out in causal order when observations arrive late, as they do
// from other replicas through the shared queue.
func TestTrackerCompletesOutOfOrderSightings(t *testing.T) {
	tests := []struct {
		name    string
		engine  engineNow
		batches [][]event.Observation
		want    string
		calls   string
	}{
		{
			// A poll listed executions before e1 existed and its tasks
			// after; the tapped creation has not arrived yet.
			name:    "a polled task of an unseen execution fetches the execution",
			engine:  engineNow{execs: map[string]event.Observation{"e1": ex("e1", "RUNNING", 0, 0)}},
			batches: [][]event.Observation{batch(tk("t1", "a", "e1", "RUNNING", 0, 0, 0)), batch(tap(ex("e1", "RUNNING", 0, 0)))},
			want:    "WORKFLOW_LAUNCHED e1, TASK_LAUNCHED t1",
			calls:   "e1 tasks=false",
		},
		{
			name: "an unseen execution that has ended since is fetched with its tasks",
			engine: engineNow{execs: map[string]event.Observation{"e1": ex("e1", "SUCCESS", 0, 2)},
				tasks: map[string][]event.Observation{"e1": {tk("t1", "a", "e1", "SUCCESS", 0, 1, 0), tk("t2", "b", "e1", "SUCCESS", 1, 2, 0)}}},
			batches: [][]event.Observation{batch(tk("t1", "a", "e1", "RUNNING", 0, 0, 0))},
			want:    "WORKFLOW_LAUNCHED e1*, TASK_LAUNCHED t1*, TASK_SUCCEEDED t1, TASK_LAUNCHED t2*, TASK_SUCCEEDED t2, WORKFLOW_SUCCEEDED e1",
			calls:   "e1 tasks=false, e1 tasks=true",
		},
		{
			// The tapped rerun reached the tracker after the rerun had
			// already succeeded: the execution's end must follow the task's.
			name: "a tapped rerun whose execution ended before the fetch",
			engine: engineNow{execs: map[string]event.Observation{"e1": ex("e1", "SUCCESS", 0, 6)},
				tasks: map[string][]event.Observation{"e1": {rerunAt(tk("t1", "a", "e1", "SUCCESS", 0, 6, 0), 5)}}},
			batches: [][]event.Observation{
				batch(ex("e1", "ERROR", 0, 2), tk("t1", "a", "e1", "ERROR", 0, 2, 0)),
				batch(tap(rerunAt(tk("t1", "a", "e1", "RUNNING", 0, 5, 0), 5))),
			},
			want:  "WORKFLOW_LAUNCHED e1*, TASK_LAUNCHED t1*, TASK_FAILED t1, WORKFLOW_FAILED e1, WORKFLOW_RERUN e1*, TASK_RERUN t1*, TASK_SUCCEEDED t1, WORKFLOW_SUCCEEDED e1",
			calls: "e1 tasks=false, e1 tasks=true",
		},
		{
			// The poll listed executions while e2 ran, and tasks after e2
			// and its parent task had both succeeded.
			name: "a finished task next to its sub-execution read running fetches the sub-execution",
			engine: engineNow{execs: map[string]event.Observation{"e2": sub("e2", "SUCCESS", "t1", "e1", 1, 2)},
				tasks: map[string][]event.Observation{"e2": {tk("t2", "inner", "e2", "SUCCESS", 1, 2, 0)}}},
			batches: [][]event.Observation{batch(ex("e1", "RUNNING", 0, 0)),
				batch(sub("e2", "RUNNING", "t1", "e1", 1, 1), tk("t1", "call", "e1", "SUCCESS", 0, 2, 0))},
			want:  "WORKFLOW_LAUNCHED e1, TASK_LAUNCHED t1*, WORKFLOW_LAUNCHED e2*, TASK_LAUNCHED t2*, TASK_SUCCEEDED t2, WORKFLOW_SUCCEEDED e2, TASK_SUCCEEDED t1",
			calls: "e2 tasks=true",
		},
		{
			// Replicas: the replica that tapped the failure forwarded the
			// tasks it fetched at once; by the time the leader consumes
			// them the client has rerun the task, which a fetch now would
			// show in the same second, hiding the failure.
			name: "a tapped end forwarded with its tasks is not fetched again",
			engine: engineNow{execs: map[string]event.Observation{"e1": ex("e1", "RUNNING", 0, 2)},
				tasks: map[string][]event.Observation{"e1": {tk("t1", "a", "e1", "RUNNING", 0, 2, 0)}}},
			batches: [][]event.Observation{batch(tasksFetched(tap(ex("e1", "ERROR", 0, 2))), tap(tk("t1", "a", "e1", "ERROR", 0, 2, 0)))},
			want:    "WORKFLOW_LAUNCHED e1*, TASK_LAUNCHED t1*, TASK_FAILED t1, WORKFLOW_FAILED e1",
		},
		{
			name:    "a task of a known execution fetches nothing",
			engine:  engineNow{},
			batches: [][]event.Observation{batch(ex("e1", "RUNNING", 0, 0)), batch(tk("t1", "a", "e1", "RUNNING", 0, 1, 0))},
			want:    "WORKFLOW_LAUNCHED e1, TASK_LAUNCHED t1",
		},
		{
			name:    "history fetches nothing",
			engine:  engineNow{},
			batches: [][]event.Observation{batch(tk("t1", "a", "old", "SUCCESS", -3600, -3590, 0))},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &sink{}
			tr, err := New(Options{Sink: s, Fetcher: &tt.engine, Horizon: base.Add(-time.Minute), Now: func() time.Time { return base.Add(time.Hour) }})
			if err != nil {
				t.Fatal(err)
			}
			feed(t, tr, tt.batches...)
			if got := names(s.got()); got != tt.want {
				t.Errorf("events:\n got  %s\n want %s", got, tt.want)
			}
			if got := strings.Join(tt.engine.calls, ", "); got != tt.calls {
				t.Errorf("fetches: got %q, want %q", got, tt.calls)
			}
		})
	}
}

// TestTrackerBatchReads: what derive keeps of a batch's reads before it
// derives anything. A read without an id or a state is skipped (counted as
// an observation, not as an unknown state, and not logged), and of several
// reads of one entity in a batch the newest wins wherever it stands; in the
// same second, a read with another state requested later is the newer.
func TestTrackerBatchReads(t *testing.T) {
	tests := []struct {
		name    string
		batches [][]event.Observation
		want    string
		obs     uint64 // Stats.Observations
	}{
		{
			name:    "a read of no entity is skipped",
			batches: [][]event.Observation{batch(event.Observation{Source: event.SourceWatch}, ex("e1", "RUNNING", 0, 0))},
			want:    "WORKFLOW_LAUNCHED e1",
			obs:     2,
		},
		{
			name:    "a read without a state is skipped",
			batches: [][]event.Observation{batch(ex("e1", "", 0, 0)), batch(ex("e1", "RUNNING", 0, 1))},
			want:    "WORKFLOW_LAUNCHED e1",
			obs:     2,
		},
		{
			name:    "a read without an id is skipped",
			batches: [][]event.Observation{batch(tk("", "a", "e1", "RUNNING", 0, 0, 0))},
			want:    "",
			obs:     1,
		},
		{
			name:    "a state-less read of a known entity keeps nothing of it",
			batches: [][]event.Observation{batch(ex("e1", "RUNNING", 0, 0)), batch(ex("e1", "", 0, 5)), batch(ex("e1", "SUCCESS", 0, 3))},
			want:    "WORKFLOW_LAUNCHED e1, WORKFLOW_SUCCEEDED e1",
			obs:     3,
		},
		{
			name:    "an older read after a newer one in the batch loses",
			batches: [][]event.Observation{batch(ex("e1", "SUCCESS", 0, 5), ex("e1", "RUNNING", 0, 1))},
			want:    "WORKFLOW_LAUNCHED e1*, WORKFLOW_SUCCEEDED e1",
			obs:     2,
		},
		{
			name:    "a newer read after an older one in the batch wins",
			batches: [][]event.Observation{batch(ex("e1", "RUNNING", 0, 1), ex("e1", "SUCCESS", 0, 5))},
			want:    "WORKFLOW_LAUNCHED e1*, WORKFLOW_SUCCEEDED e1",
			obs:     2,
		},
		{
			name:    "same second: the later request wins when it comes first",
			batches: [][]event.Observation{batch(at(ex("e1", "PAUSED", 0, 1), 2*time.Millisecond), at(ex("e1", "RUNNING", 0, 1), time.Millisecond))},
			want:    "WORKFLOW_LAUNCHED e1*, WORKFLOW_PAUSED e1",
			obs:     2,
		},
		{
			name:    "same second: the later request wins when it comes last",
			batches: [][]event.Observation{batch(at(ex("e1", "RUNNING", 0, 1), time.Millisecond), at(ex("e1", "PAUSED", 0, 1), 2*time.Millisecond))},
			want:    "WORKFLOW_LAUNCHED e1*, WORKFLOW_PAUSED e1",
			obs:     2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &sink{}
			var log bytes.Buffer
			tr := newLoggedTracker(t, s, &log)
			feed(t, tr, tt.batches...)
			if got := names(s.got()); got != tt.want {
				t.Errorf("events:\n got  %s\n want %s", got, tt.want)
			}
			if st := tr.Stats(); st.Observations != tt.obs || st.UnknownStates != 0 {
				t.Errorf("stats %+v, want %d observations and no unknown states", st, tt.obs)
			}
			if log.Len() != 0 {
				t.Errorf("skipped reads must not be logged:\n%s", log.String())
			}
		})
	}
}
