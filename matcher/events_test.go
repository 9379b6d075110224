package matcher

import "testing"

func TestEventSet(t *testing.T) {
	tests := []struct {
		in   []string
		want int
	}{
		{[]string{"*"}, 15},
		{[]string{"EXECUTION"}, 7},
		{[]string{"task"}, 8},
		{[]string{"on-execution-start"}, 3},
		{[]string{"on-execution-complete"}, 3},
		{[]string{"on-task-start"}, 3},
		{[]string{"on-task-complete"}, 4},
		{[]string{"TASK_FAILED", "task_failed", "On-Task-Complete"}, 4},
	}
	for _, tt := range tests {
		s, err := EventSet(tt.in)
		if err != nil || len(s) != tt.want {
			t.Errorf("EventSet(%v) = %d types, %v; want %d", tt.in, len(s), err, tt.want)
		}
	}
	if _, err := EventSet([]string{"TASK_DONE"}); err == nil {
		t.Error("EventSet accepted TASK_DONE")
	}
}
