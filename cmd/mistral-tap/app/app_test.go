package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/testenv/fakemistral"
	"github.com/mistral-tap/mistral-tap/testenv/receiver"
)

// harness is mistral-tap running in-process in front of a fake engine,
// with two receivers: "all" (every event, Mistral's format) and "failures"
// (a filtered callback, envelope format).
type harness struct {
	t        *testing.T
	engine   *fakemistral.Engine
	engURL   string
	proxy    string
	all      *receiver.Receiver
	failures *receiver.Receiver
	stop     func() error
}

const testConfig = `
listen: 127.0.0.1:0
upstream: %s
state_dir: %s
watch:
  interval: 100ms
delivery:
  allow_networks: ["127.0.0.0/8"]
  retry_wait_min: 10ms
  retry_wait_max: 50ms
callbacks:
  - name: all
    events: ["*"]
    url: %s/all
  - name: failures
    events: [on-execution-complete, TASK_FAILED]
    workflow: "t_*"
    url: %s/failures
    format: envelope
`

func start(t *testing.T, eng *fakemistral.Engine, stateDir string) *harness {
	t.Helper()
	h := &harness{t: t, engine: eng, all: receiver.New(), failures: receiver.New()}
	es := httptest.NewServer(eng)
	t.Cleanup(es.Close)
	h.engURL = es.URL
	mux := http.NewServeMux()
	mux.Handle("/all", h.all)
	mux.Handle("/failures", h.failures)
	rs := httptest.NewServer(mux)
	t.Cleanup(rs.Close)

	cfgPath := writeConfig(t, fmt.Sprintf(testConfig, es.URL, stateDir, rs.URL, rs.URL))
	h.proxy, h.stop = runApp(t, cfgPath, false)
	return h
}

