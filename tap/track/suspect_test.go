package track

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// far is a second count that puts a timestamp a year past the tracker's
// clock (base + 1h in newTracker).
const far = 366 * 24 * 3600

func newLoggedTracker(t *testing.T, s *sink, log *bytes.Buffer, states ...event.EntityState) *Tracker {
	t.Helper()
	tr, err := New(Options{Sink: s, States: states, Horizon: base.Add(-time.Minute),
		Now: func() time.Time { return base.Add(time.Hour) }, Logger: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// An updated_at far in the future must not pin the entity: the real updates
// after it still produce their events.
func TestFutureTimestampDoesNotPin(t *testing.T) {
	tests := []struct {
		name    string
		states  []event.EntityState
		batches [][]event.Observation
		want    string
	}{
		{
			name:    "known entity, one bad row in between",
			batches: [][]event.Observation{batch(ex("e1", "RUNNING", 0, 0)), batch(ex("e1", "PAUSED", 0, far)), batch(ex("e1", "RUNNING", 0, 5)), batch(ex("e1", "SUCCESS", 0, 6))},
			want:    "WORKFLOW_LAUNCHED e1, WORKFLOW_PAUSED e1, WORKFLOW_RESUMED e1, WORKFLOW_SUCCEEDED e1",
		},
		{
			name:    "first sighting in the future",
			batches: [][]event.Observation{batch(ex("e1", "RUNNING", 0, far)), batch(ex("e1", "SUCCESS", 0, 10))},
			want:    "WORKFLOW_LAUNCHED e1, WORKFLOW_SUCCEEDED e1",
		},
		{
			name:    "the bad row read again changes nothing",
			batches: [][]event.Observation{batch(ex("e1", "RUNNING", 0, far)), batch(ex("e1", "RUNNING", 0, far)), batch(ex("e1", "ERROR", 0, 10))},
			want:    "WORKFLOW_LAUNCHED e1, WORKFLOW_FAILED e1",
		},
		{
			name:    "a task",
			batches: [][]event.Observation{batch(tk("t1", "a", "e1", "RUNNING", 0, far, 0)), batch(tk("t1", "a", "e1", "SUCCESS", 0, 3, 0))},
			want:    "TASK_LAUNCHED t1, TASK_SUCCEEDED t1",
		},
		{
			name:    "a state pinned before the fix, loaded at start",
			states:  []event.EntityState{{Kind: event.KindExecution, ID: "e1", RootID: "e1", State: "RUNNING", UpdatedAt: ts(far), LastSeq: 1}},
			batches: [][]event.Observation{batch(ex("e1", "SUCCESS", 0, 10))},
			want:    "WORKFLOW_SUCCEEDED e1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &sink{}
			var log bytes.Buffer
			tr := newLoggedTracker(t, s, &log, tt.states...)
			feed(t, tr, tt.batches...)
			if got := names(s.got()); got != tt.want {
				t.Errorf("events:\n got %s\nwant %s", got, tt.want)
			}
			if n := tr.Stats().FutureTimestamps; n == 0 {
				t.Error("Stats().FutureTimestamps = 0, want the bad timestamps counted")
			}
			if n := strings.Count(log.String(), "far ahead of the local clock"); n != 1 {
				t.Errorf("logged %d times, want once:\n%s", n, log.String())
			}
			for _, st := range s.states {
				if st.UpdatedAt == ts(far) {
					t.Errorf("state %+v persisted with the untrusted timestamp", st)
				}
			}
		})
	}
}

// A timestamp within the allowed skew is an ordinary timestamp.
func TestSmallSkewIsTrusted(t *testing.T) {
	s := &sink{}
	var log bytes.Buffer
	tr := newLoggedTracker(t, s, &log)
	ahead := 3600 + 4*60 // 4 minutes past the tracker's clock
	feed(t, tr, batch(ex("e1", "RUNNING", 0, ahead)), batch(ex("e1", "SUCCESS", 0, 10)))
	if got, want := names(s.got()), "WORKFLOW_LAUNCHED e1"; got != want {
		t.Errorf("events %s, want %s (an older update after a trusted newer one is stale)", got, want)
	}
	if n := tr.Stats().FutureTimestamps; n != 0 {
		t.Errorf("FutureTimestamps = %d, want 0", n)
	}
}

// A state Mistral does not have yields nothing (not even an inferred
// launch), is counted, and is logged once per value.
func TestUnknownStateYieldsNothing(t *testing.T) {
	s := &sink{}
	var log bytes.Buffer
	tr := newLoggedTracker(t, s, &log)
	feed(t, tr,
		batch(ex("e1", "BOGUS_STATE", 0, 1)),
		batch(ex("e2", "success", 0, 1)),
		batch(ex("e3", "BOGUS_STATE", 0, 2), tk("t1", "a", "e4", "running", 0, 2, 0)),
		batch(ex("e5", "RUNNING", 0, 3)),
		batch(ex("e5", "BOGUS_STATE", 0, 4)),
		batch(ex("e5", "SUCCESS", 0, 5)),
	)
	if got, want := names(s.got()), "WORKFLOW_LAUNCHED e5, WORKFLOW_SUCCEEDED e5"; got != want {
		t.Errorf("events:\n got %s\nwant %s", got, want)
	}
	if n := tr.Stats().UnknownStates; n != 5 {
		t.Errorf("UnknownStates = %d, want 5", n)
	}
	for _, st := range []string{"BOGUS_STATE", "success", "running"} {
		if n := strings.Count(log.String(), "state="+st+" "); n != 1 {
			t.Errorf("state %s logged %d times, want once:\n%s", st, n, log.String())
		}
	}
}

// The log of unknown states is bounded whatever the engine returns.
func TestUnknownStatesLogBounded(t *testing.T) {
	s := &sink{}
	var log bytes.Buffer
	tr := newLoggedTracker(t, s, &log)
	for i := range 3 * maxUnknownStatesLogged {
		feed(t, tr, batch(ex("e1", "X"+strings.Repeat("Y", i), 0, 1)))
	}
	if n := strings.Count(log.String(), "\n"); n != maxUnknownStatesLogged+1 {
		t.Errorf("%d log lines, want %d", n, maxUnknownStatesLogged+1)
	}
	if len(tr.notes.unknown) > maxUnknownStatesLogged+1 {
		t.Errorf("remembers %d state values", len(tr.notes.unknown))
	}
}
