package fakemistral

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type api struct {
	t   *testing.T
	e   *Engine
	srv *httptest.Server
	clk *clock
}

func newAPI(t *testing.T) *api {
	t.Helper()
	clk := &clock{t: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)}
	e := New(Options{Now: clk.Now})
	srv := httptest.NewServer(e)
	t.Cleanup(func() { srv.Close(); e.Close() })
	a := &api{t: t, e: e, srv: srv, clk: clk}
	if st, body := a.raw("POST", "/v2/workflows", flows); st != 201 {
		t.Fatalf("define flows: %d %s", st, body)
	}
	return a
}

func (a *api) raw(method, path, body string) (int, string) {
	a.t.Helper()
	st, _, b := a.rawH(method, path, body)
	return st, b
}

func (a *api) rawH(method, path, body string) (int, http.Header, string) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.srv.URL+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// js does a request and decodes the JSON answer, failing unless the status
// is want.
func (a *api) js(method, path, body string, want int) map[string]any {
	a.t.Helper()
	st, b := a.raw(method, path, body)
	if st != want {
		a.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, st, want, b)
	}
	var m map[string]any
	if b != "" {
		if err := json.Unmarshal([]byte(b), &m); err != nil {
			a.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return m
}

func (a *api) start(wf string, input string) string {
	a.t.Helper()
	a.clk.Advance(time.Second)
	body := fmt.Sprintf(`{"workflow_name": %q, "input": %s}`, wf, input)
	return a.js("POST", "/v2/executions", body, 201)["id"].(string)
}

func (a *api) wait(id string) {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.e.WaitDone(ctx, id); err != nil {
		a.t.Fatal(err)
	}
}

func ids(items any) []string {
	var out []string
	for _, it := range items.([]any) {
		out = append(out, it.(map[string]any)["id"].(string))
	}
	return out
}

func TestVersionAndUnknownPaths(t *testing.T) {
	a := newAPI(t)
	root := a.js("GET", "/", "", 200)
	v := root["versions"].([]any)[0].(map[string]any)
	if v["id"] != "v2.0" || !strings.HasSuffix(v["links"].([]any)[0].(map[string]any)["href"].(string), "/v2") {
		t.Errorf("root = %v", root)
	}
	if got := a.js("GET", "/v2", "", 200)["uri"]; got != a.srv.URL+"/v2" {
		t.Errorf("v2 uri = %v", got)
	}
	for _, p := range []string{"/v2/nope", "/v3", "/v2/executions/x/y/z"} {
		st, b := a.raw("GET", p, "")
		if st != 404 || !strings.Contains(b, `"faultcode": "Client"`) {
			t.Errorf("GET %s: %d %s", p, st, b)
		}
	}
}

func TestErrorsAndValidation(t *testing.T) {
	a := newAPI(t)
	id := a.start("seq3", "{}")
	a.wait(id)
	tests := []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"missing execution", "GET", "/v2/executions/nope", "", 404,
			`{"faultcode": "Client", "faultstring": "WorkflowExecution not found [id=nope]", "debuginfo": null}`},
		{"missing task", "GET", "/v2/tasks/nope", "", 404, `"faultstring": "TaskExecution not found [id=nope]"`},
		{"unknown argument", "GET", "/v2/executions?bogus=1", "", 400, `Unknown argument: \"bogus\"`},
		{"unknown argument on single", "GET", "/v2/executions/" + id + "?fields=id", "", 400, `Unknown argument: \"fields\"`},
		{"state enum", "GET", "/v2/executions?state=in:RUNNING,ERROR", "", 400, "Value should be one of"},
		{"task WAITING is not a filter value", "GET", "/v2/tasks?state=WAITING", "", 400, "Value should be one of"},
		{"limit zero", "GET", "/v2/executions?limit=0", "", 400, "Limit must be positive."},
		{"limit text", "GET", "/v2/executions?limit=x", "", 400, "unable to convert to int"},
		{"sort dir", "GET", "/v2/executions?sort_dirs=up", "", 400, "Unknown sort direction"},
		{"more dirs than keys", "GET", "/v2/executions?sort_keys=id&sort_dirs=asc,asc", "", 400, "Length of sort_keys"},
		{"unknown field", "GET", "/v2/executions?fields=id,bogus", "", 400, "Some fields do not exist"},
		{"bad marker", "GET", "/v2/executions?marker=nope", "", 404, "WorkflowExecution not found [id=nope]"},
		{"unknown sort key", "GET", "/v2/executions?sort_keys=created_at,bogus", "", 400, `"faultstring": "Invalid sort key: bogus"`},
		{"fields of an empty list", "GET", "/v2/workbooks?fields=bogus,nope", "", 400,
			`"faultstring": "Some fields do not exist  [bogus, nope], please choose from [id, name, namespace, definition, tags, scope, project_id, created_at, updated_at]"`},
		// The checks run in a fixed order: the first bad argument wins.
		{"unknown argument before limit", "GET", "/v2/executions?bogus=1&limit=0", "", 400, `Unknown argument: \"bogus\"`},
		{"limit before sort", "GET", "/v2/executions?limit=0&sort_dirs=up", "", 400, "Limit must be positive."},
		{"sort length before direction", "GET", "/v2/executions?sort_keys=id&sort_dirs=up,up", "", 400, "Length of sort_keys"},
		{"sort direction before key", "GET", "/v2/executions?sort_keys=bogus&sort_dirs=up", "", 400, "Unknown sort direction"},
		{"sort key before fields", "GET", "/v2/executions?sort_keys=bogus&fields=nope", "", 400, "Invalid sort key: bogus"},
		{"fields before filter values", "GET", "/v2/executions?fields=nope&state=FOO", "", 400, "Some fields do not exist  [nope]"},
		{"filter values before marker", "GET", "/v2/executions?state=FOO&marker=nope", "", 400,
			`"faultstring": "Invalid input for field/attribute state. Value: 'FOO'. Value should be one of: IDLE, RUNNING, SUCCESS, ERROR, PAUSED, CANCELLED"`},
		{"unknown workflow", "POST", "/v2/executions", `{"workflow_name":"nope"}`, 404, "Workflow not found [workflow_identifier=nope"},
		{"no workflow", "POST", "/v2/executions", `{}`, 400, "Workflow ID or workflow name must be provided"},
		{"unexpected input", "POST", "/v2/executions", `{"workflow_name":"seq3","input":{"x":1}}`, 400, "unexpected=[x]"},
		{"missing reverse task_name", "POST", "/v2/executions", `{"workflow_name":"rev"}`, 400, "task_name"},
		{"state change to bogus", "PUT", "/v2/executions/" + id, `{"state":"FOO"}`, 400, "Cannot change state to FOO"},
		{"completed cannot pause", "PUT", "/v2/executions/" + id, `{"state":"PAUSED"}`, 400,
			"Can't change workflow execution state from SUCCESS to PAUSED."},
		{"description with state", "PUT", "/v2/executions/" + id, `{"state":"ERROR","description":"x"}`, 400, "description"},
		{"empty update", "PUT", "/v2/executions/" + id, `{}`, 400, "must be provided for update"},
		{"duplicate workflow", "POST", "/v2/workflows", flows, 409, `{"faultstring": "Duplicate entry for WorkflowDefinition`},
		{"bad yaml", "POST", "/v2/workflows", "version: '2.0'\nx: [", 400, `{"faultstring": "Definition could not be parsed`},
		{"bad transition target", "POST", "/v2/workflows", "version: '2.0'\nw:\n  tasks:\n    a:\n      on-success: nope\n", 400, "not defined"},
		{"missing workbook", "GET", "/v2/workbooks/nope", "", 404, "Workbook not found"},
		{"method", "PATCH", "/v2/executions", "", 405, "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, b := a.raw(tt.method, tt.path, tt.body)
			if st != tt.status || !strings.Contains(b, tt.want) {
				t.Errorf("%s %s: %d %s; want %d containing %s", tt.method, tt.path, st, b, tt.status, tt.want)
			}
		})
	}
}

