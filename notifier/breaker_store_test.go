package notifier

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore"
	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore/pgtest"
)

// breakerHandover is a dispatcher whose receiver is down, stopped with its
// circuit open, and a second dispatcher started after it on what the first
// left in the store. first and second build the two harnesses; between
// runs after the first stopped.
type breakerHandover struct {
	first, second func(s *fakeSender, r *Routing, tune func(*Options)) *harness
	between       func()
}

// run checks that the second dispatcher carries on from the first one's
// breaker: open, with the recorded failures and probe time; nothing sent
// before that time; one probe at it; closed and recorded closed once the
// receiver answers.
func (bh breakerHandover) run(t *testing.T) {
	clk := newFakeClock()
	r, tune := breakerRouting(""), breakerTune(clk)
	var up atomic.Bool
	var sends atomic.Int64
	receiver := upOrDown(&up, &sends)

	s1 := newFakeSender()
	s1.set("a", receiver)
	h1 := bh.first(s1, r, tune)
	was := openCircuit(h1, clk)
	h1.stop()
	if bh.between != nil {
		bh.between()
	}

	s2 := newFakeSender()
	s2.set("a", receiver)
	h2 := bh.second(s2, r, tune)
	before := sends.Load()
	h2.start()
	h2.settle("a")
	st := h2.status("a")
	if st.Breaker != BreakerOpen || st.ConsecutiveFailures != was.ConsecutiveFailures || !st.NextProbe.Equal(was.NextProbe) {
		t.Fatalf("second dispatcher's breaker = %+v; want open as the first left it, %+v", st, was)
	}
	h2.setClock(clk, "a", was.NextProbe.Add(-time.Millisecond))
	if n := sends.Load() - before; n != 0 {
		t.Fatalf("%d sends before the recorded probe time; want none", n)
	}
	up.Store(true)
	h2.setClock(clk, "a", was.NextProbe)
	h2.waitFor("all delivered", func() bool { return h2.count(store.Delivered) == 5 })
	if st := h2.status("a"); st.Breaker != BreakerClosed || st.ConsecutiveFailures != 0 {
		t.Fatalf("after recovery: %+v", st)
	}
	h2.settle("a")
	rec, ok, err := h2.st.Breaker(context.Background(), "a")
	if err != nil || !ok || rec.State != string(BreakerClosed) || rec.Failures != 0 {
		t.Fatalf("recorded breaker after recovery = %+v, %v, %v; want closed", rec, ok, err)
	}
}

// breakerRouting routes to one callback "a" at url (default
// http://receiver.test/a) that retries every millisecond, with a breaker
// that opens after 3 failures.
func breakerRouting(url string) *Routing {
	r := routing(config.Callback{Name: "a", URL: url, Ordering: "none", Concurrency: 1,
		Retry: config.RetryPolicy{InitialInterval: time.Millisecond, MaxInterval: time.Millisecond, MaxAge: time.Hour}})
	r.Delivery.BreakerThreshold = 3
	r.Delivery.BreakerProbeMax = time.Minute
	return r
}

// breakerTune runs the dispatcher on clk, with a first probe 20 s after
// the circuit opens.
func breakerTune(clk *fakeClock) func(o *Options) {
	return func(o *Options) { o.BreakerProbeMin = 20 * time.Second; o.Now = clk.Now }
}

// upOrDown is a receiver that answers while up, and 502 otherwise.
func upOrDown(up *atomic.Bool, sends *atomic.Int64) script {
	return func(r send.Request, n int) send.Result {
		sends.Add(1)
		if up.Load() {
			return deliver(r, n)
		}
		return send.Result{Outcome: send.Retryable, Status: 502, Err: errString("HTTP 502")}
	}
}

// openCircuit starts h, accepts 5 events for "a" and steps the clock
// until the circuit is open; it returns the callback's status then.
func openCircuit(h *harness, clk *fakeClock) CallbackStatus {
	h.t.Helper()
	h.start()
	h.accept(evs("r1", 5)...)
	h.settle("a")
	for i := 0; h.status("a").Breaker != BreakerOpen; i++ {
		if i == 10 {
			h.t.Fatalf("circuit still closed: %+v", h.status("a"))
		}
		h.advance(clk, "a", time.Millisecond)
	}
	return h.status("a")
}

