package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/testenv/receiver"
)

// workflows used by the scenarios; one document, defined once per run.
const workflowsDSL = `---
version: '2.0'
e2e_success:
  tasks:
    a:
      action: std.noop
      on-success: b
    b:
      action: std.echo output=1
      on-success: c
    c:
      action: std.noop
e2e_fail:
  tasks:
    a:
      action: std.fail
e2e_onerror:
  tasks:
    a:
      action: std.fail
      on-error: handle
    handle:
      action: std.noop
e2e_retry:
  tasks:
    a:
      action: std.fail
      retry:
        count: 2
        delay: 1
e2e_wait:
  tasks:
    a:
      action: std.noop
      wait-before: 1
      on-success: b
    b:
      action: std.noop
      wait-after: 1
e2e_items:
  tasks:
    a:
      with-items: x in <% [1, 2, 3] %>
      action: std.echo output=<% $.x %>
e2e_join:
  tasks:
    a:
      action: std.noop
      on-success: c
    b:
      action: std.sleep seconds=1
      on-success: c
    c:
      join: all
      action: std.noop
e2e_l1:
  tasks:
    a:
      workflow: e2e_l2
e2e_l2:
  tasks:
    a:
      workflow: e2e_l3
    b:
      action: std.noop
e2e_l3:
  tasks:
    a:
      action: std.noop
e2e_sleep:
  input:
    - secs: 2
  tasks:
    a:
      action: std.sleep seconds=<% $.secs %>
      on-success: b
    b:
      action: std.noop
e_e2e_chain:
  tasks:
    a:
      action: std.sleep seconds=2
      on-success: b
    b:
      action: std.sleep seconds=2
      on-success: c
    c:
      action: std.noop
e2e_rerun:
  tasks:
    a:
      # Fails until the rerun supplies env {"ok": {"v": 1}}: attribute
      # access on null is a YAQL error.
      action: std.echo output=<% env().ok.v %>
e2e_reverse:
  type: reverse
  tasks:
    a:
      action: std.noop
    b:
      action: std.noop
      requires: [a]
    c:
      action: std.noop
      requires: [b]
`

// workbookDSL has a dot in its name: its workflows are "e2e.wb.main" and
// "e2e.wb.sub".
const workbookDSL = `---
version: '2.0'
name: e2e.wb
workflows:
  main:
    tasks:
      a:
        workflow: sub
      b:
        action: std.noop
  sub:
    tasks:
      a:
        action: std.noop
`

// sc is one running scenario.
type sc struct {
	t     *testing.T
	e     *env
	name  string
	ctx   context.Context
	roots []string
	order OrderOptions
}

func (s *sc) notifyParams(extra map[string]any) map[string]any {
	p := map[string]any{"notify": []map[string]any{{"type": "webhook", "url": s.e.mistralURL + "/mistral/" + s.name}}}
	for k, v := range extra {
		p[k] = v
	}
	return p
}

// start starts wf through c with Mistral's notifier pointed at this
// scenario's ground-truth receiver.
func (s *sc) start(c *Client, wf string, input, params map[string]any) Execution {
	s.t.Helper()
	ex, err := c.StartExecution(s.ctx, wf, input, s.notifyParams(params))
	if err != nil {
		s.t.Fatalf("start %s: %v", wf, err)
	}
	s.roots = append(s.roots, ex.ID)
	return ex
}

func (s *sc) wait(id string, states ...string) Execution {
	s.t.Helper()
	ex, err := s.e.direct.WaitExecution(s.ctx, id, states...)
	if err != nil {
		s.t.Fatal(err)
	}
	return ex
}

func (s *sc) waitTask(execID, name, state string) Task {
	s.t.Helper()
	tk, err := s.e.direct.WaitTask(s.ctx, execID, name, state)
	if err != nil {
		s.t.Fatal(err)
	}
	return tk
}

func (s *sc) must(err error) {
	s.t.Helper()
	if err != nil {
		s.t.Fatal(err)
	}
}

type scenario struct {
	name string
	run  func(s *sc)
}