func TestExecutionResource(t *testing.T) {
	a := newAPI(t)
	st, h, b := a.rawH("POST", "/v2/executions",
		`{"workflow_name":"sleeper","input":"{\"seconds\": 0.05}","params":{"notify":[{"type":"webhook","url":"http://x"}]},"description":"d"}`)
	if st != 201 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("POST: %d %s %s", st, h, b)
	}
	var ex map[string]any
	if err := json.Unmarshal([]byte(b), &ex); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"workflow_name": "sleeper", "workflow_namespace": "", "state": "RUNNING", "description": "d",
		"task_execution_id": nil, "root_execution_id": nil, "state_info": nil, "project_id": "<default-project>",
		"created_at": "2026-05-01 10:00:00", "updated_at": "2026-05-01 10:00:00", "input": `{"seconds":0.05}`,
	}
	for k, v := range want {
		if ex[k] != v {
			t.Errorf("POST %s = %#v, want %#v", k, ex[k], v)
		}
	}
	var params map[string]any
	if err := json.Unmarshal([]byte(ex["params"].(string)), &params); err != nil {
		t.Fatalf("params is not a JSON string: %v", ex["params"])
	}
	if params["namespace"] != "" || params["env"] == nil || params["notify"] == nil {
		t.Errorf("params = %v", params)
	}
	if ex["output"] != "{}" {
		t.Errorf("POST output = %v", ex["output"])
	}
	if _, ok := ex["published_global"]; ok {
		t.Error("POST answer has published_global")
	}
	id := ex["id"].(string)
	// Same client-supplied id: the existing execution, nothing started.
	before := len(a.e.NotifierEvents())
	again := a.js("POST", "/v2/executions", fmt.Sprintf(`{"workflow_name":"sleeper","id":%q}`, id), 201)
	if again["id"] != id {
		t.Errorf("re-POST with id gave %v", again["id"])
	}
	if n := len(a.e.NotifierEvents()); n != before {
		t.Errorf("re-POST with id emitted %d events", n-before)
	}
	a.wait(id)
	got := a.js("GET", "/v2/executions/"+id, "", 200)
	if got["state"] != "SUCCESS" || got["output"] != "{}" || got["published_global"] != "{}" {
		t.Errorf("GET = %v", got)
	}

	// Starting with a client id creates that id.
	cid := "0b0e6f3e-6a73-4e3e-9a0e-6bf1d43c0001"
	if got := a.js("POST", "/v2/executions", fmt.Sprintf(`{"workflow_name":"seq3","id":%q}`, cid), 201); got["id"] != cid {
		t.Errorf("client id: %v", got["id"])
	}
	a.wait(cid)
	out := a.js("GET", "/v2/executions/"+cid, "", 200)["output"]
	if out != `{"greeting":"hi"}` {
		t.Errorf("output = %v", out)
	}
}

