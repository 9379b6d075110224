package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/testenv/receiver"
)

// TestListenerParity registers a listener through the proxy's
// /v2/listeners right after POST /v2/executions of a workflow with nested
// sub-workflows, while another execution runs: the listener receives
// exactly the events Mistral's own notifier sends for that execution tree,
// in causal order, and nothing of the other. A workflow listener deleted
// with DELETE receives nothing afterwards.
func TestListenerParity(t *testing.T) {
	skipWithoutTap(t)
	e := newEnv(t)
	ctx := ctxFor(t, 3*time.Minute)
	if err := e.api.DefineWorkflows(ctx, workflowsDSL); err != nil {
		t.Fatal(err)
	}
	lrecv := receiver.New()
	ls := httptest.NewServer(lrecv)
	t.Cleanup(ls.Close)
	register := func(body map[string]any) string {
		t.Helper()
		_, b, err := e.api.Do(ctx, http.MethodPost, "/v2/listeners", body, "")
		if err != nil {
			t.Fatalf("POST /v2/listeners: %v", err)
		}
		var l struct{ ID, Secret string }
		if err := json.Unmarshal(b, &l); err != nil || l.ID == "" || l.Secret == "" {
			t.Fatalf("create answer %s: %v", b, err)
		}
		return l.ID
	}

	other := &sc{t: t, e: e, name: "listener-other", ctx: ctx}
	otherEx := other.start(e.api, "e2e_sleep", nil, nil)
	s := &sc{t: t, e: e, name: "listener", ctx: ctx}
	ex := s.start(e.api, "e2e_l1", nil, nil)
	register(map[string]any{"execution_id": ex.ID, "url": ls.URL + "/execution", "format": "envelope"})
	s.wait(ex.ID, Terminal...)
	other.wait(otherEx.ID, Terminal...)

	tree := e.tree(s)
	listened := func() []Notification {
		ns, errs := Parse(byPath(lrecv.Requests(), "/execution"), ParseEnvelope)
		for _, err := range errs {
			t.Errorf("undecodable listener delivery: %v", err)
		}
		return ns
	}
	var truth, got []Notification
	deadline := time.Now().Add(20 * time.Second)
	for {
		truth = withoutNull(e.snapshot(s, tree).truth)
		got = listened()
		if p := Compare(truth, got, got); (len(p.Missing) == 0 && len(truth) > 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	report(t, "MISTRAL scenario=listener events=%d: %s", len(truth), Sequence(truth))
	report(t, "LISTENER scenario=listener events=%d: %s", len(got), Sequence(got))
	p := Compare(truth, InTree(got, tree, false), got)
	report(t, "%s", p.Line("listener"))
	if !p.OK() {
		t.Errorf("listener parity: missing %v, extra not inferred %v", p.Missing, p.ExtraNotInferred)
	}
	if n := len(got) - len(InTree(got, tree, false)); n > 0 {
		t.Errorf("the listener got %d events outside its execution tree (the other execution is %s)", n, otherEx.ID)
	}
	for _, problem := range CheckOrder(got, s.order) {
		t.Errorf("order: %s", problem)
	}

	// DELETE: a workflow listener gets its first execution, then nothing.
	id := register(map[string]any{"workflow_name": "e2e_success", "events": []string{"on-execution-complete"}, "url": ls.URL + "/workflow"})
	first := s.start(e.api, "e2e_success", nil, nil)
	s.wait(first.ID, Terminal...)
	waitPath(t, lrecv, "/workflow", 1)
	if _, _, err := e.api.Do(ctx, http.MethodDelete, "/v2/listeners/"+id, nil, ""); err != nil {
		t.Fatalf("DELETE: %v", err)
	}
	second := s.start(e.api, "e2e_success", nil, nil)
	s.wait(second.ID, Terminal...)
	// The file callback (every event, same outbox) got the second
	// execution's end: had the listener still been there, it would have too.
	if _, err := e.tapHook.WaitUntil(ctx, func(reqs []receiver.Request) bool {
		ns, _ := Parse(reqs, ParseMistral)
		for _, n := range ns {
			if n.Entity == second.ID && isTerminal(n.Event) {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("the file callback never got the end of %s: %v", second.ID, err)
	}
	if n := len(byPath(lrecv.Requests(), "/workflow")); n != 1 {
		t.Errorf("the deleted listener got %d deliveries, want the first execution's only", n)
	}
}

// waitPath waits until r received n requests on path.
func waitPath(t *testing.T, r *receiver.Receiver, path string, n int) {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	if _, err := r.WaitUntil(ctx, func(reqs []receiver.Request) bool { return len(byPath(reqs, path)) >= n }); err != nil {
		t.Fatalf("%d deliveries on %s: %v", n, path, err)
	}
}