// simple starts wf through the proxy and waits for one of the terminal states.
func simple(wf string, want string, params map[string]any) func(s *sc) {
	return func(s *sc) {
		ex := s.start(s.e.api, wf, nil, params)
		if got := s.wait(ex.ID, Terminal...); got.State != want {
			s.t.Errorf("%s ended %s, want %s (%v)", wf, got.State, want, deref(got.StateInfo))
		}
	}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

var scenarios = []scenario{
	{"success", simple("e2e_success", "SUCCESS", nil)},
	{"failure", simple("e2e_fail", "ERROR", nil)},
	{"on-error", simple("e2e_onerror", "SUCCESS", nil)},
	{"retry", simple("e2e_retry", "ERROR", nil)},
	{"wait-before-after", simple("e2e_wait", "SUCCESS", nil)},
	{"with-items", simple("e2e_items", "SUCCESS", nil)},
	{"join", simple("e2e_join", "SUCCESS", nil)},
	{"sub-workflows", simple("e2e_l1", "SUCCESS", nil)},
	{"workbook", simple("e2e.wb.main", "SUCCESS", nil)},
	{"reverse", simple("e2e_reverse", "SUCCESS", map[string]any{"task_name": "c"})},
	{"pause-resume", func(s *sc) {
		ex := s.start(s.e.api, "e2e_sleep", map[string]any{"secs": 2}, nil)
		s.waitTask(ex.ID, "a", "RUNNING")
		s.must(s.e.api.SetExecutionState(s.ctx, ex.ID, "PAUSED", ""))
		s.wait(ex.ID, "PAUSED")
		s.must(s.e.api.SetExecutionState(s.ctx, ex.ID, "RUNNING", ""))
		if got := s.wait(ex.ID, Terminal...); got.State != "SUCCESS" {
			s.t.Errorf("ended %s, want SUCCESS", got.State)
		}
	}},
	{"cancel", func(s *sc) {
		s.order.LateTasks = true
		ex := s.start(s.e.api, "e2e_sleep", map[string]any{"secs": 2}, nil)
		s.waitTask(ex.ID, "a", "RUNNING")
		s.must(s.e.api.SetExecutionState(s.ctx, ex.ID, "CANCELLED", ""))
		s.wait(ex.ID, "CANCELLED")
		// The sleeping task still finishes on its own; let it, so that
		// whatever Mistral sends for it lands inside the settle window.
		s.waitTask(ex.ID, "a", "SUCCESS")
	}},
	{"forced-error-success", func(s *sc) {
		s.order.LateTasks = true
		ex1 := s.start(s.e.api, "e2e_sleep", map[string]any{"secs": 2}, nil)
		ex2 := s.start(s.e.api, "e2e_sleep", map[string]any{"secs": 2}, nil)
		s.waitTask(ex1.ID, "a", "RUNNING")
		s.waitTask(ex2.ID, "a", "RUNNING")
		s.must(s.e.api.SetExecutionState(s.ctx, ex1.ID, "ERROR", "Forced"))
		s.must(s.e.api.SetExecutionState(s.ctx, ex2.ID, "SUCCESS", "Forced"))
		s.wait(ex1.ID, "ERROR")
		s.wait(ex2.ID, "SUCCESS")
		s.waitTask(ex1.ID, "a", "SUCCESS")
		s.waitTask(ex2.ID, "a", "SUCCESS")
	}},
	{"task-rerun", func(s *sc) {
		ex := s.start(s.e.api, "e2e_rerun", nil, nil)
		s.wait(ex.ID, "ERROR")
		tk := s.waitTask(ex.ID, "a", "ERROR")
		s.must(s.e.api.RerunTask(s.ctx, tk.ID, map[string]any{"ok": map[string]any{"v": 1}}))
		if got := s.wait(ex.ID, Terminal...); got.State != "SUCCESS" {
			s.t.Logf("rerun ended %s (%s)", got.State, deref(got.StateInfo))
		}
	}},
	{"task-rerun-direct-fails-again", func(s *sc) {
		// Another client reruns the task straight on Mistral (no proxy)
		// and it fails again: only the watcher can see it, as ERROR then
		// ERROR, told apart by the task's new started_at.
		ex := s.start(s.e.api, "e2e_rerun", nil, nil)
		s.wait(ex.ID, "ERROR")
		tk := s.waitTask(ex.ID, "a", "ERROR")
		time.Sleep(1500 * time.Millisecond) // let the watcher record the first failure
		s.must(s.e.direct.RerunTask(s.ctx, tk.ID, nil))
		time.Sleep(500 * time.Millisecond)
		s.wait(ex.ID, "ERROR")
	}},
	{"direct-watcher-only", func(s *sc) {
		ex := s.start(s.e.direct, "e2e_success", nil, nil)
		s.wait(ex.ID, Terminal...)
	}},
	{"tap-restart", func(s *sc) {
		if noTap {
			simple("e_e2e_chain", "SUCCESS", nil)(s)
			return
		}
		ex := s.start(s.e.api, "e_e2e_chain", nil, nil)
		s.waitTask(ex.ID, "a", "RUNNING")
		s.e.stopTap()
		// Transitions happen while mistral-tap is down.
		s.waitTask(ex.ID, "b", "RUNNING")
		s.e.startTap()
		s.e.api = NewClient(s.e.tap.URL)
		s.wait(ex.ID, Terminal...)
	}},
	{"cli", func(s *sc) {
		params, _ := json.Marshal(s.notifyParams(nil))
		out := runCLI(s.t, s.e.api.Base, "execution-create", "-f", "json", "e2e_success", "{}", string(params))
		var created struct {
			ID string `json:"ID"`
		}
		if err := json.Unmarshal(out, &created); err != nil || created.ID == "" {
			s.t.Fatalf("execution-create output %q: %v", out, err)
		}
		s.roots = append(s.roots, created.ID)
		s.wait(created.ID, Terminal...)
	}},
}

// runCLI runs the mistral CLI against api (an API root) and returns stdout.
func runCLI(t *testing.T, api string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("mistral"); err != nil {
		t.Skip("mistral CLI not installed (python3-mistralclient)")
	}
	cmd := exec.Command("mistral", append([]string{"--os-mistral-url", api + "/v2"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mistral %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func TestScenarios(t *testing.T) {
	e := newEnv(t)
	ctx := ctxFor(t, time.Minute)
	if err := e.api.DefineWorkflows(ctx, workflowsDSL); err != nil {
		t.Fatal(err)
	}
	if err := e.api.DefineWorkbook(ctx, workbookDSL); err != nil {
		t.Fatal(err)
	}
	only := os.Getenv("MISTRAL_E2E_ONLY") // comma-separated scenario names
	for _, scn := range scenarios {
		if only != "" && !contains(strings.Split(only, ","), scn.name) {
			continue
		}
		t.Run(scn.name, func(t *testing.T) {
			e.t = t
			defer func() { e.t = nil }()
			s := &sc{t: t, e: e, name: scn.name, ctx: ctxFor(t, 2*time.Minute)}
			scn.run(s)
			if len(s.roots) > 0 {
				e.check(s)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// tree returns the scenario's executions: its roots and their descendants.
func (e *env) tree(s *sc) map[string]bool {
	tree := map[string]bool{}
	for _, r := range s.roots {
		tree[r] = true
		subs, err := e.direct.Descendants(s.ctx, r)
		if err != nil {
			s.t.Fatal(err)
		}
		for _, x := range subs {
			tree[x.ID] = true
		}
	}
	return tree
}

func byPath(reqs []receiver.Request, path string) []receiver.Request {
	var out []receiver.Request
	for _, r := range reqs {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// observed is one snapshot of the three receivers, limited to the scenario.
type observed struct {
	truth     []Notification // Mistral's notifier, including event null
	delivered []Notification // mistral-tap, format mistral
	envelopes []Notification // mistral-tap, format envelope
}

func (e *env) snapshot(s *sc, tree map[string]bool) observed {
	parse := func(reqs []receiver.Request, f func(receiver.Request) (Notification, error)) []Notification {
		ns, errs := Parse(reqs, f)
		for _, err := range errs {
			s.t.Errorf("undecodable delivery: %v", err)
		}
		return ns
	}
	var o observed
	o.truth = InTree(parse(byPath(e.mistral.Requests(), "/mistral/"+s.name), ParseMistral), tree, true)
	if !noTap {
		o.delivered = InTree(parse(e.tapHook.Requests(), ParseMistral), tree, false)
		o.envelopes = InTree(parse(e.tapEnv.Requests(), ParseEnvelope), tree, false)
	}
	return o
}

func withoutNull(ns []Notification) []Notification { return InTree(ns, allOf(ns), false) }

func allOf(ns []Notification) map[string]bool {
	m := map[string]bool{}
	for _, n := range ns {
		m[n.ExecutionID] = true
	}
	return m
}

// check waits (at most 10 s) for Mistral's notifier and mistral-tap to
// settle, then prints the ground truth and the PARITY line and asserts
// parity and causal order.
func (e *env) check(s *sc) {
	t := s.t
	tree := e.tree(s)
	deadline := time.Now().Add(10 * time.Second)
	const quiet = 1500 * time.Millisecond
	var o observed
	lastCounts, stableSince := [3]int{-1}, time.Now()
	for {
		o = e.snapshot(s, tree)
		counts := [3]int{len(o.truth), len(o.delivered), len(o.envelopes)}
		if counts != lastCounts {
			lastCounts, stableSince = counts, time.Now()
			// A late sub-workflow may have appeared.
			tree = e.tree(s)
		}
		done := time.Since(stableSince) >= quiet && len(o.truth) > 0
		if done && !noTap {
			done = len(Compare(withoutNull(o.truth), o.delivered, o.envelopes).Missing) == 0
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	report(t, "MISTRAL scenario=%s roots=%d events=%d: %s", s.name, len(s.roots), len(o.truth), Sequence(o.truth))
	if len(o.truth) == 0 {
		t.Errorf("Mistral's own notifier sent nothing for %s", s.name)
	}
	if noTap {
		report(t, "PARITY scenario=%s skipped (MISTRAL_E2E_NO_TAP=1)", s.name)
		return
	}
	envSorted := append([]Notification(nil), o.envelopes...)
	sort.SliceStable(envSorted, func(i, j int) bool {
		if envSorted[i].Root != envSorted[j].Root {
			return envSorted[i].Root < envSorted[j].Root
		}
		return envSorted[i].Sequence < envSorted[j].Sequence
	})
	report(t, "TAP     scenario=%s events=%d: %s", s.name, len(envSorted), Sequence(envSorted))
	p := Compare(withoutNull(o.truth), o.delivered, o.envelopes)
	report(t, "%s", p.Line(s.name))
	if len(p.Missing) > 0 {
		t.Errorf("missing from mistral-tap: %v", p.Missing)
	}
	if len(p.ExtraNotInferred) > 0 {
		t.Errorf("extra events not marked inferred: %v", p.ExtraNotInferred)
	}
	if len(o.envelopes) != len(o.delivered) {
		t.Errorf("envelope callback got %d events, mistral-format callback %d", len(o.envelopes), len(o.delivered))
	}
	for _, problem := range CheckOrder(o.envelopes, s.order) {
		t.Errorf("order: %s", problem)
	}
	if t.Failed() {
		// Which source and which moment each event came from is what tells
		// a race apart from a derivation bug.
		for _, n := range envSorted {
			t.Logf("  tap #%d %s %s state=%s source=%s inferred=%t started=%s finished=%s at=%s",
				n.Sequence, n.Event, n.Name, n.State, n.Source, n.Inferred, n.StartedAt, n.FinishedAt, n.At.Format("15:04:05.000"))
		}
	}
	if t.Failed() && e.tap != nil {
		t.Logf("mistral-tap log tail:\n%s", Tail(e.tap.Log, 40))
	}
}

// report logs a line and also prints it to stdout, so that the suite's
// summary survives without -v.
func report(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	fmt.Println(line)
}

// TestCLIWorkflowCreate defines and runs a workflow with the mistral CLI
// through the proxy, checking that the CLI's own requests pass unchanged.
func TestCLIWorkflowCreate(t *testing.T) {
	e := newEnv(t)
	f := filepath.Join(t.TempDir(), "wf.yaml")
	dsl := "---\nversion: '2.0'\ne2e_cli:\n  tasks:\n    a:\n      action: std.noop\n"
	if err := os.WriteFile(f, []byte(dsl), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, time.Minute)
	if _, _, err := e.direct.Do(ctx, "DELETE", "/v2/workflows/e2e_cli", nil, ""); err != nil && !isStatus(err, 404) {
		t.Logf("cleanup of e2e_cli: %v", err)
	}
	out := runCLI(t, e.api.Base, "workflow-create", "-f", "json", f)
	if !strings.Contains(string(out), "e2e_cli") {
		t.Fatalf("workflow-create output: %s", out)
	}
	s := &sc{t: t, e: e, name: "cli-workflow-create", ctx: ctx}
	params, _ := json.Marshal(s.notifyParams(nil))
	out = runCLI(t, e.api.Base, "execution-create", "-f", "json", "e2e_cli", "{}", string(params))
	var created struct {
		ID string `json:"ID"`
	}
	if err := json.Unmarshal(out, &created); err != nil {
		t.Fatalf("execution-create output %q: %v", out, err)
	}
	s.roots = []string{created.ID}
	s.wait(created.ID, Terminal...)
	e.check(s)
}

// TestTransparency compares GETs the CLI makes, through the proxy and
// directly: status, Content-Type and body (the host in `next` links
// normalised).
func TestTransparency(t *testing.T) {
	e := newEnv(t)
	if noTap {
		t.Skip("MISTRAL_E2E_NO_TAP=1: no proxy to compare")
	}
	ctx := ctxFor(t, time.Minute)
	if err := e.api.DefineWorkflows(ctx, workflowsDSL); err != nil {
		t.Fatal(err)
	}
	// At least three finished executions, so that paging has pages.
	for i := 0; i < 3; i++ {
		ex, err := e.direct.StartExecution(ctx, "e2e_success", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.direct.WaitExecution(ctx, ex.ID, Terminal...); err != nil {
			t.Fatal(err)
		}
	}
	proxyHost := strings.TrimPrefix(e.tap.URL, "http://")
	directHost := strings.TrimPrefix(mistralURL, "http://")
	get := func(c *Client, path string) (int, string, string) {
		resp, body, err := c.Do(ctx, "GET", path, nil, "")
		if resp == nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
	}
	// Only finished executions, so the lists do not change between the two
	// requests; sort by id too so that ties are stable.
	list := "/v2/executions?limit=2&state=SUCCESS&workflow_name=e2e_success&sort_keys=created_at,id&sort_dirs=asc,asc"
	_, _, first := get(e.direct, list)
	var page struct {
		Next string `json:"next"`
	}
	if err := json.Unmarshal([]byte(first), &page); err != nil || page.Next == "" {
		t.Fatalf("list page without next (%v): %s", err, first)
	}
	next := page.Next[strings.Index(page.Next, "/v2/"):]
	paths := []string{
		list,
		next,
		"/v2/executions/does-not-exist",
		"/v2/workflows/e2e_success",
		"/v2/workflows?limit=1",
		"/v2/executions?limit=0", // 400
		"/v2/tasks?limit=3&workflow_name=e2e_success&sort_keys=created_at,id",
	}
	for _, p := range paths {
		ds, dct, db := get(e.direct, p)
		ps, pct, pb := get(e.api, p)
		pb = strings.ReplaceAll(pb, proxyHost, directHost)
		if ds != ps || dct != pct || db != pb {
			t.Errorf("GET %s differs:\n direct %d %q %s\n proxy  %d %q %s", p, ds, dct, db, ps, pct, pb)
		} else {
			t.Logf("GET %s: %d %s, %d bytes, identical", p, ds, dct, len(db))
		}
	}
	// The CLI's own view: execution-list and workflow-get print the same.
	for _, args := range [][]string{
		{"execution-list", "--limit", "2", "-f", "json"},
		{"workflow-get", "-f", "json", "e2e_success"},
	} {
		d := runCLI(t, mistralURL, args...)
		p := runCLI(t, e.api.Base, args...)
		if string(d) != string(p) {
			t.Errorf("mistral %s differs:\n direct %s\n proxy  %s", strings.Join(args, " "), d, p)
		}
	}
}
