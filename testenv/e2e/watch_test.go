package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

const idleDSL = `---
version: '2.0'
e2e_idle:
  tasks:
    a:
      action: std.noop
`

// TestWatcherIdleAfterBurst: executions started directly on Mistral (only
// the watcher sees them) finish in a burst of more rows than a page; once
// Mistral is quiet, every watcher poll costs four requests although those
// rows sit in the overlap the watcher re-reads before its checkpoint
// (before the fix: three pages per list, for as long as nothing changed).
// Every execution's WORKFLOW_SUCCEEDED is delivered.
func TestWatcherIdleAfterBurst(t *testing.T) {
	skipWithoutTap(t)
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ops := fmt.Sprintf("127.0.0.1:%d", port)
	e := newEnvTuned(t, "", func(c *TapConfig) { c.PageSize = 5; c.Ops = ops })
	ctx := ctxFor(t, 3*time.Minute)
	if err := e.direct.DefineWorkflows(ctx, idleDSL); err != nil {
		t.Fatal(err)
	}
	const n = 12 // 12 executions and 12 tasks: 3 pages of 5 per list
	ids := map[string]bool{}
	for range n {
		x, err := e.direct.StartExecution(ctx, "e2e_idle", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids[x.ID] = true
	}
	for id := range ids {
		if _, err := e.direct.WaitExecution(ctx, id, Terminal...); err != nil {
			t.Fatal(err)
		}
	}
	err = poll(ctx, "WORKFLOW_SUCCEEDED of every execution", func() (bool, error) {
		got := 0
		for _, r := range e.tapHook.Requests() {
			var m map[string]any
			json.Unmarshal(r.Body, &m)
			if id, _ := m["id"].(string); ids[id] && m["event"] == "WORKFLOW_SUCCEEDED" {
				got++
			}
		}
		return got == n, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The last change is behind us; past overlap + 1 s the watcher settles.
	time.Sleep(5 * time.Second)
	r0, p0 := watchCounters(ctx, t, ops)
	time.Sleep(6 * time.Second)
	r1, p1 := watchCounters(ctx, t, ops)
	polls, reqs := p1-p0, r1-r0
	if polls < 3 {
		t.Fatalf("only %v polls in 6 s", polls)
	}
	// A poll in progress at either read has counted up to 3 of its
	// requests but not itself; without the fix a poll here costs 12.
	if reqs < 4*polls-3 || reqs > 4*polls+3 {
		t.Errorf("idle after a burst: %v requests in %v polls, want 4 per poll", reqs, polls)
	}
	t.Logf("WATCH idle after a burst of %d executions (page size 5): %v requests in %v polls", n, reqs, polls)
}

// watchCounters reads mistral_tap_watch_requests_total and
// mistral_tap_watch_polls_total from mistral-tap's /metrics.
func watchCounters(ctx context.Context, t *testing.T, ops string) (requests, polls float64) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ops+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		switch name {
		case "mistral_tap_watch_requests_total":
			requests = v
		case "mistral_tap_watch_polls_total":
			polls = v
		}
	}
	if polls == 0 {
		t.Fatal("no mistral_tap_watch_polls_total in /metrics")
	}
	return requests, polls
}