// A breaker judges a receiver: pointed at another URL, by a restart with a
// new file (or a new leader running one) or by a live reload, the callback
// is tried at once, and the record names the new URL.
func TestBreakerStartsClosedForAnotherURL(t *testing.T) {
	for _, reload := range []bool{false, true} {
		t.Run(map[bool]string{false: "restart", true: "reload"}[reload], func(t *testing.T) {
			dir, clk := t.TempDir(), newFakeClock()
			var up atomic.Bool
			var sends atomic.Int64
			s := newFakeSender()
			s.set("a", upOrDown(&up, &sends))
			h := newHarness(t, dir, s, breakerRouting(""), breakerTune(clk))
			was := openCircuit(h, clk)
			up.Store(true)
			moved := breakerRouting("http://elsewhere.test/a")
			if reload {
				h.d.SetRouting(moved)
			} else {
				h.stop()
				h = newHarness(t, dir, s, moved, breakerTune(clk))
				h.start()
			}
			h.advance(clk, "a", time.Millisecond) // the retries are due, the probe is not
			if clk.Now().After(was.NextProbe) {
				t.Fatal("test broken: the probe time passed")
			}
			h.waitFor("all delivered", func() bool { return h.count(store.Delivered) == 5 })
			if st := h.status("a"); st.Breaker != BreakerClosed {
				t.Fatalf("breaker for the new URL = %+v", st)
			}
			h.settle("a")
			rec, ok, err := h.st.Breaker(context.Background(), "a")
			if err != nil || !ok || rec.URL != "http://elsewhere.test/a" || rec.State != string(BreakerClosed) {
				t.Fatalf("record = %+v, %v, %v; want closed for the new URL", rec, ok, err)
			}
		})
	}
}

// TestBreakerSurvivesRestart: a restarted dispatcher on the same SQLite
// outbox does not start closed.
func TestBreakerSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	on := func(s *fakeSender, r *Routing, tune func(*Options)) *harness { return newHarness(t, dir, s, r, tune) }
	breakerHandover{first: on, second: on}.run(t)
}

// TestBreakerSurvivesLeaderChange: on a shared PostgreSQL store the new
// leader's dispatcher carries on from the old leader's breaker, and the
// old leader's breaker writes are fenced once it lost the lease.
func TestBreakerSurvivesLeaderChange(t *testing.T) {
	dsn := pgtest.Database(t)
	ctx := context.Background()
	open := func() *pgstore.Store {
		s, err := pgstore.Open(ctx, pgstore.Options{DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	lead := func(s *pgstore.Store, holder string) *pgstore.Fence {
		term, err := s.Acquire(ctx, "leader", holder, 0, time.Minute)
		if err != nil || term == 0 {
			t.Fatalf("%s acquiring the lease = %d, %v", holder, term, err)
		}
		f := &pgstore.Fence{Lease: "leader", Holder: holder, Term: term}
		s.SetFence(f)
		return f
	}
	stale := open() // writes as the old leader after the change
	t.Cleanup(func() { stale.Close() })
	var fenceA *pgstore.Fence
	breakerHandover{
		first: func(s *fakeSender, r *Routing, tune func(*Options)) *harness {
			a := open()
			fenceA = lead(a, "A")
			stale.SetFence(fenceA)
			return newHarnessOn(t, a, s, r, tune)
		},
		between: func() {
			if err := stale.Resign(ctx, "leader", "A", fenceA.Term); err != nil {
				t.Fatal(err)
			}
		},
		second: func(s *fakeSender, r *Routing, tune func(*Options)) *harness {
			b := open()
			if f := lead(b, "B"); f.Term != fenceA.Term+1 {
				t.Fatalf("B's term = %d, want %d", f.Term, fenceA.Term+1)
			}
			return newHarnessOn(t, b, s, r, tune)
		},
	}.run(t)
	err := stale.Commit(ctx, store.Write{Breakers: []store.Breaker{{Callback: "a", State: string(BreakerOpen), Failures: 99}}})
	if !errors.Is(err, pgstore.ErrFenced) {
		t.Fatalf("old leader's breaker write = %v, want ErrFenced", err)
	}
	rec, _, err := stale.Breaker(ctx, "a")
	if err != nil || rec.State != string(BreakerClosed) {
		t.Fatalf("recorded breaker after the fenced write = %+v, %v; want the new leader's closed", rec, err)
	}
}

// A healthy callback's breaker never changes, so it costs no write.
func TestHealthyCallbackRecordsNoBreaker(t *testing.T) {
	h := newHarness(t, "", newFakeSender(), routing(config.Callback{Name: "a"}), nil)
	h.start()
	h.accept(evs("r1", 5)...)
	h.waitFor("all delivered", func() bool { return h.count(store.Delivered) == 5 })
	h.settle("a")
	if rec, ok, err := h.st.Breaker(context.Background(), "a"); err != nil || ok {
		t.Fatalf("breaker record of a healthy callback = %+v, %v, %v; want none", rec, ok, err)
	}
}
