package e2e

import (
	"strings"
	"testing"
)

// These check the harness's own judgement (no engine needed).

func ev(seq uint64, event, entity, exec string, opts ...func(*Notification)) Notification {
	n := Notification{Event: event, Entity: entity, ExecutionID: exec, Task: strings.HasPrefix(event, "TASK_"),
		Sequence: seq, Root: "root"}
	if !n.Task {
		n.ExecutionID = entity
	}
	for _, o := range opts {
		o(&n)
	}
	return n
}

func inferred(n *Notification) { n.Inferred = true }

func times(start, end string) func(*Notification) {
	return func(n *Notification) { n.StartedAt, n.FinishedAt = start, end }
}

func TestCompare(t *testing.T) {
	wl := ev(1, "WORKFLOW_LAUNCHED", "w", "")
	tl := ev(2, "TASK_LAUNCHED", "t", "w")
	ts := ev(3, "TASK_SUCCEEDED", "t", "w")
	tests := []struct {
		name                   string
		expected, delivered    []Notification
		envelopes              []Notification
		missing, extra, excuse int
		ok                     bool
	}{
		{"equal", []Notification{wl, tl, ts}, []Notification{ts, tl, wl}, nil, 0, 0, 0, true},
		{"missing retry cycle", []Notification{wl, tl, ts, tl, ts}, []Notification{wl, tl, ts}, nil, 2, 0, 0, false},
		{"extra inferred", []Notification{wl, ts}, []Notification{wl, tl, ts},
			[]Notification{ev(2, "TASK_LAUNCHED", "t", "w", inferred)}, 0, 1, 0, true},
		{"extra not inferred", []Notification{wl, ts}, []Notification{wl, tl, ts}, []Notification{tl}, 0, 1, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Compare(tt.expected, tt.delivered, tt.envelopes)
			if len(p.Missing) != tt.missing || len(p.Extra) != tt.extra || len(p.ExtraNotInferred) != tt.excuse || p.OK() != tt.ok {
				t.Errorf("got %+v, want missing=%d extra=%d notInferred=%d ok=%v", p, tt.missing, tt.extra, tt.excuse, tt.ok)
			}
		})
	}
}

func TestCheckOrder(t *testing.T) {
	tests := []struct {
		name  string
		seq   []Notification
		opts  OrderOptions
		wants []string // substrings of expected problems; none = clean
	}{
		{"clean", []Notification{
			ev(1, "WORKFLOW_LAUNCHED", "w", ""),
			ev(2, "TASK_LAUNCHED", "a", "w", times("10:00:00", "")),
			ev(3, "TASK_SUCCEEDED", "a", "w", times("10:00:00", "10:00:01")),
			ev(4, "TASK_LAUNCHED", "b", "w", times("10:00:02", "")),
			ev(5, "TASK_SUCCEEDED", "b", "w", times("10:00:02", "10:00:02")),
			ev(6, "WORKFLOW_SUCCEEDED", "w", ""),
		}, OrderOptions{}, nil},
		{"terminal without start", []Notification{
			ev(1, "WORKFLOW_LAUNCHED", "w", ""),
			ev(2, "TASK_FAILED", "a", "w"),
		}, OrderOptions{}, []string{"first event of a is TASK_FAILED"}},
		{"second failure without relaunch", []Notification{
			ev(1, "WORKFLOW_LAUNCHED", "w", ""),
			ev(2, "TASK_LAUNCHED", "a", "w"),
			ev(3, "TASK_FAILED", "a", "w"),
			ev(4, "TASK_FAILED", "a", "w"),
		}, OrderOptions{}, []string{"without a start"}},
		{"task before its workflow", []Notification{
			ev(1, "TASK_LAUNCHED", "a", "w"),
			ev(2, "WORKFLOW_LAUNCHED", "w", ""),
		}, OrderOptions{}, []string{"before its execution"}},
		{"task after workflow succeeded", []Notification{
			ev(1, "WORKFLOW_LAUNCHED", "w", ""),
			ev(2, "TASK_LAUNCHED", "a", "w"),
			ev(3, "WORKFLOW_SUCCEEDED", "w", ""),
			ev(4, "TASK_SUCCEEDED", "a", "w"),
		}, OrderOptions{}, []string{"ended after WORKFLOW_SUCCEEDED"}},
		{"late task allowed", []Notification{
			ev(1, "WORKFLOW_LAUNCHED", "w", ""),
			ev(2, "TASK_LAUNCHED", "a", "w"),
			ev(3, "WORKFLOW_SUCCEEDED", "w", ""),
			ev(4, "TASK_SUCCEEDED", "a", "w"),
		}, OrderOptions{LateTasks: true}, nil},
		{"sibling order by timestamps", []Notification{
			ev(1, "WORKFLOW_LAUNCHED", "w", ""),
			ev(2, "TASK_LAUNCHED", "b", "w", times("10:00:02", "")),
			ev(3, "TASK_LAUNCHED", "a", "w", times("10:00:00", "")),
			ev(4, "TASK_SUCCEEDED", "a", "w", times("10:00:00", "10:00:01")),
		}, OrderOptions{}, []string{"TASK_SUCCEEDED/a (finished 10:00:01) delivered after TASK_LAUNCHED/b"}},
		{"duplicate sequence", []Notification{
			ev(1, "WORKFLOW_LAUNCHED", "w", ""),
			ev(1, "TASK_LAUNCHED", "a", "w"),
		}, OrderOptions{}, []string{"arrived after seq 1", "sequence 1 used twice"}},
		{"sub-workflow before parent task", []Notification{
			ev(1, "WORKFLOW_LAUNCHED", "w", ""),
			ev(2, "WORKFLOW_LAUNCHED", "c", "", func(n *Notification) { n.ParentTaskID = "p" }),
			ev(3, "TASK_LAUNCHED", "p", "w"),
		}, OrderOptions{}, []string{"launched before its parent task"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CheckOrder(tt.seq, tt.opts)
			if len(tt.wants) == 0 && len(got) > 0 {
				t.Fatalf("unexpected problems: %q", got)
			}
			all := strings.Join(got, "\n")
			for _, w := range tt.wants {
				if !strings.Contains(all, w) {
					t.Errorf("problems %q lack %q", got, w)
				}
			}
		})
	}
}
