package ha_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/mistral-tap/mistral-tap/notifier/ha"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// engine is a Completer: what the engine shows now, and how often it was
// asked.
type engine struct {
	mu    sync.Mutex
	asked []string
	fail  bool
	show  map[string][]event.Observation
}

func (e *engine) Fetch(_ context.Context, id string, tasks bool) ([]event.Observation, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.asked = append(e.asked, id)
	if e.fail || !tasks {
		return nil, errors.New("engine down")
	}
	return e.show[id], nil
}

func execObs(id, state, updated string) event.Observation {
	u := updated
	return event.Observation{Source: event.SourceTap, Execution: &event.Execution{ID: id, State: state, UpdatedAt: &u}}
}

func taskObs(id, exec, state string) event.Observation {
	return event.Observation{Source: event.SourceTap, Task: &event.Task{ID: id, WorkflowExecutionID: exec, State: state}}
}

// describe is "id:state[+]" per observation, + for TasksFetched.
func describe(b []event.Observation) []string {
	var out []string
	for _, o := range b {
		s := ""
		switch {
		case o.Execution != nil:
			s = o.Execution.ID + ":" + o.Execution.State
		case o.Task != nil:
			s = o.Task.ID + ":" + o.Task.State
		}
		if o.TasksFetched {
			s += "+"
		}
		out = append(out, s)
	}
	return out
}

// TestForwarderCompletesATappedEnd: the replica that taps an execution's
// end forwards it with the tasks the engine shows at that moment, marked so
// that the leader does not fetch them again (by then a client may have
// rerun a task). Lists, running executions and watcher sightings are
// forwarded as they are; a failed fetch forwards the sighting alone; the
// same end tapped twice is fetched once.
func TestForwarderCompletesATappedEnd(t *testing.T) {
	const t1 = "2026-12-02 10:00:01"
	eng := &engine{show: map[string][]event.Observation{
		"x": {execObs("x", event.StateRunning, t1), taskObs("k", "x", event.StateError), execObs("sub", event.StateError, t1), taskObs("k2", "sub", event.StateError)},
	}}
	watched := execObs("w", event.StateSuccess, t1)
	watched.Source = event.SourceWatch
	cases := []struct {
		name  string
		batch []event.Observation
		fail  bool
		want  []string
		asked []string
	}{
		{"tapped end", []event.Observation{execObs("x", event.StateError, t1)}, false,
			[]string{"x:ERROR+", "k:ERROR", "sub:ERROR+", "k2:ERROR"}, []string{"x"}},
		{"same end tapped twice", []event.Observation{execObs("x", event.StateError, t1)}, false,
			[]string{"x:ERROR+", "k:ERROR", "sub:ERROR+", "k2:ERROR"}, []string{"x"}},
		{"running", []event.Observation{execObs("y", event.StateRunning, t1)}, false, []string{"y:RUNNING"}, nil},
		{"a list", []event.Observation{execObs("a", event.StateSuccess, t1), execObs("b", event.StateError, t1)}, false,
			[]string{"a:SUCCESS", "b:ERROR"}, nil},
		{"watcher", []event.Observation{watched}, false, []string{"w:SUCCESS"}, nil},
		{"engine down", []event.Observation{execObs("z", event.StateError, t1)}, true, []string{"z:ERROR"}, []string{"z"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eng.mu.Lock()
			eng.asked, eng.fail = nil, tc.fail
			eng.mu.Unlock()
			app := &blockingAppender{}
			f := ha.NewForwarder(ha.ForwarderOptions{Store: app, Replica: "r", Completer: eng})
			n := 1
			if tc.name == "same end tapped twice" {
				n = 2
			}
			for range n {
				f.ObserveAll(tc.batch)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			f.Run(ctx) // flushes what is queued, then returns
			if len(app.got) != n {
				t.Fatalf("appended %d batches, want %d", len(app.got), n)
			}
			for _, b := range app.got {
				if got := describe(b); !slices.Equal(got, tc.want) {
					t.Errorf("forwarded %v, want %v", got, tc.want)
				}
			}
			if !slices.Equal(eng.asked, tc.asked) {
				t.Errorf("engine asked for %v, want %v", eng.asked, tc.asked)
			}
			if tc.batch[0].TasksFetched {
				t.Error("the tap's own observation was modified")
			}
		})
	}
}
