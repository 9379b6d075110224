package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// costWorkflow waits half an hour in its first task, so that its execution
// stays RUNNING while the watcher's cost is measured. Public, so that every
// project can run it without defining it.
const costWorkflow = `---
version: '2.0'
auth_cost_wait:
  tasks:
    a:
      action: std.noop
      wait-before: 1800
`

// TestAuthPollCost measures the watcher's engine requests per poll with 1,
// 10 and 100 projects that each have a running execution, and when they
// are all finished (docs/performance.md). It creates projects cost-001 to
// cost-100 in Keystone; run it on purpose: MISTRAL_E2E_AUTH_COST=1.
func TestAuthPollCost(t *testing.T) {
	w := authFromEnv(t)
	if os.Getenv("MISTRAL_E2E_AUTH_COST") != "1" {
		t.Skip("set MISTRAL_E2E_AUTH_COST=1 to measure (creates 100 Keystone projects)")
	}
	ctx := ctxFor(t, 20*time.Minute)
	admin := w.project("admin")
	ensureCostProjects(ctx, t, w, admin, 100)
	adminAPI := &Client{Base: w.url, HTTP: http.DefaultClient, Token: admin.Token}
	_, _, err := adminAPI.Do(ctx, http.MethodPost, "/v2/workflows?scope=public", costWorkflow, "text/plain")
	if err != nil && !isStatus(err, http.StatusConflict) {
		t.Fatal(err)
	}

	ks := newKSProxy(t, w.keystone)
	ops, tune := withOps(t)
	e := newAuthEnv(t, w, ks.URL(), "", tune)
	var started []struct{ id, token string }
	defer func() {
		for _, x := range started {
			c := &Client{Base: w.url, HTTP: http.DefaultClient, Token: x.token}
			c.SetExecutionState(context.Background(), x.id, "CANCELLED", "cost measured")
		}
	}()
	for _, n := range []int{1, 10, 100} {
		for i := len(started); i < n; i++ {
			name := fmt.Sprintf("cost-%03d", i+1)
			tok, _, err := keystoneToken(ctx, w.keystone, w.serviceUser, name, w.password)
			if err != nil {
				t.Fatal(err)
			}
			c := &Client{Base: w.url, HTTP: http.DefaultClient, Token: tok}
			ex, err := c.StartExecution(ctx, "auth_cost_wait", nil, nil)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			started = append(started, struct{ id, token string }{ex.ID, tok})
		}
		perPoll, pollTime := measurePolls(ctx, t, ops, max(1, 20/float64(n)))
		report(t, "AUTH cost projects=%d running=%d requests/poll=%.1f poll=%s keystone_token_requests=%d",
			n, runningCost(ctx, t, w, admin), perPoll, pollTime.Round(10*time.Millisecond), ks.tokenPosts())
	}
	for _, x := range started {
		c := &Client{Base: w.url, HTTP: http.DefaultClient, Token: x.token}
		if err := c.SetExecutionState(ctx, x.id, "CANCELLED", "cost measured"); err != nil {
			t.Fatal(err)
		}
	}
	started = nil
	// Past the grace after the last change, an idle poll lists executions
	// only.
	if err := poll(ctx, "the project grace to pass", func() (bool, error) {
		perPoll, _ := measurePolls(ctx, t, ops, 3)
		return perPoll <= 2.5, nil
	}); err != nil {
		t.Fatal(err)
	}
	perPoll, pollTime := measurePolls(ctx, t, ops, 10)
	report(t, "AUTH cost projects=100 running=0 requests/poll=%.1f poll=%s", perPoll, pollTime.Round(10*time.Millisecond))
	_ = e
}

// runningCost counts the RUNNING executions of auth_cost_wait across
// projects (as the admin).
func runningCost(ctx context.Context, t *testing.T, w *authWorld, admin *authProject) int {
	t.Helper()
	var out struct {
		Executions []Execution `json:"executions"`
	}
	c := &Client{Base: w.url, HTTP: http.DefaultClient, Token: admin.Token}
	if err := c.doJSON(ctx, http.MethodGet, "/v2/executions?all_projects=true&state=RUNNING&workflow_name=auth_cost_wait&fields=id&limit=1000", nil, &out); err != nil {
		t.Fatal(err)
	}
	return len(out.Executions)
}

// measurePolls waits for n whole polls and returns the engine requests per
// poll and the time per poll. It starts right after a poll ended (the
// watcher waits a second before the next one), so no poll is half counted.
func measurePolls(ctx context.Context, t *testing.T, ops string, n float64) (float64, time.Duration) {
	t.Helper()
	var r0, p0, r1, p1 float64
	var err error
	_, first, err := watchCounters2(ctx, ops)
	if err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, "a poll to end", func() (bool, error) {
		r0, p0, err = watchCounters2(ctx, ops)
		return p0 > first, err
	}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := poll(ctx, fmt.Sprintf("%.0f polls", n), func() (bool, error) {
		r1, p1, err = watchCounters2(ctx, ops)
		return p1-p0 >= n, err
	}); err != nil {
		t.Fatal(err)
	}
	return (r1 - r0) / (p1 - p0), time.Since(start) / time.Duration(p1-p0)
}

// watchCounters2 reads the watcher's request and poll counters from one
// scrape.
func watchCounters2(ctx context.Context, ops string) (requests, polls float64, err error) {
	if requests, err = metric(ctx, ops, "mistral_tap_watch_requests_total"); err != nil {
		return 0, 0, err
	}
	polls, err = metric(ctx, ops, "mistral_tap_watch_polls_total")
	return requests, polls, err
}

// ensureCostProjects creates projects cost-001..cost-n (idempotent). The
// service user's inherited reader role reaches them without a grant.
func ensureCostProjects(ctx context.Context, t *testing.T, w *authWorld, admin *authProject, n int) {
	t.Helper()
	ks := &Client{Base: strings.TrimSuffix(w.keystone, "/v3"), HTTP: http.DefaultClient, Token: admin.Token}
	for i := 1; i <= n; i++ {
		body := map[string]any{"project": map[string]any{"name": fmt.Sprintf("cost-%03d", i), "domain_id": "default"}}
		_, _, err := ks.Do(ctx, http.MethodPost, "/v3/projects", body, "")
		if err != nil && !isStatus(err, http.StatusConflict) {
			t.Fatal(err)
		}
	}
}