func TestListFiltersSortFields(t *testing.T) {
	a := newAPI(t)
	var all []string
	for i := range 5 {
		wf := "seq3"
		if i%2 == 1 {
			wf = "failing"
		}
		id := a.start(wf, "{}")
		a.wait(id)
		all = append(all, id)
	}
	tests := []struct {
		query string
		want  []string
	}{
		{"", all},
		{"workflow_name=failing", []string{all[1], all[3]}},
		{"workflow_name=eq:failing", []string{all[1], all[3]}},
		{"workflow_name=neq:failing", []string{all[0], all[2], all[4]}},
		{"workflow_name=has:fail", []string{all[1], all[3]}},
		{"workflow_name=in:seq3,nope", []string{all[0], all[2], all[4]}},
		{"workflow_name=nin:seq3", []string{all[1], all[3]}},
		{"state=ERROR", []string{all[1], all[3]}},
		{"created_at=gte:2026-05-01 10:00:03", []string{all[2], all[3], all[4]}},
		{"created_at=gt:2026-05-01T10:00:03", []string{all[3], all[4]}},
		{"created_at=lt:2026-05-01 10:00:02", []string{all[0]}},
		{"sort_keys=created_at&sort_dirs=desc", []string{all[4], all[3], all[2], all[1], all[0]}},
		{"sort_keys=workflow_name,created_at&sort_dirs=asc,desc", []string{all[3], all[1], all[4], all[2], all[0]}},
		// Missing directions are asc.
		{"sort_keys=workflow_name,created_at&sort_dirs=desc", []string{all[0], all[2], all[4], all[1], all[3]}},
		{"root_execution_id=" + all[0], nil},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			got := a.js("GET", "/v2/executions?"+strings.ReplaceAll(tt.query, " ", "%20"), "", 200)
			if g := ids(got["executions"]); fmt.Sprint(g) != fmt.Sprint(tt.want) {
				t.Errorf("got %v, want %v", g, tt.want)
			}
			if _, ok := got["next"]; ok {
				t.Error("next without a limit")
			}
		})
	}

	// fields: id always comes back; nothing else.
	got := a.js("GET", "/v2/executions?fields=state,workflow_name", "", 200)
	item := got["executions"].([]any)[0].(map[string]any)
	if len(item) != 3 || item["id"] == nil || item["state"] == nil || item["workflow_name"] == nil {
		t.Errorf("fields item = %v", item)
	}
	// output only with include_output.
	item = a.js("GET", "/v2/executions", "", 200)["executions"].([]any)[0].(map[string]any)
	if _, ok := item["output"]; ok {
		t.Error("list item has output")
	}
	for _, tt := range []struct {
		query      string
		withOutput bool
	}{
		{"include_output=true", true},
		{"include_output=True", true},
		{"include_output=yes", false},
		{"include_output=true&fields=state", false}, // fields win
	} {
		item = a.js("GET", "/v2/executions?"+tt.query, "", 200)["executions"].([]any)[0].(map[string]any)
		if out, ok := item["output"]; ok != tt.withOutput || (ok && out != `{"greeting":"hi"}`) {
			t.Errorf("%s: item output = %v (present %v), want present %v", tt.query, out, ok, tt.withOutput)
		}
		if _, ok := item["published_global"]; ok {
			t.Errorf("%s: item has published_global", tt.query)
		}
	}
}

