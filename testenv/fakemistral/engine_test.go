package fakemistral

import (
	"context"
	_ "embed"
	"fmt"
	"testing"
	"time"
)

//go:embed testdata/flows.yaml
var flows string

func newEngine(t *testing.T) *Engine {
	t.Helper()
	e := New(Options{})
	t.Cleanup(e.Close)
	if err := e.DefineWorkflow(flows, ""); err != nil {
		t.Fatalf("define: %v", err)
	}
	return e
}

func waitDone(t *testing.T, e *Engine, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.WaitDone(ctx, id); err != nil {
		t.Fatal(err)
	}
}

// trail renders the ground truth of one root as "EVENT name STATE".
func trail(e *Engine, root string) []string {
	var out []string
	for _, ev := range e.NotifierEvents() {
		if ev.RootExecutionID != root {
			continue
		}
		name := ev.Event
		if name == "" {
			name = "null"
		}
		out = append(out, fmt.Sprintf("%s %s %s", name, ev.Payload["name"], ev.Payload["state"]))
	}
	return out
}

func equal(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events:\n%q\nwant %d:\n%q", len(got), got, len(want), want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("event %d: got %q, want %q\nall: %q", i, got[i], want[i], got)
		}
	}
}

func TestGroundTruthSequences(t *testing.T) {
	tests := []struct {
		wf     string
		input  map[string]any
		params map[string]any
		want   []string
	}{
		{wf: "seq3", want: []string{
			"WORKFLOW_LAUNCHED seq3 RUNNING",
			"TASK_LAUNCHED t1 RUNNING", "TASK_SUCCEEDED t1 SUCCESS",
			"TASK_LAUNCHED t2 RUNNING", "TASK_SUCCEEDED t2 SUCCESS",
			"TASK_LAUNCHED t3 RUNNING", "TASK_SUCCEEDED t3 SUCCESS",
			"WORKFLOW_SUCCEEDED seq3 SUCCESS",
		}},
		{wf: "failing", want: []string{
			"WORKFLOW_LAUNCHED failing RUNNING",
			"TASK_LAUNCHED boom RUNNING", "TASK_FAILED boom ERROR",
			"WORKFLOW_FAILED failing ERROR",
		}},
		{wf: "handled", want: []string{
			"WORKFLOW_LAUNCHED handled RUNNING",
			"TASK_LAUNCHED boom RUNNING", "TASK_FAILED boom ERROR",
			"TASK_LAUNCHED cleanup RUNNING", "TASK_SUCCEEDED cleanup SUCCESS",
			"WORKFLOW_SUCCEEDED handled SUCCESS",
		}},
		{wf: "retrying", want: []string{
			"WORKFLOW_LAUNCHED retrying RUNNING",
			"TASK_LAUNCHED flaky RUNNING", "TASK_FAILED flaky ERROR", "null flaky DELAYED",
			"TASK_LAUNCHED flaky RUNNING", "TASK_FAILED flaky ERROR", "null flaky DELAYED",
			"TASK_LAUNCHED flaky RUNNING", "TASK_FAILED flaky ERROR",
			"WORKFLOW_FAILED retrying ERROR",
		}},
		{wf: "waiting", want: []string{
			"WORKFLOW_LAUNCHED waiting RUNNING",
			"TASK_LAUNCHED w RUNNING", "null w DELAYED", "TASK_LAUNCHED w RUNNING", "TASK_SUCCEEDED w SUCCESS",
			"WORKFLOW_SUCCEEDED waiting SUCCESS",
		}},
		{wf: "joiner", want: []string{
			"WORKFLOW_LAUNCHED joiner RUNNING",
			"TASK_LAUNCHED a RUNNING", "TASK_LAUNCHED b RUNNING",
			"TASK_SUCCEEDED a SUCCESS", "null j WAITING",
			"TASK_SUCCEEDED b SUCCESS", "TASK_RESUMED j RUNNING", "TASK_SUCCEEDED j SUCCESS",
			"WORKFLOW_SUCCEEDED joiner SUCCESS",
		}},
		{wf: "parent", want: []string{
			"WORKFLOW_LAUNCHED parent RUNNING",
			"TASK_LAUNCHED call RUNNING",
			"WORKFLOW_LAUNCHED child RUNNING",
			"TASK_LAUNCHED inner RUNNING",
			"WORKFLOW_LAUNCHED grandchild RUNNING",
			"TASK_LAUNCHED leaf RUNNING", "TASK_SUCCEEDED leaf SUCCESS",
			"WORKFLOW_SUCCEEDED grandchild SUCCESS",
			"TASK_SUCCEEDED inner SUCCESS",
			"WORKFLOW_SUCCEEDED child SUCCESS",
			"TASK_SUCCEEDED call SUCCESS",
			"TASK_LAUNCHED done RUNNING", "TASK_SUCCEEDED done SUCCESS",
			"WORKFLOW_SUCCEEDED parent SUCCESS",
		}},
		{wf: "rev", params: map[string]any{"task_name": "c"}, want: []string{
			"WORKFLOW_LAUNCHED rev RUNNING",
			"TASK_LAUNCHED a RUNNING", "TASK_SUCCEEDED a SUCCESS",
			"TASK_LAUNCHED b RUNNING", "TASK_SUCCEEDED b SUCCESS",
			"TASK_LAUNCHED c RUNNING", "TASK_SUCCEEDED c SUCCESS",
			"WORKFLOW_SUCCEEDED rev SUCCESS",
		}},
		{wf: "items", want: []string{
			"WORKFLOW_LAUNCHED items RUNNING",
			"TASK_LAUNCHED each RUNNING", "TASK_SUCCEEDED each SUCCESS",
			"WORKFLOW_SUCCEEDED items SUCCESS",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.wf, func(t *testing.T) {
			e := newEngine(t)
			id, err := e.Start(tt.wf, tt.input, tt.params)
			if err != nil {
				t.Fatal(err)
			}
			waitDone(t, e, id)
			equal(t, trail(e, id), tt.want)
		})
	}
}

func TestNullEventsAndRoots(t *testing.T) {
	e := newEngine(t)
	id, err := e.Start("parent", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, e, id)
	for _, ev := range e.NotifierEvents() {
		if ev.RootExecutionID != id {
			t.Errorf("%s %s has root %s, want %s", ev.Kind, ev.EntityID, ev.RootExecutionID, id)
		}
		if ev.Payload["event"] != ev.Event {
			t.Errorf("payload event %v != %q", ev.Payload["event"], ev.Event)
		}
	}

	id, err = e.Start("waiting", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, e, id)
	var null []NotifierEvent
	for _, ev := range e.NotifierEvents() {
		if ev.RootExecutionID == id && ev.Event == "" {
			null = append(null, ev)
		}
	}
	if len(null) != 1 {
		t.Fatalf("%d null events, want 1", len(null))
	}
	if v, ok := null[0].Payload["event"]; !ok || v != nil {
		t.Errorf(`null event payload "event" = %v (present %v); want null`, v, ok)
	}
	if null[0].Kind != "TASK" || null[0].Payload["state"] != "DELAYED" {
		t.Errorf("null event = %+v", null[0])
	}
}

func TestStartErrorsAndDefinitions(t *testing.T) {
	e := newEngine(t)
	if _, err := e.Start("nope", nil, nil); err == nil {
		t.Error("Start of an unknown workflow succeeded")
	}
	if _, err := e.Start("seq3", map[string]any{"x": 1}, nil); err == nil {
		t.Error("Start with unexpected input succeeded")
	}
	if err := e.DefineWorkflow(flows, ""); err == nil {
		t.Error("duplicate DefineWorkflow succeeded")
	}
	if err := e.DefineWorkflow(flows, "other"); err != nil {
		t.Errorf("same workflows in another namespace: %v", err)
	}
	wb := "version: '2.0'\nname: a.b\nworkflows:\n  c.d:\n    tasks:\n      t:\n        workflow: e\n  e:\n    tasks:\n      t:\n        action: std.noop\n"
	if err := e.DefineWorkbook(wb, ""); err != nil {
		t.Fatal(err)
	}
	id, err := e.Start("a.b.c.d", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, e, id)
	got := trail(e, id)
	if len(got) != 8 || got[2] != "WORKFLOW_LAUNCHED a.b.e RUNNING" || got[7] != "WORKFLOW_SUCCEEDED a.b.c.d SUCCESS" {
		t.Errorf("workbook run = %q", got)
	}
	nsID, err := e.Start("seq3", nil, map[string]any{"namespace": "other"})
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, e, nsID)
	if ns := e.NotifierEvents()[len(e.NotifierEvents())-1].Payload["workflow_namespace"]; ns != "other" {
		t.Errorf("namespace = %v", ns)
	}
}

func TestCloseStopsExecutions(t *testing.T) {
	e := New(Options{})
	if err := e.DefineWorkflow(flows, ""); err != nil {
		t.Fatal(err)
	}
	id, err := e.Start("sleeper", map[string]any{"seconds": 0.05}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	e.Close() // idempotent
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := e.WaitDone(ctx, id); err == nil {
		t.Fatal("execution finished after Close")
	}
	if n := len(e.NotifierEvents()); n != 2 {
		t.Errorf("%d events after Close, want 2 (launched, task launched)", n)
	}
}
