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
	"sync"
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
	ops      string // host:port of the ops endpoints (metrics)
	stop     func() error
}

const testConfig = `
listen: 127.0.0.1:0
upstream: %s
state_dir: %s
ops:
  listen: %s
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

	h.ops = freeAddr(t)
	cfgPath := writeConfig(t, fmt.Sprintf(testConfig, es.URL, stateDir, h.ops, rs.URL, rs.URL))
	h.proxy, h.stop = runApp(t, cfgPath, false)
	return h
}

func (h *harness) do(method, path, ctype, body string) (int, []byte) {
	h.t.Helper()
	return h.doT(h.t, method, path, ctype, body)
}

// doT is do reporting failures on t (a parallel subtest's own).
func (h *harness) doT(t *testing.T, method, path, ctype, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, h.proxy+path, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (h *harness) startExec(t *testing.T, wf string, input string) string {
	t.Helper()
	if input == "" {
		input = "{}"
	}
	code, b := h.doT(t, "POST", "/v2/executions", "application/json", fmt.Sprintf(`{"workflow_name": %q, "input": %s}`, wf, input))
	if code != 201 {
		t.Fatalf("start %s: %d %s", wf, code, b)
	}
	var x struct{ ID string }
	json.Unmarshal(b, &x)
	return x.ID
}

func (h *harness) wait(t *testing.T, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.engine.WaitDone(ctx, id); err != nil {
		t.Fatalf("execution %s: %v", id, err)
	}
}

// waitEngine waits until the engine has sent notification ev for an entity
// of root's tree (at least n of them).
func (h *harness) waitEngine(t *testing.T, root, ev string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := h.engine.WaitEvents(ctx, func(evs []fakemistral.NotifierEvent) bool {
		c := 0
		for _, e := range evs {
			if e.RootExecutionID == root && e.Event == ev {
				c++
			}
		}
		return c >= n
	})
	if err != nil {
		t.Fatalf("engine never sent %s for %s: %v", ev, root, err)
	}
}

// waitDelivered waits until the "all" callback received ev for entity id.
func (h *harness) waitDelivered(t *testing.T, ev, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := h.all.WaitUntil(ctx, func(reqs []receiver.Request) bool {
		return slices.Contains(delivered(t, reqs), pair{ev, id})
	})
	if err != nil {
		t.Fatalf("%s for %s never delivered: %v", ev, id, err)
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

// delivered parses Mistral-format bodies into pairs, in arrival order. A
// repeated webhook-id is the same delivery sent again (at least once: an
// attempt whose answer came after its timeout is retried), which a
// receiver de-duplicates; it counts once.
func delivered(t *testing.T, reqs []receiver.Request) []pair {
	var out []pair
	seen := map[string]bool{}
	for _, r := range reqs {
		if id := r.Header.Get("Webhook-Id"); id != "" {
			if seen[id] {
				continue
			}
			seen[id] = true
		}
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

// quiesce waits until mistral-tap has nothing left to report about what the
// engine did before the call: the watcher completed three polls since (so
// every change was observed and handed on), and no delivery is pending. It
// reads both from the ops endpoint's metrics.
func (h *harness) quiesce(t *testing.T) {
	t.Helper()
	polls := metric(t, h.ops, "mistral_tap_watch_polls_total") + 3
	waitMetrics(t, h.ops, func(m func(string) float64) bool {
		return m("mistral_tap_watch_polls_total") >= polls && m("mistral_tap_delivery_queue_pending") == 0
	})
}

// waitMetrics re-reads the metrics at ops every 20 ms until cond holds for
// them (m sums the samples of a name, or of one labelled series).
func waitMetrics(t *testing.T, ops string, cond func(m func(string) float64) bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for !cond(func(name string) float64 { return metric(t, ops, name) }) {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatal("metrics never reached the expected state")
		}
	}
}

// metric sums every sample of the named metric (or, with a label set in
// the name, of that series) on the ops endpoint at ops.
// reloadCounter returns a wait for one more reload with result ("success"
// or "failure") than now. It first waits for the reloader's own initial
// load, which Run performs (and counts as a success) asynchronously after
// the proxy is already serving: counted from before it, that load would
// pass for the reload under test.
func reloadCounter(t *testing.T, ops, result string) func() {
	t.Helper()
	initial := `mistral_tap_config_reloads_total{result="success"}`
	waitMetrics(t, ops, func(m func(string) float64) bool { return m(initial) >= 1 })
	series := `mistral_tap_config_reloads_total{result="` + result + `"}`
	n := metric(t, ops, series) + 1
	return func() {
		t.Helper()
		waitMetrics(t, ops, func(m func(string) float64) bool { return m(series) >= n })
	}
}

func metric(t *testing.T, ops, name string) float64 {
	t.Helper()
	_, body := get(t, "http://"+ops+"/metrics")
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
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

// TestScenariosMatchGroundTruth runs the scenarios in parallel through the
// proxy and checks that the "all" callback received exactly the events the
// fake engine's notifier would have sent for each execution tree, in causal
// order per entity; once mistral-tap is idle, that nothing beyond the
// ground truth arrived, and that the filtered callback received exactly its
// subset.
func TestScenariosMatchGroundTruth(t *testing.T) {
	t.Parallel() // own engine, receivers, ports and state dir
	eng := fakemistral.New(fakemistral.Options{})
	defer eng.Close()
	h := start(t, eng, t.TempDir())
	if code, b := h.do("POST", "/v2/workflows", "text/plain", workflows); code != 201 {
		t.Fatalf("defining workflows: %d %s", code, b)
	}
	// runOnce starts wf and waits for it to finish.
	runOnce := func(wf, input string) func(*testing.T) string {
		return func(t *testing.T) string { id := h.startExec(t, wf, input); h.wait(t, id); return id }
	}
	// interrupt starts t_sleep, waits until its task runs, then PUTs state.
	interrupt := func(state string) func(*testing.T) string {
		return func(t *testing.T) string {
			id := h.startExec(t, "t_sleep", "")
			h.waitEngine(t, id, "TASK_LAUNCHED", 1)
			h.doT(t, "PUT", "/v2/executions/"+id, "application/json", state)
			h.wait(t, id)
			return id
		}
	}
	scenarios := []struct {
		name string
		run  func(*testing.T) string // returns the root execution id
	}{
		{"success", runOnce("t_success", "")},
		{"failure", runOnce("t_fail", "")},
		{"on-error", runOnce("t_onerror", "")},
		{"retry", runOnce("t_retry", "")},
		{"wait-before", runOnce("t_wait", "")},
		{"sub-workflows", runOnce("t_parent", "")},
		{"pause-resume", func(t *testing.T) string {
			id := h.startExec(t, "t_sleep", "")
			h.waitEngine(t, id, "TASK_LAUNCHED", 1)
			h.doT(t, "PUT", "/v2/executions/"+id, "application/json", `{"state": "PAUSED"}`)
			h.waitDelivered(t, "WORKFLOW_PAUSED", id)
			h.doT(t, "PUT", "/v2/executions/"+id, "application/json", `{"state": "RUNNING"}`)
			h.wait(t, id)
			return id
		}},
		{"cancel", interrupt(`{"state": "CANCELLED"}`)},
		{"forced-error", interrupt(`{"state": "ERROR", "state_info": "Forced"}`)},
		{"started-by-another-client", func(t *testing.T) string {
			id, err := eng.Start("t_success", nil, nil) // never passes through the proxy
			if err != nil {
				t.Fatal(err)
			}
			h.wait(t, id)
			return id
		}},
		{"rerun", func(t *testing.T) string {
			id := h.startExec(t, "t_rerun", `{"fail_until_rerun": true}`)
			h.wait(t, id)
			h.waitDelivered(t, "WORKFLOW_FAILED", id) // mistral-tap saw the failure first
			_, b := h.doT(t, "GET", "/v2/executions/"+id+"/tasks", "", "")
			var tl struct{ Tasks []struct{ ID string } }
			json.Unmarshal(b, &tl)
			if len(tl.Tasks) != 1 {
				t.Fatalf("tasks of rerun scenario: %s", b)
			}
			if code, b := h.doT(t, "PUT", "/v2/tasks/"+tl.Tasks[0].ID, "application/json", `{"state": "RUNNING", "reset": true}`); code != 200 {
				t.Fatalf("rerun: %d %s", code, b)
			}
			h.waitEngine(t, id, "WORKFLOW_SUCCEEDED", 1)
			h.wait(t, id)
			return id
		}},
	}

	// The scenarios run at once, each in its own goroutine: they mostly
	// wait on the engine, so t.Parallel's limit of GOMAXPROCS subtests at a
	// time would only serialise the waiting.
	var wg sync.WaitGroup
	for _, sc := range scenarios {
		wg.Go(func() {
			t.Run(sc.name, func(t *testing.T) {
				root := sc.run(t)
				want := truth(eng, map[string]bool{root: true})
				got := waitTree(t, h.all, want)
				if !slices.Equal(multiset(got), multiset(want)) {
					t.Errorf("delivered events differ from Mistral's\n got  %v\n want %v", got, want)
				}
				t.Logf("PARITY scenario=%s expected=%d delivered=%d", sc.name, len(want), len(got))
				checkCausal(t, got, want)
			})
		})
	}
	wg.Wait()

	// Nothing beyond the ground truth arrived, now that mistral-tap has
	// seen everything there is to see.
	h.quiesce(t)
	var wantAll []pair
	for _, ev := range eng.NotifierEvents() {
		if ev.Event != "" {
			wantAll = append(wantAll, pair{ev.Event, ev.EntityID})
		}
	}
	if got := delivered(t, h.all.Requests()); !slices.Equal(multiset(got), multiset(wantAll)) {
		t.Errorf("all deliveries differ from the ground truth\n got  %v\n want %v", got, wantAll)
	}

	// The filtered callback got exactly the ground truth's subset: workflow
	// glob t_*, terminal execution events and TASK_FAILED.
	var wantF []string
	for _, ev := range eng.NotifierEvents() {
		wf, _ := ev.Payload["workflow_name"].(string)
		if !strings.HasPrefix(wf, "t_") {
			continue
		}
		if ev.Event == "WORKFLOW_SUCCEEDED" || ev.Event == "WORKFLOW_FAILED" || ev.Event == "WORKFLOW_CANCELLED" || ev.Event == "TASK_FAILED" {
			wantF = append(wantF, ev.Event+" "+ev.EntityID)
		}
	}
	var gotF []string
	for _, r := range h.failures.Requests() {
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

// waitTree waits until r received as many events for the entities of want
// as want holds, and returns those, in arrival order.
func waitTree(t *testing.T, r *receiver.Receiver, want []pair) []pair {
	t.Helper()
	ids := map[string]bool{}
	for _, p := range want {
		ids[p.id] = true
	}
	ofTree := func(reqs []receiver.Request) []pair {
		var out []pair
		for _, p := range delivered(t, reqs) {
			if ids[p.id] {
				out = append(out, p)
			}
		}
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reqs, err := r.WaitUntil(ctx, func(reqs []receiver.Request) bool { return len(ofTree(reqs)) >= len(want) })
	if err != nil {
		t.Errorf("waiting for %d deliveries: %v (got %d)", len(want), err, len(ofTree(reqs)))
	}
	return ofTree(reqs)
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