// TestNextLinkSources checks where the next link's parts come from: the
// scheme from the connection, filters implied by the path like any other.
func TestNextLinkSources(t *testing.T) {
	a := newAPI(t)
	id := a.start("seq3", "{}")
	a.wait(id)
	tlsSrv := httptest.NewTLSServer(a.e)
	defer tlsSrv.Close()
	tests := []struct {
		name string
		base string
		path string
		want string // next link without "<base>/v2/" and the marker value
	}{
		{"plain", a.srv.URL, "/v2/executions?limit=1",
			"executions?sort_keys=created_at,id&sort_dirs=asc,asc&limit=1&marker="},
		{"tls", tlsSrv.URL, "/v2/executions?limit=1",
			"executions?sort_keys=created_at,id&sort_dirs=asc,asc&limit=1&marker="},
		{"filter implied by the path", a.srv.URL, "/v2/executions/" + id + "/tasks?limit=1&sort_keys=name&sort_dirs=desc",
			"tasks?sort_keys=name,id&sort_dirs=desc,asc&workflow_execution_id=" + id + "&limit=1&marker="},
		{"id as a sort key", a.srv.URL, "/v2/executions?limit=1&sort_keys=id,created_at&fields=id",
			"executions?sort_keys=id,created_at&sort_dirs=asc,asc&limit=1&marker="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := http.DefaultClient
			if strings.HasPrefix(tt.base, "https") {
				c = tlsSrv.Client()
			}
			resp, err := c.Get(tt.base + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var page map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || resp.StatusCode != 200 {
				t.Fatalf("status %d, %v", resp.StatusCode, err)
			}
			next, _ := page["next"].(string)
			want := tt.base + "/v2/" + tt.want
			if !strings.HasPrefix(next, want) || len(next) == len(want) {
				t.Errorf("next = %q, want %q followed by a marker", next, want)
			}
		})
	}
}

func TestPagingNextLinks(t *testing.T) {
	a := newAPI(t)
	var all []string
	for range 6 {
		id := a.start("seq3", "{}")
		a.wait(id)
		all = append(all, id)
	}
	// Exactly as Mistral builds it, from the request Host, not URL-encoded.
	req, _ := http.NewRequest("GET", a.srv.URL+"/v2/executions?limit=2&workflow_name=seq3&updated_at=gte:2026-05-01%2010:00:00&fields=state", nil)
	req.Host = "mistral.example:8989"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var first map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&first)
	resp.Body.Close()
	want := "http://mistral.example:8989/v2/executions?sort_keys=created_at,id&sort_dirs=asc,asc&workflow_name=seq3&updated_at=gte:2026-05-01 10:00:00&limit=2&marker=" + all[1] + "&fields=id,state"
	if first["next"] != want {
		t.Errorf("next =\n%v\nwant\n%v", first["next"], want)
	}

	for _, limit := range []int{1, 2, 3, 4, 6, 7} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			var got []string
			path := fmt.Sprintf("/v2/executions?limit=%d&sort_keys=created_at&sort_dirs=desc", limit)
			pages := 0
			for path != "" {
				page := a.js("GET", path, "", 200)
				items := page["executions"].([]any)
				got = append(got, ids(page["executions"])...)
				pages++
				next, ok := page["next"].(string)
				if ok != (len(items) == limit) {
					t.Fatalf("page %d: %d items, next present %v", pages, len(items), ok)
				}
				path = ""
				if ok {
					u, err := url.Parse(strings.ReplaceAll(next, " ", "%20"))
					if err != nil {
						t.Fatal(err)
					}
					path = u.RequestURI()
				}
			}
			var want []string
			for i := len(all) - 1; i >= 0; i-- {
				want = append(want, all[i])
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("paged %v, want %v", got, want)
			}
			if wantPages := len(all)/limit + 1; pages != wantPages {
				t.Errorf("%d pages, want %d", pages, wantPages)
			}
		})
	}
}

func TestWorkflowAndWorkbookResources(t *testing.T) {
	a := newAPI(t)
	st, h, b := a.rawH("POST", "/v2/workflows?namespace=ns1", "version: '2.0'\nsolo:\n  input: [a, b: 2]\n  tasks:\n    x:\n      action: std.noop\n")
	if st != 201 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Fatalf("POST workflow: %d %v %s", st, h, b)
	}
	var posted struct {
		Workflows []map[string]any `json:"workflows"`
	}
	_ = json.Unmarshal([]byte(b), &posted)
	w := posted.Workflows[0]
	if w["name"] != "solo" || w["namespace"] != "ns1" || w["input"] != `a, b=2` || w["updated_at"] != nil {
		t.Errorf("posted workflow = %v", w)
	}
	if _, ok := w["interface"].(map[string]any); !ok {
		t.Errorf("POST interface should be an object: %T", w["interface"])
	}
	got := a.js("GET", "/v2/workflows/solo?namespace=ns1", "", 200)
	if _, ok := got["interface"].(string); !ok {
		t.Errorf("GET interface should be a JSON string: %T", got["interface"])
	}
	a.js("GET", "/v2/workflows/solo", "", 404)
	if put := a.js("PUT", "/v2/workflows?namespace=ns1", "version: '2.0'\nsolo:\n  tasks:\n    y:\n      action: std.noop\n", 200); put["workflows"] == nil {
		t.Errorf("PUT = %v", put)
	}
	if got := a.js("GET", "/v2/workflows/solo?namespace=ns1", "", 200); got["updated_at"] == nil || got["input"] != "" {
		t.Errorf("after PUT = %v", got)
	}

	wb := `version: '2.0'
name: my.wb
workflows:
  main:
    tasks:
      call:
        workflow: sub
  sub:
    tasks:
      s:
        action: std.echo output=1
`
	st, h, b = a.rawH("POST", "/v2/workbooks", wb)
	if st != 201 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") || !strings.Contains(b, `"name": "my.wb"`) {
		t.Fatalf("POST workbook: %d %s", st, b)
	}
	names := a.js("GET", "/v2/workflows?name=has:my.wb.&fields=name&sort_keys=name", "", 200)["workflows"].([]any)
	if len(names) != 2 || names[0].(map[string]any)["name"] != "my.wb.main" || names[1].(map[string]any)["name"] != "my.wb.sub" {
		t.Errorf("workbook workflows = %v", names)
	}
	if got := a.js("GET", "/v2/workbooks/my.wb", "", 200); got["definition"] != wb {
		t.Errorf("workbook definition = %v", got["definition"])
	}
	id := a.start("my.wb.main", "{}")
	a.wait(id)
	subs := a.js("GET", "/v2/executions?root_execution_id="+id, "", 200)["executions"].([]any)
	if len(subs) != 1 {
		t.Fatalf("sub-executions = %v", subs)
	}
	sub := subs[0].(map[string]any)
	tasks := a.js("GET", "/v2/executions/"+id+"/tasks", "", 200)["tasks"].([]any)
	call := tasks[0].(map[string]any)
	if sub["workflow_name"] != "my.wb.sub" || sub["task_execution_id"] != call["id"] || sub["root_execution_id"] != id || call["type"] != "WORKFLOW" {
		t.Errorf("sub = %v, call = %v", sub, call)
	}
	// Deleting the workbook removes its workflows.
	a.js("DELETE", "/v2/workbooks/my.wb", "", 204)
	if n := len(a.js("GET", "/v2/workflows?name=has:my.wb.", "", 200)["workflows"].([]any)); n != 0 {
		t.Errorf("%d workbook workflows left", n)
	}
	a.js("DELETE", "/v2/workflows/solo?namespace=ns1", "", 204)
}

