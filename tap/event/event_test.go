package event

import "testing"

// TestFor checks every (from, to) pair against Mistral's
// notification_events.py map, including the pairs that yield no event.
func TestFor(t *testing.T) {
	states := []string{"", StateIdle, StateWaiting, StateRunning, StateDelayed, StatePaused, StateSuccess, StateCancelled, StateError, StateSkipped}
	want := func(k Kind, from, to string) Type {
		if from == to {
			return ""
		}
		wf := k == KindExecution
		switch to {
		case StateRunning:
			switch {
			case from == StatePaused && wf:
				return WorkflowResumed
			case from == StateError && wf:
				return WorkflowRerun
			case wf:
				return WorkflowLaunched
			case from == StateIdle || from == StatePaused || from == StateWaiting:
				return TaskResumed
			case from == StateError:
				return TaskRerun
			default:
				return TaskLaunched
			}
		case StateSuccess:
			return map[bool]Type{true: WorkflowSucceeded, false: TaskSucceeded}[wf]
		case StateError:
			return map[bool]Type{true: WorkflowFailed, false: TaskFailed}[wf]
		case StateCancelled:
			return map[bool]Type{true: WorkflowCancelled, false: TaskCancelled}[wf]
		case StatePaused:
			return map[bool]Type{true: WorkflowPaused, false: TaskPaused}[wf]
		case StateSkipped:
			if wf {
				return ""
			}
			return TaskSkipped
		}
		return "" // IDLE, WAITING, DELAYED targets: Mistral sends event null
	}
	n := 0
	for _, k := range []Kind{KindExecution, KindTask} {
		for _, from := range states {
			for _, to := range states {
				if to == "" {
					continue
				}
				got, ok := For(k, from, to)
				w := want(k, from, to)
				if got != w || ok != (w != "") {
					t.Errorf("For(%s, %q, %q) = %q, %v; want %q", k, from, to, got, ok, w)
				}
				if ok && got.Kind() != k {
					t.Errorf("For(%s, %q, %q) = %q of kind %s", k, from, to, got, got.Kind())
				}
				n++
			}
		}
	}
	if n != 180 {
		t.Fatalf("checked %d pairs, want 180", n)
	}
}

func TestTypeClasses(t *testing.T) {
	tests := []struct {
		t               Type
		kind            Kind
		terminal, start bool
	}{
		{WorkflowLaunched, KindExecution, false, true},
		{WorkflowSucceeded, KindExecution, true, false},
		{WorkflowFailed, KindExecution, true, false},
		{WorkflowCancelled, KindExecution, true, false},
		{WorkflowPaused, KindExecution, false, false},
		{WorkflowResumed, KindExecution, false, true},
		{WorkflowRerun, KindExecution, false, true},
		{TaskLaunched, KindTask, false, true},
		{TaskSucceeded, KindTask, true, false},
		{TaskFailed, KindTask, true, false},
		{TaskCancelled, KindTask, true, false},
		{TaskPaused, KindTask, false, false},
		{TaskResumed, KindTask, false, true},
		{TaskRerun, KindTask, false, true},
		{TaskSkipped, KindTask, true, false},
	}
	if len(tests) != len(Types) {
		t.Fatalf("table has %d types, Types has %d", len(tests), len(Types))
	}
	for _, tt := range tests {
		if tt.t.Kind() != tt.kind || tt.t.Terminal() != tt.terminal || tt.t.Start() != tt.start {
			t.Errorf("%s: kind=%s terminal=%v start=%v", tt.t, tt.t.Kind(), tt.t.Terminal(), tt.t.Start())
		}
	}
}

func TestNewIDDeterministic(t *testing.T) {
	a := NewID(KindTask, "t1", TaskLaunched, StateRunning, "2024-05-01 10:00:00", 0)
	if b := NewID(KindTask, "t1", TaskLaunched, StateRunning, "2024-05-01 10:00:00", 0); a != b {
		t.Fatalf("same input, different ids %s %s", a, b)
	}
	others := []string{
		NewID(KindTask, "t1", TaskLaunched, StateRunning, "2024-05-01 10:00:01", 0),
		NewID(KindTask, "t2", TaskLaunched, StateRunning, "2024-05-01 10:00:00", 0),
		NewID(KindTask, "t1", TaskResumed, StateRunning, "2024-05-01 10:00:00", 0),
		NewID(KindTask, "t1", TaskLaunched, StateRunning, "2024-05-01 10:00:00", 1),
		NewID(KindExecution, "t1", TaskLaunched, StateRunning, "2024-05-01 10:00:00", 0),
	}
	for i, o := range others {
		if o == a {
			t.Errorf("variant %d collides with the base id", i)
		}
	}
}
