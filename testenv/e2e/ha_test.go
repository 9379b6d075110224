package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore/pgtest"
	"github.com/mistral-tap/mistral-tap/testenv/receiver"
)

// haEnv starts n replicas of the real binary on one PostgreSQL database
// behind a round-robin balancer; e.api goes through the balancer.
func haEnv(t *testing.T, n int) (*env, []*Tap, []TapConfig) {
	t.Helper()
	skipWithoutTap(t)
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	dsn := pgtest.Database(t)
	e := &env{t: t, direct: NewClient(mistralURL), mistral: receiver.New(), tapHook: receiver.New(), tapEnv: receiver.New()}
	serve := func(h http.Handler) string {
		s := httptest.NewServer(h)
		t.Cleanup(s.Close)
		return s.URL
	}
	e.mistralURL = serve(e.mistral)
	hook, envl := serve(e.tapHook)+"/hook", serve(e.tapEnv)+"/envelope"
	var taps []*Tap
	var cfgs []TapConfig
	var targets []*url.URL
	base := testDir(t)
	for i := range n {
		port, _ := FreePort()
		ops, _ := FreePort()
		dir := filepath.Join(base, fmt.Sprintf("r%d", i))
		cfg := TapConfig{Listen: fmt.Sprintf("127.0.0.1:%d", port), Upstream: mistralURL, StateDir: filepath.Join(dir, "state"),
			MistralURL: hook, EnvelopeURL: envl, Ops: fmt.Sprintf("127.0.0.1:%d", ops),
			Store: fmt.Sprintf("store: {driver: postgres, dsn: %q, lease_ttl: 3s}\nlisteners: {key: e2e-ha-sealing-key-0123456789abcdef}", dsn)}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		tap, err := StartTap(ctx, tapBin, cfg, filepath.Join(dir, "mistral-tap.log"))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := tap.Stop(); err != nil && !strings.Contains(err.Error(), "killed") {
				t.Errorf("replica %d did not stop cleanly: %v\n%s", i, err, Tail(tap.Log, 30))
			}
		})
		u, _ := url.Parse(tap.URL)
		taps, cfgs, targets = append(taps, tap), append(cfgs, cfg), append(targets, u)
	}
	var next atomic.Uint64
	lb := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(targets[next.Add(1)%uint64(len(targets))])
		r.Out.Host = r.In.Host
	}}
	e.api = NewClient(serve(lb))
	e.tap = taps[0]
	return e, taps, cfgs
}

// leader returns the index of the replica whose metrics say it leads.
func leader(t *testing.T, cfgs []TapConfig, taps []*Tap) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for i, c := range cfgs {
			select {
			case <-taps[i].exited:
				continue
			default:
			}
			resp, err := http.Get("http://" + c.Ops + "/metrics")
			if err != nil {
				continue
			}
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if sc.Text() == "mistral_tap_replica_leader 1" {
					resp.Body.Close()
					return i
				}
			}
			resp.Body.Close()
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("no replica leads")
	return -1
}

// TestReplicasOnRealMistral runs the parity scenarios through three
// replicas behind a round-robin balancer, then kills the leader with
// SIGKILL while a pause/resume cycle is driven directly at the engine:
// missing=0 extra=0, no duplicate webhook-id, no order fault.
func TestReplicasOnRealMistral(t *testing.T) {
	e, taps, cfgs := haEnv(t, 3)
	ctx := ctxFor(t, time.Minute)
	if err := e.api.DefineWorkflows(ctx, workflowsDSL); err != nil {
		t.Fatal(err)
	}
	if err := e.api.DefineWorkbook(ctx, workbookDSL); err != nil {
		t.Fatal(err)
	}
	only := os.Getenv("MISTRAL_E2E_ONLY") // comma-separated scenario names
	for _, scn := range scenarios {
		if scn.name == "tap-restart" { // one process's restart: TestScenarios
			continue
		}
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
	t.Run("watcher-cost", func(t *testing.T) {
		// Only the leader polls: the engine sees one watcher whatever
		// the number of replicas.
		// Followers run no watcher (and export no watcher counters).
		l := leader(t, cfgs, taps)
		r0, _ := watchCounters(context.Background(), t, cfgs[l].Ops)
		time.Sleep(30 * time.Second)
		r1, _ := watchCounters(context.Background(), t, cfgs[l].Ops)
		if next := leader(t, cfgs, taps); next != l {
			t.Skipf("leadership moved from %d to %d during the measurement", l, next)
		}
		report(t, "HA watcher replicas=3 idle engine requests/min=%.0f", (r1-r0)*2)
	})
	t.Run("kill-leader-direct-pause-resume", func(t *testing.T) {
		e.t = t
		defer func() { e.t = nil }()
		s := &sc{t: t, e: e, name: "kill-leader", ctx: ctxFor(t, 2*time.Minute)}
		l := leader(t, cfgs, taps)
		ex := s.start(e.direct, "e2e_sleep", map[string]any{"secs": 8}, nil)
		s.waitTask(ex.ID, "a", "RUNNING")
		killed := time.Now()
		if err := taps[l].cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-taps[l].exited
		s.must(e.direct.SetExecutionState(s.ctx, ex.ID, "PAUSED", ""))
		s.wait(ex.ID, "PAUSED")
		// Paused for longer than the takeover bound (lease_ttl 3s + 0.6s).
		time.Sleep(6 * time.Second)
		next := leader(t, cfgs, taps)
		report(t, "HA leader %d killed; replica %d leads %.1fs later", l, next, time.Since(killed).Seconds())
		s.must(e.direct.SetExecutionState(s.ctx, ex.ID, "RUNNING", ""))
		s.wait(ex.ID, Terminal...)
		e.check(s)
	})
	ids := map[string]int{}
	for _, r := range e.tapHook.Requests() {
		ids[r.Header.Get("webhook-id")]++
	}
	dups := 0
	for id, n := range ids {
		if n > 1 {
			dups++
			t.Errorf("webhook-id %s delivered %d times", id, n)
		}
	}
	report(t, "HA replicas=3 deliveries=%d distinct_webhook_ids=%d duplicates=%d", len(e.tapHook.Requests()), len(ids), dups)
}