func TestTasksAndActions(t *testing.T) {
	a := newAPI(t)
	id := a.start("retrying", "{}")
	a.wait(id)
	list := a.js("GET", "/v2/tasks?workflow_execution_id="+id, "", 200)["tasks"].([]any)
	if len(list) != 1 {
		t.Fatalf("tasks = %v", list)
	}
	item := list[0].(map[string]any)
	if _, ok := item["result"]; ok {
		t.Error("list item has result")
	}
	if item["runtime_context"] != `{"retry_task_policy":{"retry_no":2}}` || item["state"] != "ERROR" || item["finished_at"] == nil {
		t.Errorf("task = %v", item)
	}
	one := a.js("GET", "/v2/tasks/"+item["id"].(string), "", 200)
	if one["result"] != "null" || one["published_global"] != "{}" || one["published"] != "{}" {
		t.Errorf("single task = %v", one)
	}
	acts := a.js("GET", "/v2/action_executions?task_execution_id="+item["id"].(string), "", 200)["action_executions"].([]any)
	if len(acts) != 3 {
		t.Errorf("%d action executions, want 3 (1 + 2 retries)", len(acts))
	}
	for _, q := range []string{"name=flaky", "workflow_name=retrying", "state=ERROR"} {
		if n := len(a.js("GET", "/v2/tasks?"+q, "", 200)["tasks"].([]any)); n != 1 {
			t.Errorf("%s: %d tasks", q, n)
		}
	}

	id = a.start("waiting", "{}")
	a.wait(id)
	tk := a.js("GET", "/v2/executions/"+id+"/tasks", "", 200)["tasks"].([]any)[0].(map[string]any)
	if tk["runtime_context"] != `{"wait_before_policy":{"skip":true}}` {
		t.Errorf("wait-before runtime_context = %v", tk["runtime_context"])
	}

	id = a.start("items", "{}")
	a.wait(id)
	tk = a.js("GET", "/v2/executions/"+id+"/tasks", "", 200)["tasks"].([]any)[0].(map[string]any)
	if tk["published"] != `{"all":["x","y","z"]}` {
		t.Errorf("with-items published = %v", tk["published"])
	}
}