func (h *harness) do(method, path, ctype, body string) (int, []byte) {
	h.t.Helper()
	req, _ := http.NewRequest(method, h.proxy+path, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (h *harness) startExec(wf string, input string) string {
	h.t.Helper()
	if input == "" {
		input = "{}"
	}
	code, b := h.do("POST", "/v2/executions", "application/json", fmt.Sprintf(`{"workflow_name": %q, "input": %s}`, wf, input))
	if code != 201 {
		h.t.Fatalf("start %s: %d %s", wf, code, b)
	}
	var x struct{ ID string }
	json.Unmarshal(b, &x)
	return x.ID
}

func (h *harness) wait(id string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.engine.WaitDone(ctx, id); err != nil {
		h.t.Fatalf("execution %s: %v", id, err)
	}
}

// pair is an (event type, entity id) as compared between ground truth and
// deliveries.
type pair struct{ event, id string }

func (p pair) String() string { return p.event + " " + p.id[:8] }

// truth is what Mistral's notifier would have sent for these roots.
func truth(e *fakemistral.Engine, roots map[string]bool) []pair {
	var out []pair
	for _, ev := range e.NotifierEvents() {
		if ev.Event == "" || !roots[ev.RootExecutionID] {
			continue
		}
		out = append(out, pair{ev.Event, ev.EntityID})
	}
	return out
}

// delivered parses Mistral-format bodies into pairs, in arrival order.
func delivered(t *testing.T, reqs []receiver.Request) []pair {
	var out []pair
	for _, r := range reqs {
		var b struct {
			Event string `json:"event"`
			ID    string `json:"id"`
		}
		if err := json.Unmarshal(r.Body, &b); err != nil {
			t.Fatalf("body %q: %v", r.Body, err)
		}
		out = append(out, pair{b.Event, b.ID})
	}
	return out
}

func multiset(ps []pair) []string {
	var s []string
	for _, p := range ps {
		s = append(s, p.event+" "+p.id)
	}
	sort.Strings(s)
	return s
}

// waitCount waits until r got at least n requests and then stays quiet
// briefly, so extra deliveries would show up.
func waitCount(t *testing.T, r *receiver.Receiver, n int) []receiver.Request {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := r.WaitFor(ctx, n); err != nil {
		t.Errorf("waiting for %d deliveries: %v (got %d)", n, err, len(r.Requests()))
	}
	time.Sleep(400 * time.Millisecond) // settle: see whether anything extra arrives
	return r.Requests()
}

const workflows = `version: '2.0'
t_success:
  tasks:
    a:
      action: std.noop
      on-success: [b]
    b:
      action: std.echo output="x"
      on-success: [c]
    c:
      action: std.noop
t_fail:
  tasks:
    a:
      action: std.fail
t_onerror:
  tasks:
    a:
      action: std.fail
      on-error: [handle]
    handle:
      action: std.noop
t_retry:
  tasks:
    a:
      action: std.fail
      retry:
        count: 2
        delay: 0.3
t_wait:
  tasks:
    a:
      action: std.noop
      wait-before: 0.5
t_parent:
  tasks:
    call:
      workflow: t_child
t_child:
  tasks:
    inner:
      workflow: t_leaf
t_leaf:
  tasks:
    x:
      action: std.noop
t_sleep:
  tasks:
    s:
      action: std.sleep seconds=1
t_rerun:
  input: [fail_until_rerun]
  tasks:
    a:
      action: std.fail
`

// TestScenariosMatchGroundTruth runs each scenario through the proxy and
// checks that the "all" callback received exactly the events the fake
// engine's notifier would have sent, in causal order per execution, and
// that the filtered callback received exactly its subset.
func TestScenariosMatchGroundTruth(t *testing.T) {
	eng := fakemistral.New(fakemistral.Options{})
	defer eng.Close()
	h := start(t, eng, t.TempDir())
	if code, b := h.do("POST", "/v2/workflows", "text/plain", workflows); code != 201 {
		t.Fatalf("defining workflows: %d %s", code, b)
	}

	scenarios := []struct {
		name string
		run  func() string // returns the root execution id
	}{
		{"success", func() string { id := h.startExec("t_success", ""); h.wait(id); return id }},
		{"failure", func() string { id := h.startExec("t_fail", ""); h.wait(id); return id }},
		{"on-error", func() string { id := h.startExec("t_onerror", ""); h.wait(id); return id }},
		{"retry", func() string { id := h.startExec("t_retry", ""); h.wait(id); return id }},
		{"wait-before", func() string { id := h.startExec("t_wait", ""); h.wait(id); return id }},
		{"sub-workflows", func() string { id := h.startExec("t_parent", ""); h.wait(id); return id }},
		{"pause-resume", func() string {
			id := h.startExec("t_sleep", "")
			time.Sleep(200 * time.Millisecond)
			h.do("PUT", "/v2/executions/"+id, "application/json", `{"state": "PAUSED"}`)
			time.Sleep(300 * time.Millisecond)
			h.do("PUT", "/v2/executions/"+id, "application/json", `{"state": "RUNNING"}`)
			h.wait(id)
			return id
		}},
		{"cancel", func() string {
			id := h.startExec("t_sleep", "")
			time.Sleep(200 * time.Millisecond)
			h.do("PUT", "/v2/executions/"+id, "application/json", `{"state": "CANCELLED"}`)
			h.wait(id)
			return id
		}},
		{"forced-error", func() string {
			id := h.startExec("t_sleep", "")
			time.Sleep(200 * time.Millisecond)
			h.do("PUT", "/v2/executions/"+id, "application/json", `{"state": "ERROR", "state_info": "Forced"}`)
			h.wait(id)
			return id
		}},
		{"started-by-another-client", func() string {
			id, err := eng.Start("t_success", nil, nil) // never passes through the proxy
			if err != nil {
				t.Fatal(err)
			}
			h.wait(id)
			return id
		}},
		{"rerun", func() string {
			id := h.startExec("t_rerun", `{"fail_until_rerun": true}`)
			h.wait(id)
			time.Sleep(300 * time.Millisecond) // let the watcher see the failure first
			_, b := h.do("GET", "/v2/executions/"+id+"/tasks", "", "")
			var tl struct{ Tasks []struct{ ID string } }
			json.Unmarshal(b, &tl)
			if len(tl.Tasks) != 1 {
				t.Fatalf("tasks of rerun scenario: %s", b)
			}
			if code, b := h.do("PUT", "/v2/tasks/"+tl.Tasks[0].ID, "application/json", `{"state": "RUNNING", "reset": true}`); code != 200 {
				t.Fatalf("rerun: %d %s", code, b)
			}
			time.Sleep(100 * time.Millisecond)
			h.wait(id)
			return id
		}},
	}

	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			before := len(h.all.Requests())
			root := sc.run()
			roots := map[string]bool{root: true}
			want := truth(eng, roots)
			reqs := waitCount(t, h.all, before+len(want))
			var got []pair
			for _, p := range delivered(t, reqs[before:]) {
				got = append(got, p)
			}
			if !slices.Equal(multiset(got), multiset(want)) {
				t.Errorf("delivered events differ from Mistral's\n got  %v\n want %v", got, want)
			}
			t.Logf("PARITY scenario=%s expected=%d delivered=%d", sc.name, len(want), len(got))
			checkCausal(t, got, want)
		})
	}

	// The filtered callback got exactly the ground truth's subset: workflow
	// glob t_*, terminal execution events and TASK_FAILED.
	var all []receiver.Request = h.all.Requests()
	ids := map[string]bool{}
	for _, p := range delivered(t, all) {
		ids[p.id] = true
	}
	var wantF []string
	for _, ev := range eng.NotifierEvents() {
		if ev.Event == "" {
			continue
		}
		wf, _ := ev.Payload["workflow_name"].(string)
		if !strings.HasPrefix(wf, "t_") {
			continue
		}
		if ev.Event == "WORKFLOW_SUCCEEDED" || ev.Event == "WORKFLOW_FAILED" || ev.Event == "WORKFLOW_CANCELLED" || ev.Event == "TASK_FAILED" {
			wantF = append(wantF, ev.Event+" "+ev.EntityID)
		}
	}
	reqs := waitCount(t, h.failures, len(wantF))
	var gotF []string
	for _, r := range reqs {
		var env struct {
			Type      string
			Execution *struct{ ID string }
			Task      *struct{ ID string }
		}
		if err := json.Unmarshal(r.Body, &env); err != nil {
			t.Fatal(err)
		}
		id := ""
		if env.Execution != nil {
			id = env.Execution.ID
		} else if env.Task != nil {
			id = env.Task.ID
		}
		gotF = append(gotF, env.Type+" "+id)
	}
	sort.Strings(gotF)
	sort.Strings(wantF)
	if !slices.Equal(gotF, wantF) {
		t.Errorf("filtered callback:\n got  %v\n want %v", gotF, wantF)
	}
}

// checkCausal verifies, per entity, that the delivered events appear in the
// same relative order as Mistral's own (which, in the fake, is causal), and
// that an execution's terminal event comes after all its tasks' events.
func checkCausal(t *testing.T, got, want []pair) {
	t.Helper()
	perEntity := func(ps []pair) map[string][]string {
		m := map[string][]string{}
		for _, p := range ps {
			m[p.id] = append(m[p.id], p.event)
		}
		return m
	}
	g, w := perEntity(got), perEntity(want)
	for id, evs := range w {
		if !slices.Equal(g[id], evs) {
			t.Errorf("entity %s: order %v, want %v", id[:8], g[id], evs)
		}
	}
}
