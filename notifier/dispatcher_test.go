package notifier

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// checkOrder asserts that, per callback and root, delivered sequences only
// increase.
func checkOrder(t *testing.T, order map[string][]string) {
	t.Helper()
	for cb, ids := range order {
		last := map[string]int{}
		for _, id := range ids {
			// ids are evt_<root>_<seq>
			i := strings.LastIndexByte(id, '_')
			root, seq := id[:i], 0
			for _, c := range id[i+1:] {
				seq = seq*10 + int(c-'0')
			}
			if seq < last[root] {
				t.Errorf("%s: %s delivered after seq %d of its root", cb, id, last[root])
			}
			last[root] = seq
		}
	}
}

func TestReceiverDownThenUpDeliversEachOnce(t *testing.T) {
	s := newFakeSender()
	var up atomic.Bool
	flaky := func(r send.Request, n int) send.Result {
		if !up.Load() {
			return send.Result{Outcome: send.Retryable, Status: 503, Err: errString("HTTP 503")}
		}
		return deliver(r, n)
	}
	s.set("a", flaky)
	s.set("b", flaky)
	r := routing(config.Callback{Name: "a", Concurrency: 3}, config.Callback{Name: "b", Ordering: "none"})
	r.Delivery.BreakerProbeMax = 50 * time.Millisecond
	h := newHarness(t, "", s, r, nil)
	h.start()
	var all []event.Event
	for _, r := range []string{"r1", "r2", "r3"} {
		all = append(all, evs(r, 6)...)
	}
	h.accept(all[:9]...)
	h.accept(all[9:]...)
	h.waitFor("some failed attempts", func() bool {
		a, _, _ := s.snapshot()
		n := map[string]int{}
		for k, v := range a {
			n[k[:1]] += v
		}
		return n["a"] >= 20 && n["b"] >= 20
	})
	up.Store(true)
	h.waitFor("all delivered", func() bool { return h.count(store.Delivered) == 2*len(all) })
	_, delivered, order := s.snapshot()
	for _, cb := range []string{"a", "b"} {
		for _, e := range all {
			if n := delivered[cb+"/"+e.ID]; n != 1 {
				t.Errorf("%s/%s delivered %d times, want 1", cb, e.ID, n)
			}
		}
	}
	if got := order["a"]; len(got) != len(all) {
		t.Fatalf("a: %d deliveries", len(got))
	}
	checkOrder(t, map[string][]string{"a": order["a"]})
	if st := h.status("a"); st.Pending != 0 || st.InFlight != 0 {
		t.Errorf("status after drain = %+v", st)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestOrderingHeadOfLinePerRoot(t *testing.T) {
	s := newFakeSender()
	var release atomic.Bool
	s.set("a", func(r send.Request, n int) send.Result {
		if r.EventID == "evt_r1_1" && !release.Load() {
			return send.Result{Outcome: send.Retryable, Status: 500, Err: errString("HTTP 500")}
		}
		return deliver(r, n)
	})
	h := newHarness(t, "", s, routing(config.Callback{Name: "a"}, config.Callback{Name: "b"}), nil)
	h.start()
	h.accept(append(evs("r1", 3), evs("r2", 3)...)...)
	// r2 on a, and everything on b, flow while r1's head keeps failing.
	h.waitFor("other roots and callbacks delivered", func() bool {
		_, d, _ := s.snapshot()
		return d["a/evt_r2_3"] == 1 && d["b/evt_r1_3"] == 1 && d["b/evt_r2_3"] == 1
	})
	h.waitFor("r1 head retried", func() bool { a, _, _ := s.snapshot(); return a["a/evt_r1_1"] >= 3 })
	a, _, _ := s.snapshot()
	if a["a/evt_r1_2"] != 0 || a["a/evt_r1_3"] != 0 {
		t.Fatalf("r1's later events attempted while its head fails: %v", a)
	}
	release.Store(true)
	h.waitFor("r1 delivered", func() bool { _, d, _ := s.snapshot(); return d["a/evt_r1_3"] == 1 })
	_, _, order := s.snapshot()
	checkOrder(t, order)
}

func TestOutcomes(t *testing.T) {
	tests := []struct {
		name      string
		script    script
		retry     config.RetryPolicy
		wantState store.State
		wantErr   string
		status    int
	}{
		{"permanent 4xx is dead with status", fail(422), fastRetry, store.Dead, "HTTP 422", 422},
		{"max attempts", fail(503), config.RetryPolicy{InitialInterval: time.Millisecond, MaxAttempts: 3, MaxAge: time.Hour}, store.Dead, "max attempts (3)", 503},
		{"max age", fail(0), config.RetryPolicy{InitialInterval: 5 * time.Millisecond, MaxAge: 60 * time.Millisecond}, store.Dead, "max age", 0},
		{"delivered", deliver, fastRetry, store.Delivered, "", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newFakeSender()
			s.set("a", tc.script)
			h := newHarness(t, "", s, routing(config.Callback{Name: "a", Retry: tc.retry}), nil)
			h.start()
			e := evs("r1", 1)
			e[0].Time = time.Now() // max age counts from the event time
			h.accept(e...)
			h.waitFor("final state", func() bool { return h.count(tc.wantState) == 1 })
			row := h.rows(store.Filter{})[0]
			if !strings.Contains(row.LastError, tc.wantErr) || row.LastStatus != tc.status {
				t.Errorf("row = error %q status %d; want error containing %q, status %d", row.LastError, row.LastStatus, tc.wantErr, tc.status)
			}
			if tc.name == "max attempts" && row.Attempts != 3 {
				t.Errorf("attempts = %d, want 3", row.Attempts)
			}
		})
	}
}

func TestGoneDisablesUntilReplay(t *testing.T) {
	s := newFakeSender()
	s.set("a", fail(410))
	h := newHarness(t, "", s, routing(config.Callback{Name: "a", Concurrency: 1}), nil)
	h.start()
	h.accept(evs("r1", 3)...)
	h.waitFor("disabled", func() bool { return h.status("a").Disabled })
	h.waitFor("disabled state persisted", func() bool {
		dis, _ := h.st.DisabledCallbacks(context.Background())
		_, ok := dis["a"]
		return ok
	})
	if n := h.count(store.Pending); n != 3 {
		t.Fatalf("pending = %d, want 3 (kept while disabled)", n)
	}
	a, _, _ := s.snapshot()
	if a["a/evt_r1_1"] != 1 || a["a/evt_r1_2"] != 0 {
		t.Fatalf("attempts after 410 = %v, want just the one", a)
	}
	s.set("a", deliver)
	if _, err := h.d.Replay(context.Background(), store.ReplayFilter{Callback: "a"}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("delivered after re-enable", func() bool { return h.count(store.Delivered) == 3 })
	if h.status("a").Disabled {
		t.Fatal("still disabled after replay")
	}
}

func TestReplayDeadLetter(t *testing.T) {
	s := newFakeSender()
	s.set("a", fail(400))
	h := newHarness(t, "", s, routing(config.Callback{Name: "a"}), nil)
	h.start()
	h.accept(evs("r1", 2)...)
	h.waitFor("dead", func() bool { return h.count(store.Dead) == 2 })
	s.set("a", deliver)
	n, err := h.d.Replay(context.Background(), store.ReplayFilter{ID: "evt_r1_2/a"})
	if err != nil || n != 1 {
		t.Fatalf("Replay = %d, %v", n, err)
	}
	h.waitFor("replayed delivered", func() bool { return h.count(store.Delivered) == 1 })
	if got := h.rows(store.Filter{State: store.Delivered})[0].ID; got != "evt_r1_2/a" {
		t.Fatalf("delivered %s", got)
	}
}

func TestReplayFromAnotherProcessIsPickedUp(t *testing.T) {
	s := newFakeSender()
	s.set("a", fail(400))
	h := newHarness(t, "", s, routing(config.Callback{Name: "a"}), func(o *Options) { o.Resync = 20 * time.Millisecond })
	h.start()
	h.accept(evs("r1", 1)...)
	h.waitFor("dead", func() bool { return h.count(store.Dead) == 1 })
	s.set("a", deliver)
	cli, err := store.Open(h.path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if n, err := cli.Replay(context.Background(), store.ReplayFilter{Callback: "a"}, time.Now()); err != nil || n != 1 {
		t.Fatalf("CLI Replay = %d, %v", n, err)
	}
	h.waitFor("delivered", func() bool { return h.count(store.Delivered) == 1 })
}

func TestRestartResumesPending(t *testing.T) {
	dir := t.TempDir()
	s := newFakeSender()
	s.set("a", func(r send.Request, n int) send.Result {
		if r.EventID == "evt_r1_1" {
			return deliver(r, n)
		}
		return send.Result{Outcome: send.Retryable, Err: errString("connection refused")}
	})
	r := routing(config.Callback{Name: "a", Ordering: "none", Retry: config.RetryPolicy{InitialInterval: 50 * time.Millisecond, MaxAge: time.Hour}})
	h := newHarness(t, dir, s, r, nil)
	h.start()
	h.accept(evs("r1", 3)...)
	h.waitFor("first delivered, others failed", func() bool {
		a, d, _ := s.snapshot()
		return d["a/evt_r1_1"] == 1 && a["a/evt_r1_2"] >= 1 && a["a/evt_r1_3"] >= 1
	})
	h.stop()

	s2 := newFakeSender()
	s2.sent = make(chan send.Request, 100)
	h2 := newHarness(t, dir, s2, r, nil)
	h2.start()
	h2.waitFor("resumed deliveries", func() bool { return h2.count(store.Delivered) == 3 })
	_, d, _ := s2.snapshot()
	if d["a/evt_r1_1"] != 0 || d["a/evt_r1_2"] != 1 || d["a/evt_r1_3"] != 1 {
		t.Fatalf("after restart delivered = %v; want r1_2 and r1_3 once, r1_1 not again", d)
	}
	close(s2.sent)
	for req := range s2.sent {
		if req.EventID != string(req.Body) || !strings.HasPrefix(req.EventID, "evt_r1_") {
			t.Errorf("request webhook id %q body %q", req.EventID, req.Body)
		}
	}
	rows := h2.rows(store.Filter{ID: "evt_r1_2/a"})
	if rows[0].Attempts < 2 {
		t.Errorf("attempts after restart = %d, want the count to carry over", rows[0].Attempts)
	}
}

// The breaker runs on the dispatcher's clock: while the circuit is open
// nothing is sent until the probe time, then exactly one probe; its
// failure doubles the wait up to the max; its success closes the circuit.
func TestBreakerOpensAndClosesAfterProbe(t *testing.T) {
	clk := newFakeClock()
	s := newFakeSender()
	var up atomic.Bool
	var sends atomic.Int64
	s.set("a", func(r send.Request, n int) send.Result {
		sends.Add(1)
		if up.Load() {
			return deliver(r, n)
		}
		return send.Result{Outcome: send.Retryable, Status: 502, Err: errString("HTTP 502")}
	})
	r := routing(config.Callback{Name: "a", Ordering: "none", Concurrency: 2,
		Retry: config.RetryPolicy{InitialInterval: time.Millisecond, MaxInterval: time.Millisecond, MaxAge: time.Hour}})
	r.Delivery.BreakerThreshold = 3
	r.Delivery.BreakerProbeMax = 40 * time.Millisecond
	h := newHarness(t, "", s, r, func(o *Options) { o.BreakerProbeMin = 20 * time.Millisecond; o.Now = clk.Now })
	h.start()
	h.accept(append(evs("r1", 5), evs("r2", 5)...)...)
	h.settle("a")
	// Retries are due every millisecond: step until the circuit opens.
	for i := 0; h.status("a").Breaker != BreakerOpen; i++ {
		if i == 10 {
			t.Fatalf("circuit still closed after %d sends", sends.Load())
		}
		h.advance(clk, "a", time.Millisecond)
	}
	st := h.status("a")
	if st.ConsecutiveFailures < 3 || st.NextProbe.IsZero() {
		t.Fatalf("status when opened = %+v", st)
	}
	before := sends.Load()
	h.setClock(clk, "a", st.NextProbe.Add(-time.Millisecond))
	if n := sends.Load() - before; n != 0 {
		t.Fatalf("%d sends before the probe time with the circuit open; want none", n)
	}
	h.setClock(clk, "a", st.NextProbe)
	if n := sends.Load() - before; n != 1 {
		t.Fatalf("%d sends at the probe time; want one probe", n)
	}
	st2 := h.status("a")
	if st2.Breaker != BreakerOpen || st2.NextProbe.Sub(clk.Now()) != 40*time.Millisecond {
		t.Fatalf("after a failed probe: %+v at %v; want open, next probe in the max 40ms", st2, clk.Now())
	}
	up.Store(true)
	h.setClock(clk, "a", st2.NextProbe)
	h.waitFor("all delivered", func() bool { return h.count(store.Delivered) == 10 })
	if st := h.status("a"); st.Breaker != BreakerClosed || st.ConsecutiveFailures != 0 {
		t.Fatalf("status after recovery = %+v", st)
	}
}

func TestSetRoutingRemovedCallbackDeadLetters(t *testing.T) {
	s := newFakeSender()
	s.set("b", fail(503))
	r := routing(config.Callback{Name: "a"}, config.Callback{Name: "b"})
	h := newHarness(t, "", s, r, nil)
	h.start()
	h.accept(evs("r1", 2)...)
	h.waitFor("a delivered, b retrying", func() bool {
		a, _, _ := s.snapshot()
		return h.count(store.Delivered) == 2 && a["b/evt_r1_1"] >= 2
	})
	h.d.SetRouting(routing(config.Callback{Name: "a"}))
	h.waitFor("b's deliveries dead", func() bool {
		return len(h.rows(store.Filter{Callback: "b", State: store.Dead})) == 2
	})
	for _, row := range h.rows(store.Filter{Callback: "b"}) {
		if !strings.Contains(row.LastError, "callback removed") {
			t.Errorf("%s: last error %q", row.ID, row.LastError)
		}
	}
	if n := h.count(store.Pending); n != 0 {
		t.Fatalf("pending after removal = %d", n)
	}
	// A new callback added by reload starts delivering new events.
	h.d.SetRouting(routing(config.Callback{Name: "a"}, config.Callback{Name: "c"}))
	h.accept(evs("r2", 1)...)
	h.waitFor("c delivered", func() bool { _, d, _ := s.snapshot(); return d["c/evt_r2_1"] == 1 })
}

func TestAcceptStatesAtomicAndDurable(t *testing.T) {
	dir := t.TempDir()
	s := newFakeSender()
	r := routing(config.Callback{Name: "a"})
	h := newHarness(t, dir, s, r, nil)
	states := []event.EntityState{
		{Kind: event.KindExecution, ID: "r1", RootID: "r1", State: "RUNNING", UpdatedAt: "2025-01-01 00:00:00", LastSeq: 2},
		{Kind: event.KindTask, ID: "r1-t1", RootID: "r1", State: "SUCCESS", UpdatedAt: "2025-01-01 00:00:01", RetryCount: 1},
	}
	// Not running: Accept commits directly.
	if err := h.d.Accept(context.Background(), evs("r1", 2), states); err != nil {
		t.Fatal(err)
	}
	h.stop()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, err := st.LoadStates(context.Background())
	if err != nil || len(got) != 2 {
		t.Fatalf("LoadStates = %v, %v", got, err)
	}
	p, _ := st.Pending(context.Background(), "a", 10)
	if len(p) != 2 {
		t.Fatalf("pending after reopen = %d, want 2", len(p))
	}
}

// blockingSender blocks until its context is cancelled.
type blockingSender struct{ started chan struct{} }

func (b blockingSender) Send(ctx context.Context, r send.Request) send.Result {
	b.started <- struct{}{}
	<-ctx.Done()
	return send.Result{Outcome: send.Retryable, Err: ctx.Err()}
}

func TestShutdownBoundedByGrace(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bs := blockingSender{started: make(chan struct{}, 10)}
	d, _ := New(Options{Store: st, Sender: bs, Routing: routing(config.Callback{Name: "a"}), Grace: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	// Whether Run has started its lane yet or not, the delivery gets
	// sent: Accept hands it over, or the lane's first read finds it.
	if err := d.Accept(context.Background(), evs("r1", 1), nil); err != nil {
		t.Fatal(err)
	}
	<-bs.started
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the grace period")
	}
	rows, _ := st.List(context.Background(), store.Filter{})
	if len(rows) != 1 || rows[0].State != store.Pending || rows[0].Attempts != 1 {
		t.Fatalf("after shutdown: %+v; want pending with the cancelled attempt recorded", rows)
	}
}

func TestSpillKeepsMemoryBoundedAndOrder(t *testing.T) {
	s := newFakeSender()
	r := routing(config.Callback{Name: "a", Concurrency: 2})
	h := newHarness(t, "", s, r, func(o *Options) { o.MaxLoaded = 8 })
	// Accept before Run so the backlog sits in the store.
	var all []event.Event
	for _, root := range []string{"r1", "r2", "r3"} {
		all = append(all, evs(root, 20)...)
	}
	if err := h.d.Accept(context.Background(), all, nil); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.accept(evs("r4", 20)...) // arrives while spilled
	h.waitFor("all delivered", func() bool { return h.count(store.Delivered) == 80 })
	_, d, order := s.snapshot()
	for k, n := range d {
		if n != 1 {
			t.Errorf("%s delivered %d times", k, n)
		}
	}
	checkOrder(t, order)
}

func TestPolicyBackoff(t *testing.T) {
	p := config.RetryPolicy{InitialInterval: time.Second, MaxInterval: 10 * time.Second, Multiplier: 2, Jitter: 0.2, MaxAge: time.Hour}
	tests := []struct {
		n        int
		r        float64
		min, max time.Duration
	}{
		{1, 0.5, time.Second, time.Second},
		{2, 0.5, 2 * time.Second, 2 * time.Second},
		{3, 0, 3200 * time.Millisecond, 3200 * time.Millisecond},
		{10, 0.5, 10 * time.Second, 10 * time.Second},
		{100, 0.99, 10 * time.Second, 10 * time.Second},
	}
	for _, tc := range tests {
		if got := backoff(p, tc.n, tc.r); got < tc.min || got > tc.max {
			t.Errorf("backoff(%d, %v) = %v, want in [%v, %v]", tc.n, tc.r, got, tc.min, tc.max)
		}
	}
	now := time.Now()
	it := &item{id: "x", created: now.Add(-time.Minute)}
	u := decide(p, it, send.Result{Outcome: send.Retryable, RetryAfter: time.Hour}, now, 0.5, "")
	if u.NextAt.Sub(now) != 10*time.Second {
		t.Errorf("Retry-After not capped at max_interval: wait %v", u.NextAt.Sub(now))
	}
	u = decide(p, it, send.Result{Outcome: send.Retryable, RetryAfter: 7 * time.Second}, now, 0.5, "")
	if u.NextAt.Sub(now) != 7*time.Second {
		t.Errorf("Retry-After not honoured: wait %v", u.NextAt.Sub(now))
	}
	it.created = now.Add(-time.Hour + 3*time.Second)
	u = decide(p, it, send.Result{Outcome: send.Retryable}, now.Add(0), 0.5, "")
	if u.State != store.Pending || u.NextAt.After(it.created.Add(time.Hour)) {
		t.Errorf("retry beyond max_age deadline: %+v", u)
	}
}

// hookStore runs hook inside every Pending read (after the read).
type hookStore struct {
	Store
	hook func()
}

func (s hookStore) Pending(ctx context.Context, cb string, limit int) ([]store.Delivery, error) {
	rows, err := s.Store.Pending(ctx, cb, limit)
	if s.hook != nil {
		s.hook()
	}
	return rows, err
}

// An event accepted while a refill reads the store joins memory when the
// read was complete: it must not mark the lane spilled (which made a busy
// lane re-read the store back to back) nor be lost or sent twice.
func TestAcceptDuringRefillDoesNotSpill(t *testing.T) {
	s := newFakeSender()
	var h *harness
	var once sync.Once
	var inRead atomic.Bool
	var reads atomic.Int32
	hs := hookStore{}
	h = newHarness(t, "", s, routing(config.Callback{Name: "a"}), func(o *Options) {
		hs.Store = o.Store
		hs.hook = func() {
			if inRead.Load() {
				reads.Add(1)
				once.Do(func() {
					// Accept needs nothing the read holds: when it returns,
					// the lane holds the item as late.
					h.accept(evs("r2", 1)...)
					l := h.lane("a")
					l.mu.Lock()
					n := len(l.win.late)
					l.mu.Unlock()
					if n != 1 {
						t.Errorf("accepted during the read: %d late items, want 1", n)
					}
				})
			}
		}
		o.Store = &hs
	})
	h.start()
	h.accept(evs("r1", 2)...)
	h.waitFor("first delivered", func() bool { return h.count(store.Delivered) == 2 })
	inRead.Store(true)
	h.d.Replay(context.Background(), store.ReplayFilter{ID: "none"}) // forces a refill
	h.waitFor("late delivered", func() bool { return h.count(store.Delivered) == 3 })
	h.settle("a")
	l := h.lane("a")
	l.mu.Lock()
	spilled, pending := l.win.spilled, l.win.pending
	l.mu.Unlock()
	if spilled || pending != 0 || reads.Load() != 1 {
		t.Fatalf("spilled %v, pending %d, store reads %d; want false, 0, 1", spilled, pending, reads.Load())
	}
	if a, _, _ := s.snapshot(); a["a/evt_r2_1"] != 1 {
		t.Fatalf("late event attempted %d times", a["a/evt_r2_1"])
	}
}

func (h *harness) lane(name string) *lane {
	h.d.mu.Lock()
	defer h.d.mu.Unlock()
	return h.d.lanes[name]
}