func TestPutTransitions(t *testing.T) {
	tests := []struct {
		name, wf string
		run      func(a *api, id string)
		want     []string
	}{
		{
			name: "pause-before pauses the workflow; resume resumes the task",
			wf:   "gated",
			run: func(a *api, id string) {
				if got := a.js("GET", "/v2/executions/"+id, "", 200)["state"]; got != "PAUSED" {
					a.t.Errorf("state %v, want PAUSED", got)
				}
				a.js("PUT", "/v2/executions/"+id, `{"state":"RUNNING"}`, 200)
			},
			want: []string{
				"WORKFLOW_LAUNCHED gated RUNNING", "null g IDLE", "WORKFLOW_PAUSED gated PAUSED",
				"WORKFLOW_RESUMED gated RUNNING", "TASK_RESUMED g RUNNING", "TASK_SUCCEEDED g SUCCESS",
				"TASK_LAUNCHED h RUNNING", "TASK_SUCCEEDED h SUCCESS", "WORKFLOW_SUCCEEDED gated SUCCESS",
			},
		},
		{
			name: "wait-after delays completion",
			wf:   "afterwait",
			run:  func(*api, string) {},
			want: []string{
				"WORKFLOW_LAUNCHED afterwait RUNNING", "TASK_LAUNCHED w RUNNING", "null w DELAYED",
				"TASK_SUCCEEDED w SUCCESS", "WORKFLOW_SUCCEEDED afterwait SUCCESS",
			},
		},
		{
			name: "pause cascades to sub-workflows first; resume parent first",
			wf:   "nested_sleep",
			run: func(a *api, id string) {
				a.js("PUT", "/v2/executions/"+id, `{"state":"PAUSED"}`, 200)
				child := a.js("GET", "/v2/executions?root_execution_id="+id, "", 200)["executions"].([]any)[0].(map[string]any)
				a.waitTask(child["id"].(string), "nap", "SUCCESS")
				a.js("PUT", "/v2/executions/"+id, `{"state":"RUNNING"}`, 200)
			},
			want: []string{
				"WORKFLOW_LAUNCHED nested_sleep RUNNING", "TASK_LAUNCHED call RUNNING",
				"WORKFLOW_LAUNCHED sleeper RUNNING", "TASK_LAUNCHED nap RUNNING",
				"WORKFLOW_PAUSED sleeper PAUSED", "WORKFLOW_PAUSED nested_sleep PAUSED",
				"TASK_SUCCEEDED nap SUCCESS",
				"WORKFLOW_RESUMED nested_sleep RUNNING", "WORKFLOW_RESUMED sleeper RUNNING",
				"TASK_LAUNCHED after RUNNING", "TASK_SUCCEEDED after SUCCESS", "WORKFLOW_SUCCEEDED sleeper SUCCESS",
				"TASK_SUCCEEDED call SUCCESS", "WORKFLOW_SUCCEEDED nested_sleep SUCCESS",
			},
		},
		{
			name: "cancel cascades to sub-workflows",
			wf:   "nested_sleep",
			run: func(a *api, id string) {
				a.js("PUT", "/v2/executions/"+id, `{"state":"CANCELLED"}`, 200)
			},
			want: []string{
				"WORKFLOW_LAUNCHED nested_sleep RUNNING", "TASK_LAUNCHED call RUNNING",
				"WORKFLOW_LAUNCHED sleeper RUNNING", "TASK_LAUNCHED nap RUNNING",
				"WORKFLOW_CANCELLED nested_sleep CANCELLED", "WORKFLOW_CANCELLED sleeper CANCELLED",
			},
		},
		{
			name: "pause and resume",
			run: func(a *api, id string) {
				got := a.js("PUT", "/v2/executions/"+id, `{"state":"PAUSED"}`, 200)
				if got["state"] != "PAUSED" {
					a.t.Errorf("PUT PAUSED answered %v", got["state"])
				}
				a.waitTask(id, "nap", "SUCCESS")
				a.js("PUT", "/v2/executions/"+id, `{"state":"RUNNING"}`, 200)
			},
			want: []string{
				"WORKFLOW_LAUNCHED sleeper RUNNING", "TASK_LAUNCHED nap RUNNING",
				"WORKFLOW_PAUSED sleeper PAUSED", "TASK_SUCCEEDED nap SUCCESS",
				"WORKFLOW_RESUMED sleeper RUNNING",
				"TASK_LAUNCHED after RUNNING", "TASK_SUCCEEDED after SUCCESS",
				"WORKFLOW_SUCCEEDED sleeper SUCCESS",
			},
		},
		{
			name: "resume of a running execution is a no-op",
			run: func(a *api, id string) {
				a.js("PUT", "/v2/executions/"+id, `{"state":"RUNNING"}`, 200)
			},
			want: []string{
				"WORKFLOW_LAUNCHED sleeper RUNNING", "TASK_LAUNCHED nap RUNNING", "TASK_SUCCEEDED nap SUCCESS",
				"TASK_LAUNCHED after RUNNING", "TASK_SUCCEEDED after SUCCESS", "WORKFLOW_SUCCEEDED sleeper SUCCESS",
			},
		},
		{
			name: "cancel",
			run: func(a *api, id string) {
				got := a.js("PUT", "/v2/executions/"+id, `{"state":"CANCELLED"}`, 200)
				if got["state"] != "CANCELLED" {
					a.t.Errorf("PUT CANCELLED answered %v", got["state"])
				}
			},
			want: []string{"WORKFLOW_LAUNCHED sleeper RUNNING", "TASK_LAUNCHED nap RUNNING", "WORKFLOW_CANCELLED sleeper CANCELLED"},
		},
		{
			name: "forced error",
			run: func(a *api, id string) {
				got := a.js("PUT", "/v2/executions/"+id, `{"state":"ERROR","state_info":"Forced"}`, 200)
				if got["state"] != "ERROR" || got["state_info"] != "Forced" {
					a.t.Errorf("PUT ERROR answered %v", got)
				}
			},
			want: []string{"WORKFLOW_LAUNCHED sleeper RUNNING", "TASK_LAUNCHED nap RUNNING", "WORKFLOW_FAILED sleeper ERROR"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAPI(t)
			var id string
			if tt.wf == "" {
				id = a.start("sleeper", `{"seconds": 0.2}`)
			} else {
				id = a.start(tt.wf, `{}`)
			}
			tt.run(a, id)
			a.wait(id)
			// Give a cancelled/stopped execution's pending action a chance to
			// (wrongly) report: wait for the sleep to have elapsed.
			a.waitActions(id)
			equal(t, trail(a.e, id), tt.want)
		})
	}
}

