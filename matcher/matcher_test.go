package matcher

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// fakeIndex maps namespace/workflow to workbook.
type fakeIndex map[string]string

func (f fakeIndex) WorkbookOf(wf, ns string) (string, bool) {
	wb, ok := f[ns+"/"+wf]
	return wb, ok
}

func execEv(t event.Type, wf, ns string) *event.Event {
	return &event.Event{Type: t, Execution: &event.Execution{ID: "e1", WorkflowName: wf, WorkflowNamespace: ns}}
}

func taskEv(t event.Type, wf, ns, task string) *event.Event {
	return &event.Event{Type: t, Task: &event.Task{ID: "t1", Name: task, WorkflowName: wf, WorkflowNamespace: ns}}
}

func ptr(s string) *string { return &s }

func TestMatch(t *testing.T) {
	cbs := []config.Callback{
		{Name: "all", Events: []string{"*"}},
		{Name: "exec-complete", Events: []string{"on-execution-complete"}},
		{Name: "task-failed", Events: []string{"task_failed"}},
		{Name: "deploy", Events: []string{"*"}, Workflow: "deploy_*"},
		{Name: "default-ns", Events: []string{"*"}, Namespace: ptr("")},
		{Name: "prod-ns", Events: []string{"*"}, Namespace: ptr("prod")},
		{Name: "step-tasks", Events: []string{"*"}, Task: "step?"},
		{Name: "wb", Events: []string{"*"}, Workbook: "my.wb"},
		{Name: "wb-my", Events: []string{"*"}, Workbook: "my"},
	}
	idx := fakeIndex{"/my.wb.main": "my.wb", "/my.wb.main2": "my", "prod/my.wb.main": "my.wb"}
	m, err := New(cbs, idx)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ev   *event.Event
		want []string
	}{
		{"exec launched, plain wf", execEv(event.WorkflowLaunched, "hello", ""), []string{"all", "default-ns", "step-tasks"}},
		{"exec succeeded", execEv(event.WorkflowSucceeded, "hello", ""), []string{"all", "exec-complete", "default-ns", "step-tasks"}},
		{"task failed, glob workflow", taskEv(event.TaskFailed, "deploy_web", "", "step1"), []string{"all", "task-failed", "deploy", "default-ns", "step-tasks"}},
		{"task name mismatch", taskEv(event.TaskSucceeded, "x", "prod", "step10"), []string{"all", "prod-ns"}},
		{"workbook exact", execEv(event.WorkflowPaused, "my.wb.main", ""), []string{"all", "default-ns", "step-tasks", "wb"}},
		// my.wb.main2 starts with "my.wb." but belongs to workbook "my"
		// (workflow "wb.main2"): no prefix guessing.
		{"workbook ambiguous prefix", execEv(event.WorkflowPaused, "my.wb.main2", ""), []string{"all", "default-ns", "step-tasks", "wb-my"}},
		{"workbook per namespace", execEv(event.WorkflowPaused, "my.wb.main", "prod"), []string{"all", "prod-ns", "step-tasks", "wb"}},
		{"workbook unknown", execEv(event.WorkflowPaused, "my.wb.other", "prod"), []string{"all", "prod-ns", "step-tasks"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m.Match(tt.ev); !slices.Equal(got, tt.want) {
				t.Errorf("Match = %v, want %v", got, tt.want)
			}
			// Explain agrees with Match.
			var fromExplain []string
			for _, d := range m.Explain(tt.ev) {
				if d.Matched {
					fromExplain = append(fromExplain, d.Callback)
				}
				if d.Reason == "" {
					t.Errorf("%s: empty reason", d.Callback)
				}
			}
			if !slices.Equal(fromExplain, tt.want) {
				t.Errorf("Explain matched %v, want %v", fromExplain, tt.want)
			}
		})
	}
}

