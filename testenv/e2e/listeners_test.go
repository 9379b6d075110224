package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
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

// TestListenerAuth, on the auth-on Mistral with Keystone: a project's
// token may listen to its own execution (the listener records the
// project) and receives Mistral's notifier events of it; another
// project's token is refused and does not see the listener; mistral-tap's
// admin token sees it.
func TestListenerAuth(t *testing.T) {
	w := authFromEnv(t)
	const admin = "e2e-listeners-admin-0123456789abcdef"
	e := newAuthEnv(t, w, w.keystone, "", func(c *TapConfig) { c.Top = "admin: {token: " + admin + "}" })
	demo, alt := e.as(w.project("demo")), e.as(w.project("alt"))
	ctx := ctxFor(t, 3*time.Minute)
	if err := demo.api.DefineWorkflows(ctx, authDSL("demo")); err != nil {
		t.Fatal(err)
	}
	lrecv := receiver.New()
	ls := httptest.NewServer(lrecv)
	t.Cleanup(ls.Close)
	s := &sc{t: t, e: demo, name: "listener-auth", ctx: ctx}
	ex := s.start(demo.api, "auth_demo_ok", nil, nil)
	body := map[string]any{"execution_id": ex.ID, "url": ls.URL + "/demo", "format": "envelope"}

	_, _, err := alt.api.Do(ctx, http.MethodPost, "/v2/listeners", body, "")
	if !isStatus(err, http.StatusNotFound) && !isStatus(err, http.StatusForbidden) {
		t.Errorf("alt registers for demo's execution: %v, want 404 or 403", err)
	}
	_, b, err := demo.api.Do(ctx, http.MethodPost, "/v2/listeners", body, "")
	if err != nil {
		t.Fatalf("demo registers for its execution: %v", err)
	}
	var l struct {
		ID        string `json:"id"`
		ProjectID string `json:"project_id"`
	}
	json.Unmarshal(b, &l)
	if l.ProjectID != w.project("demo").ID {
		t.Errorf("listener project %q, want demo's %q", l.ProjectID, w.project("demo").ID)
	}
	listed := func(c *Client) (ids []string) {
		t.Helper()
		_, b, err := c.Do(ctx, http.MethodGet, "/v2/listeners", nil, "")
		if err != nil {
			t.Fatalf("GET /v2/listeners as %q: %v", c.Token[:min(len(c.Token), 6)], err)
		}
		var env struct{ Listeners []struct{ ID string } }
		json.Unmarshal(b, &env)
		for _, x := range env.Listeners {
			ids = append(ids, x.ID)
		}
		return ids
	}
	adminClient := &Client{Base: e.api.Base, HTTP: e.api.HTTP, Token: admin}
	for _, c := range []struct {
		name   string
		client *Client
		want   bool
	}{{"demo", demo.api, true}, {"alt", alt.api, false}, {"admin", adminClient, true}} {
		if got := slices.Contains(listed(c.client), l.ID); got != c.want {
			t.Errorf("%s lists demo's listener: %v, want %v", c.name, got, c.want)
		}
	}
	if _, _, err := alt.api.Do(ctx, http.MethodDelete, "/v2/listeners/"+l.ID, nil, ""); !isStatus(err, http.StatusNotFound) {
		t.Errorf("alt deletes demo's listener: %v, want 404", err)
	}

	s.wait(ex.ID, Terminal...)
	tree := demo.tree(s)
	var truth, got []Notification
	deadline := time.Now().Add(2 * time.Minute) // auth-on polls are slow (see awaitTerminal)
	for {
		truth = withoutNull(demo.snapshot(s, tree).truth)
		got, _ = Parse(byPath(lrecv.Requests(), "/demo"), ParseEnvelope)
		if p := Compare(truth, got, got); (len(p.Missing) == 0 && len(truth) > 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	p := Compare(truth, got, got)
	report(t, "%s", p.Line("listener-auth"))
	if !p.OK() {
		t.Errorf("demo's listener: missing %v, extra not inferred %v", p.Missing, p.ExtraNotInferred)
	}
}