// waitTask polls until the named task of execution id reaches state.
func (a *api) waitTask(id, name, state string) {
	a.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, it := range a.js("GET", "/v2/executions/"+id+"/tasks?name="+name, "", 200)["tasks"].([]any) {
			if it.(map[string]any)["state"] == state {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.t.Fatalf("task %s of %s never reached %s", name, id, state)
}

// waitActions waits until the engine has no scheduled work left.
func (a *api) waitActions(string) {
	a.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		a.e.mu.Lock()
		n := len(a.e.queue)
		a.e.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.t.Fatal("scheduler never drained")
}

func TestDelete(t *testing.T) {
	a := newAPI(t)
	id := a.start("sleeper", `{"seconds": 5}`)
	st, b := a.raw("DELETE", "/v2/executions/"+id, "")
	if st != 403 || !strings.Contains(b, "Only completed executions can be deleted") {
		t.Errorf("DELETE running: %d %s", st, b)
	}
	a.js("DELETE", "/v2/executions/"+id+"?force=true", "", 204)
	a.js("GET", "/v2/executions/"+id, "", 404)
	done := a.start("seq3", "{}")
	a.wait(done)
	a.js("DELETE", "/v2/executions/"+done, "", 204)
}

func TestRerun(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []string
	}{
		{"fails again", `{}`, []string{
			"WORKFLOW_LAUNCHED rerunnable RUNNING", "TASK_LAUNCHED boom RUNNING", "TASK_FAILED boom ERROR", "WORKFLOW_FAILED rerunnable ERROR",
			"WORKFLOW_RERUN rerunnable RUNNING", "TASK_RERUN boom RUNNING", "TASK_FAILED boom ERROR", "WORKFLOW_FAILED rerunnable ERROR",
		}},
		{"succeeds with fail_until_rerun", `{"fail_until_rerun": true}`, []string{
			"WORKFLOW_LAUNCHED rerunnable RUNNING", "TASK_LAUNCHED boom RUNNING", "TASK_FAILED boom ERROR", "WORKFLOW_FAILED rerunnable ERROR",
			"WORKFLOW_RERUN rerunnable RUNNING", "TASK_RERUN boom RUNNING", "TASK_SUCCEEDED boom SUCCESS", "WORKFLOW_SUCCEEDED rerunnable SUCCESS",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAPI(t)
			id := a.start("rerunnable", tt.input)
			a.wait(id)
			tid := a.js("GET", "/v2/executions/"+id+"/tasks", "", 200)["tasks"].([]any)[0].(map[string]any)["id"].(string)
			for _, bad := range []string{`{"state":"RUNNING"}`, `{"state":"SUCCESS","reset":true}`} {
				if st, b := a.raw("PUT", "/v2/tasks/"+tid, bad); st != 400 {
					t.Errorf("PUT %s: %d %s", bad, st, b)
				}
			}
			got := a.js("PUT", "/v2/tasks/"+tid, `{"state":"RUNNING","reset":true}`, 200)
			if got["state"] != "RUNNING" || got["finished_at"] != nil {
				t.Errorf("rerun answered %v", got)
			}
			a.wait(id)
			equal(t, trail(a.e, id), tt.want)
			if tt.input != "{}" {
				if st, _ := a.raw("PUT", "/v2/tasks/"+tid, `{"state":"RUNNING","reset":true}`); st != 400 {
					t.Errorf("rerun of a SUCCESS task: %d", st)
				}
			}
		})
	}
}

func TestRerunSubWorkflowTask(t *testing.T) {
	a := newAPI(t)
	if st, b := a.raw("POST", "/v2/workflows", "version: '2.0'\nouter:\n  input: [fail_until_rerun]\n  tasks:\n    call:\n      workflow: inner2\n      input:\n        fail_until_rerun: <% $.fail_until_rerun %>\ninner2:\n  input: [fail_until_rerun]\n  tasks:\n    boom:\n      action: std.fail\n"); st != 201 {
		t.Fatalf("%d %s", st, b)
	}
	id := a.start("outer", `{"fail_until_rerun": true}`)
	a.wait(id)
	child := a.js("GET", "/v2/executions?root_execution_id="+id, "", 200)["executions"].([]any)[0].(map[string]any)["id"].(string)
	tid := a.js("GET", "/v2/executions/"+child+"/tasks", "", 200)["tasks"].([]any)[0].(map[string]any)["id"].(string)
	a.js("PUT", "/v2/tasks/"+tid, `{"state":"RUNNING","reset":true}`, 200)
	a.wait(id)
	equal(t, trail(a.e, id), []string{
		"WORKFLOW_LAUNCHED outer RUNNING", "TASK_LAUNCHED call RUNNING",
		"WORKFLOW_LAUNCHED inner2 RUNNING", "TASK_LAUNCHED boom RUNNING", "TASK_FAILED boom ERROR", "WORKFLOW_FAILED inner2 ERROR",
		"TASK_FAILED call ERROR", "WORKFLOW_FAILED outer ERROR",
		"WORKFLOW_RERUN outer RUNNING", "TASK_RERUN call RUNNING",
		"WORKFLOW_RERUN inner2 RUNNING", "TASK_RERUN boom RUNNING", "TASK_SUCCEEDED boom SUCCESS", "WORKFLOW_SUCCEEDED inner2 SUCCESS",
		"TASK_SUCCEEDED call SUCCESS", "WORKFLOW_SUCCEEDED outer SUCCESS",
	})
}

func TestPayloadsAndTimestamps(t *testing.T) {
	a := newAPI(t)
	id := a.start("seq3", "{}")
	a.wait(id)
	evs := a.e.NotifierEvents()
	first := evs[0].Payload
	wantKeys := []string{"id", "name", "workflow_name", "workflow_namespace", "workflow_id", "state", "state_info",
		"project_id", "task_execution_id", "root_execution_id", "created_at", "updated_at", "event"}
	if len(first) != len(wantKeys) {
		t.Errorf("execution payload keys = %v", first)
	}
	for _, k := range wantKeys {
		if _, ok := first[k]; !ok {
			t.Errorf("execution payload lacks %s", k)
		}
	}
	if first["event"] != "WORKFLOW_LAUNCHED" || first["updated_at"] != first["created_at"] {
		t.Errorf("launched payload = %v", first)
	}
	launched := evs[1].Payload
	if launched["type"] != "ACTION" || launched["workflow_execution_id"] != id || launched["updated_at"] != nil || launched["finished_at"] != nil || launched["started_at"] == nil {
		t.Errorf("task launched payload = %v", launched)
	}
	done := evs[2].Payload
	if done["updated_at"] == nil || done["finished_at"] == nil {
		t.Errorf("task succeeded payload = %v", done)
	}
	for _, ev := range evs {
		for _, k := range []string{"created_at", "updated_at", "started_at", "finished_at"} {
			if s, ok := ev.Payload[k].(string); ok {
				if _, err := time.Parse(timeFmt, s); err != nil {
					t.Errorf("%s = %q", k, s)
				}
			}
		}
	}
}

func TestSetDown(t *testing.T) {
	a := newAPI(t)
	a.e.SetDown(true)
	resp, err := http.Get(a.srv.URL + "/v2/executions")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("down engine answered %d", resp.StatusCode)
	}
	a.e.SetDown(false)
	a.js("GET", "/v2/executions", "", 200)
}