func TestExplainReasons(t *testing.T) {
	cbs := []config.Callback{
		{Name: "a", Events: []string{"on-execution-complete"}},
		{Name: "b", Events: []string{"*"}, Workflow: "deploy_*"},
		{Name: "c", Events: []string{"*"}, Workbook: "deploy_wb"},
		{Name: "d", Events: []string{"*"}, Workbook: "other"},
		{Name: "e", Events: []string{"*"}, Namespace: ptr("prod")},
		{Name: "f", Events: []string{"TASK"}, Task: "t_*"},
		{Name: "g", Events: []string{"*"}, Workflow: "x", Task: "t_*"},
	}
	m, err := New(cbs, fakeIndex{"/x": "other"})
	if err != nil {
		t.Fatal(err)
	}
	got := m.Explain(taskEv(event.TaskFailed, "x", "", "u1"))
	want := []string{
		`event type TASK_FAILED not in [on-execution-complete]`,
		`workflow "x" does not match "deploy_*"`,
		`workbook: x is not a workflow of workbook deploy_wb (it is in other)`,
		`event type TASK_FAILED in [*]; x is a workflow of workbook other`,
		`namespace "" is not "prod"`,
		`task "u1" does not match "t_*"`,
		`task "u1" does not match "t_*"`,
	}
	for i, d := range got {
		if d.Reason != want[i] {
			t.Errorf("%s: reason %q, want %q", d.Callback, d.Reason, want[i])
		}
	}
	// An execution event passes the task filter.
	if d := m.Explain(execEv(event.WorkflowFailed, "x", ""))[6]; !d.Matched || d.Reason != `event type WORKFLOW_FAILED in [*]; workflow "x" matches "x"; task filter does not apply to execution events` {
		t.Errorf("g on execution event: %+v", d)
	}
	m2, _ := New(cbs[:1], nil)
	if d := m2.Explain(execEv(event.WorkflowFailed, "y", ""))[0]; !d.Matched {
		t.Errorf("a: %+v", d)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		cb   config.Callback
		want string
	}{
		{config.Callback{Name: "x", Events: []string{"NOPE"}}, `callback "x": field events: unknown event "NOPE"`},
		{config.Callback{Name: "x"}, `callback "x": field events: must list at least one event`},
		{config.Callback{Name: "x", Events: []string{"*"}, Workflow: "["}, `callback "x": field workflow: bad glob "["`},
		{config.Callback{Name: "x", Events: []string{"*"}, Workbook: "w"}, `callback "x": filters on workbook but no workbook index`},
	}
	for _, tt := range tests {
		_, err := New([]config.Callback{tt.cb}, nil)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want prefix %q", tt.cb, err, tt.want)
		}
	}
}

// TestCompileReportsEveryProblemAtItsKey: validate shows each bad entry
// with its position, so Compile names every one by key.
func TestCompileReportsEveryProblemAtItsKey(t *testing.T) {
	cbs := []config.Callback{
		{Name: "ok", Events: []string{"*"}},
		{Name: "bad", Events: []string{"TASK_FAILED", "NOPE", "on-task-finish"}, Task: "[x"},
	}
	_, err := Compile(cbs)
	var got []string
	for _, p := range config.Problems(err) {
		got = append(got, p.Path+" "+p.Callback+" "+p.Value)
	}
	want := []string{"callbacks.1.events.1 bad NOPE", "callbacks.1.events.2 bad on-task-finish", "callbacks.1.task bad [x"}
	if !slices.Equal(got, want) {
		t.Errorf("problems = %q, want %q", got, want)
	}
}

func BenchmarkMatch(b *testing.B) {
	var cbs []config.Callback
	idx := fakeIndex{}
	for i := range 100 {
		cb := config.Callback{Name: fmt.Sprintf("cb%d", i), Events: []string{"*"}}
		switch i % 5 {
		case 0:
			cb.Events = []string{"on-task-complete"}
		case 1:
			cb.Workflow = fmt.Sprintf("wf_%d_*", i)
		case 2:
			cb.Namespace = ptr("")
			cb.Task = "step*"
		case 3:
			cb.Workbook = fmt.Sprintf("wb%d", i)
			idx[fmt.Sprintf("/wb%d.main", i)] = fmt.Sprintf("wb%d", i)
		}
		cbs = append(cbs, cb)
	}
	m, err := New(cbs, idx)
	if err != nil {
		b.Fatal(err)
	}
	ev := taskEv(event.TaskSucceeded, "wb3.main", "", "step1")
	b.ReportAllocs()
	for b.Loop() {
		_ = m.Match(ev)
	}
}
