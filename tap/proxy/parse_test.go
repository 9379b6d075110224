package proxy

import (
	"testing"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

func TestClassify(t *testing.T) {
	ex, task := event.KindExecution, event.KindTask
	cases := []struct {
		prefix, method, path string
		want                 route
	}{
		{"", "GET", "/v2/executions", route{kind: ex, list: true}},
		{"", "GET", "/v2/executions/", route{kind: ex, list: true}},
		{"", "POST", "/v2/executions", route{kind: ex}},
		{"", "PUT", "/v2/executions", route{}},
		{"", "DELETE", "/v2/executions", route{}},
		{"", "GET", "/v2/executions/abc", route{kind: ex}},
		{"", "PUT", "/v2/executions/abc", route{kind: ex}},
		{"", "DELETE", "/v2/executions/abc", route{}},
		{"", "HEAD", "/v2/executions/abc", route{}},
		{"", "GET", "/v2/executions/abc/tasks", route{kind: task, list: true}},
		{"", "GET", "/v2/executions/abc/executions", route{kind: ex, list: true}},
		{"", "GET", "/v2/executions/abc/report", route{}},
		{"", "POST", "/v2/executions/abc/tasks", route{}},
		{"", "GET", "/v2/tasks", route{kind: task, list: true}},
		{"", "POST", "/v2/tasks", route{}},
		{"", "GET", "/v2/tasks/t1", route{kind: task}},
		{"", "PUT", "/v2/tasks/t1", route{kind: task}},
		{"", "GET", "/v2/tasks/t1/action_executions", route{}},
		{"", "GET", "/v2/executions//tasks", route{}},
		{"", "GET", "/v2/action_executions", route{}},
		{"", "GET", "/v1/executions", route{}},
		{"", "GET", "/workflow/v2/executions", route{}},
		{"", "POST", "/v2/workbooks", route{workbooks: true}},
		{"", "PUT", "/v2/workbooks", route{workbooks: true}},
		{"", "DELETE", "/v2/workbooks/wb1", route{workbooks: true}},
		{"", "POST", "/v2/workflows", route{workbooks: true}},
		{"", "DELETE", "/v2/workflows/ns1/wf", route{workbooks: true}},
		{"", "GET", "/v2/workbooks", route{}},
		{"/workflow", "GET", "/workflow/v2/executions", route{kind: ex, list: true}},
		{"/workflow", "GET", "/v2/executions", route{}},
		{"/workflow", "GET", "/workflowx/v2/executions", route{}},
		{"/workflow", "POST", "/workflow/v2/workbooks", route{workbooks: true}},
		{"/a/b", "GET", "/a/b/v2/tasks/x", route{kind: task}},
		// Which resource a dot segment names depends on the upstream.
		{"", "GET", "/v2/executions/..", route{}},
		{"", "GET", "/v2/executions/.", route{}},
		{"", "GET", "/v2/executions/../executions", route{}},
		{"", "GET", "/v2/./executions", route{}},
		{"", "POST", "/v2/executions/../workbooks", route{}},
		{"/workflow", "GET", "/workflow/v2/../v2/tasks", route{}},
		{"", "GET", "/v2/executions/..abc", route{kind: ex}},
		{"", "GET", "/v2/executions/abc.", route{kind: ex}},
	}
	for _, tc := range cases {
		if got := classify(tc.prefix, tc.method, tc.path); got != tc.want {
			t.Errorf("classify(%q, %s %s) = %+v, want %+v", tc.prefix, tc.method, tc.path, got, tc.want)
		}
	}
	for in, want := range map[string]string{"": "", "/": "", "workflow": "/workflow", "/workflow/": "/workflow", "/a/b/": "/a/b"} {
		if got := normalizePrefix(in); got != want {
			t.Errorf("normalizePrefix(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseBody(t *testing.T) {
	exList := route{kind: event.KindExecution, list: true}
	taskList := route{kind: event.KindTask, list: true}
	exOne := route{kind: event.KindExecution}
	taskOne := route{kind: event.KindTask}
	cases := []struct {
		name    string
		rt      route
		body    string
		n, skip int
		wantErr bool
	}{
		{"execution list", exList, string(fixture(t, "executions_list.json")), 3, 0, false},
		{"task list", taskList, string(fixture(t, "tasks_list.json")), 2, 0, false},
		{"execution", exOne, string(fixture(t, "execution.json")), 1, 0, false},
		{"task", taskOne, string(fixture(t, "task.json")), 1, 0, false},
		{"empty list", exList, `{"executions": [], "next": null}`, 0, 0, false},
		{"fields without state", exList, string(fixture(t, "executions_fields.json")), 0, 2, false},
		{"mixed elements", exList, string(fixture(t, "executions_mixed.json")), 2, 4, false},
		{"wrong envelope key", exList, string(fixture(t, "tasks_list.json")), 0, 0, true},
		{"list where one expected", exOne, string(fixture(t, "executions_list.json")), 0, 1, false},
		{"single without state", taskOne, `{"id": "x"}`, 0, 1, false},
		{"null list", exList, `{"executions": null}`, 0, 0, false},
		{"envelope not object", exList, `[]`, 0, 0, true},
		{"members not list", exList, `{"executions": {}}`, 0, 0, true},
		{"truncated", exList, `{"executions": [{"id": "a", "state": "RUNNING"}`, 0, 0, true},
		{"empty", exOne, ``, 0, 0, true},
		{"string state", exOne, `{"id": "x", "state": 1}`, 0, 0, true},
		{"runtime_context object", taskOne, `{"id": "x", "state": "RUNNING", "runtime_context": {}}`, 0, 0, true},
		{"trailing garbage", exOne, `{"id": "x", "state": "RUNNING"} {}`, 0, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseBody(tc.rt, []byte(tc.body), testClock)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if len(p.obs) != tc.n || p.skipped != tc.skip {
				t.Errorf("%d observations, %d skipped; want %d, %d", len(p.obs), p.skipped, tc.n, tc.skip)
			}
			for _, o := range p.obs {
				if o.Source != event.SourceTap || !o.RequestedAt.Equal(testClock) {
					t.Errorf("observation %+v", o)
				}
				if (o.Execution == nil) == (o.Task == nil) {
					t.Errorf("observation must have exactly one resource: %+v", o)
				}
			}
		})
	}
}

// FuzzParse: no body makes the parser panic, and every observation it
// returns is usable (one resource, with id and state).
func FuzzParse(f *testing.F) {
	for _, name := range []string{"executions_list.json", "tasks_list.json", "execution.json", "task.json", "executions_fields.json", "executions_mixed.json"} {
		b := fixture(f, name)
		for k := range 4 {
			f.Add(uint8(k), b)
		}
	}
	f.Add(uint8(0), []byte(`{"executions": [null, {"id": "\u0000", "state": "\ud800"}]}`))
	f.Add(uint8(1), []byte(`{"executions": [{"id": "a", "state": "b"`))
	routes := []route{
		{kind: event.KindExecution, list: true},
		{kind: event.KindTask, list: true},
		{kind: event.KindExecution},
		{kind: event.KindTask},
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		rt := routes[int(which)%len(routes)]
		p, err := parseBody(rt, body, testClock)
		if err != nil {
			if len(p.obs) != 0 {
				t.Fatalf("observations returned with an error")
			}
			return
		}
		for _, o := range p.obs {
			switch {
			case o.Execution != nil && o.Task == nil && rt.kind == event.KindExecution:
				if o.Execution.ID == "" || o.Execution.State == "" {
					t.Fatalf("execution without id or state: %+v", o.Execution)
				}
			case o.Task != nil && o.Execution == nil && rt.kind == event.KindTask:
				if o.Task.ID == "" || o.Task.State == "" {
					t.Fatalf("task without id or state: %+v", o.Task)
				}
			default:
				t.Fatalf("wrong resource kind for %+v: %+v", rt, o)
			}
		}
	})
}