func TestConcurrentClients(t *testing.T) {
	a := newAPI(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				req, _ := http.NewRequest("POST", a.srv.URL+"/v2/executions", strings.NewReader(`{"workflow_name":"parent"}`))
				if i%2 == 0 {
					req, _ = http.NewRequest("GET", a.srv.URL+"/v2/tasks?limit=3", nil)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	for _, ex := range a.js("GET", "/v2/executions?root_execution_id=nin:x&workflow_name=parent", "", 200)["executions"].([]any) {
		a.wait(ex.(map[string]any)["id"].(string))
	}
}

func BenchmarkListExecutionsPage(b *testing.B) {
	e := New(Options{})
	defer e.Close()
	if err := e.DefineWorkflow(flows, ""); err != nil {
		b.Fatal(err)
	}
	for range 1000 {
		id, err := e.Start("seq3", nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := e.WaitDone(context.Background(), id); err != nil {
			b.Fatal(err)
		}
	}
	srv := httptest.NewServer(e)
	defer srv.Close()
	b.ResetTimer()
	for b.Loop() {
		resp, err := http.Get(srv.URL + "/v2/executions?limit=100&sort_keys=updated_at&updated_at=gte:2000-01-01%2000:00:00")
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func TestNullsSortLast(t *testing.T) {
	a := newAPI(t)
	done := a.start("seq3", "{}")
	a.wait(done)
	running := a.start("sleeper", `{"seconds": 5}`)
	defer a.js("PUT", "/v2/executions/"+running, `{"state":"CANCELLED"}`, 200)
	for _, tt := range []struct {
		dir      string
		nullLast bool
	}{{"asc", true}, {"desc", false}} {
		items := a.js("GET", "/v2/tasks?sort_keys=updated_at&sort_dirs="+tt.dir, "", 200)["tasks"].([]any)
		if len(items) != 4 {
			t.Fatalf("%d tasks", len(items))
		}
		idx := 0
		if tt.nullLast {
			idx = len(items) - 1
		}
		if it := items[idx].(map[string]any); it["updated_at"] != nil || it["name"] != "nap" {
			t.Errorf("%s: item %d = %v, want the running task with updated_at null", tt.dir, idx, it)
		}
	}
}
