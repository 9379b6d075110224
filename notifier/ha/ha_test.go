package ha_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/ha"
	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore"
	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore/pgtest"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// recorder is a Sender that records when each send reached "the receiver".
type recorder struct {
	mu    sync.Mutex
	sends []time.Time
}

func (r *recorder) Send(ctx context.Context, _ send.Request) send.Result {
	r.mu.Lock()
	r.sends = append(r.sends, time.Now())
	r.mu.Unlock()
	return send.Result{Outcome: send.Delivered}
}

func (r *recorder) last() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sends) == 0 {
		return time.Time{}
	}
	return r.sends[len(r.sends)-1]
}

func openPG(t *testing.T, dsn string) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(context.Background(), pgstore.Options{DSN: dsn, ConnectTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestCutOffLeaderNeverSendsOnAStaleLease cuts the leader off the database
// while it keeps sending; it must stop sending before the follower takes
// over, and its completions must be refused afterwards.
func TestCutOffLeaderNeverSendsOnAStaleLease(t *testing.T) {
	dsn := pgtest.Database(t)
	px, viaProxy := pgtest.NewProxy(t, dsn)
	stA, stB := openPG(t, viaProxy), openPG(t, dsn)
	const ttl = 3 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	a := ha.NewElector(ha.ElectorOptions{Store: stA, Holder: "A", TTL: ttl})
	rec := &recorder{}
	guard := ha.GuardSender(rec, a.Current)
	aTerm := make(chan int64, 1)
	aLost := make(chan time.Time, 1)
	go a.Run(ctx, func(ctx context.Context, l *ha.Lease) error {
		stA.SetFence(&pgstore.Fence{Lease: "leader", Holder: "A", Term: l.Term})
		aTerm <- l.Term
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				// The elector closes Lost and then ends ctx: a select
				// that finds both ready may take this case.
				if !l.Valid() {
					aLost <- time.Now()
				}
				return nil
			case <-l.Lost():
				aLost <- time.Now()
				<-ctx.Done()
				return nil
			case <-tick.C:
				guard.Send(ctx, send.Request{})
			}
		}
	})
	termA := <-aTerm
	b := ha.NewElector(ha.ElectorOptions{Store: stB, Holder: "B", TTL: ttl})
	bLed := make(chan time.Time, 1)
	bTerm := make(chan int64, 1)
	go b.Run(ctx, func(ctx context.Context, l *ha.Lease) error {
		bLed <- time.Now()
		bTerm <- l.Term
		<-ctx.Done()
		return nil
	})
	time.Sleep(ttl / 2) // B campaigns in vain while A renews
	select {
	case <-bLed:
		t.Fatal("B led while A's lease was valid")
	default:
	}
	if rec.last().IsZero() {
		t.Fatal("A never sent while leading")
	}
	cutAt := time.Now()
	px.Cut()
	lostAt := <-aLost
	tookOver := <-bLed
	if got := <-bTerm; got != termA+1 {
		t.Errorf("B's term = %d, want %d", got, termA+1)
	}
	if !lostAt.Before(tookOver) {
		t.Errorf("A stopped trusting its lease at %v, after B took over at %v", lostAt, tookOver)
	}
	if last := rec.last(); !last.Before(tookOver) {
		t.Errorf("A sent at %v, after B took over at %v", last, tookOver)
	}
	if d := tookOver.Sub(cutAt); d > ttl+ttl/5+time.Second {
		t.Errorf("takeover took %v after the cut, bound is %v", d, ttl+ttl/5)
	}
	t.Logf("cut → A stepped down %v, B took over %v", lostAt.Sub(cutAt), tookOver.Sub(cutAt))
	if res := guard.Send(ctx, send.Request{}); res.Outcome != send.Retryable {
		t.Errorf("send after loss = %v, want refused (retryable)", res.Outcome)
	}
	// Reconnected, A's completions under its old term are refused.
	px.Restore()
	u := store.Update{ID: "x", State: store.Delivered, UpdatedAt: time.Now()}
	var err error
	for range 50 {
		if err = stA.Commit(ctx, store.Write{Updates: []store.Update{u}}); errors.Is(err, pgstore.ErrFenced) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !errors.Is(err, pgstore.ErrFenced) {
		t.Fatalf("stale completion = %v, want ErrFenced", err)
	}
}

// blockingAppender fails while down and blocks while held.
type blockingAppender struct {
	mu   sync.Mutex
	down bool
	hold chan struct{}
	got  [][]event.Observation
}

func (b *blockingAppender) AppendObservations(ctx context.Context, _ string, batches [][]event.Observation) error {
	if b.hold != nil {
		<-b.hold
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		return errors.New("connection refused")
	}
	b.got = append(b.got, batches...)
	return nil
}

func obs(id string) []event.Observation {
	return []event.Observation{{Source: event.SourceTap, Execution: &event.Execution{ID: id}}}
}

func TestForwarderNeverBlocksAndBoundsItsBuffer(t *testing.T) {
	app := &blockingAppender{down: true, hold: make(chan struct{})}
	f := ha.NewForwarder(ha.ForwarderOptions{Store: app, Replica: "r", MaxBuffered: 3})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	// The appender is stuck: Observe still returns at once.
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		f.ObserveAll(obs(id))
	}
	if s := f.Stats(); s.Buffered != 3 || s.Dropped != 2 {
		t.Fatalf("stats while stuck = %+v, want 3 buffered, 2 dropped", s)
	}
	close(app.hold) // the stuck append fails: the database is still down
	// Wait for that failure: flipping down below before the stuck append
	// has looked at it would let it succeed with a batch already dropped.
	for deadline := time.Now().Add(10 * time.Second); f.Stats().Failures == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	f.ObserveAll(obs("f"))
	if s := f.Stats(); s.Buffered != 3 || s.Dropped != 3 {
		t.Fatalf("stats after one more = %+v, want 3 buffered, 3 dropped", s)
	}
	app.mu.Lock()
	app.down = false
	app.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for f.Stats().Buffered > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	app.mu.Lock()
	defer app.mu.Unlock()
	var ids []string
	for _, b := range app.got {
		ids = append(ids, b[0].Execution.ID)
	}
	if want := []string{"d", "e", "f"}; len(ids) != 3 || ids[0] != want[0] || ids[1] != want[1] || ids[2] != want[2] {
		t.Fatalf("appended %v, want %v (oldest dropped, order kept)", ids, want)
	}
	if s := f.Stats(); s.Forwarded != 3 || s.Dropped != 3 {
		t.Fatalf("final stats %+v", s)
	}
}

// countingSender counts sends.
type countingSender struct{ n int }

func (c *countingSender) Send(context.Context, send.Request) send.Result {
	c.n++
	return send.Result{Outcome: send.Delivered, Status: 204}
}

func TestGuardSenderDoesNotRepeatADeliveredSend(t *testing.T) {
	cs := &countingSender{}
	lease := ha.NewTestLease(1)
	g := ha.GuardSender(cs, func() *ha.Lease { return lease })
	r := send.Request{Callback: "cb", EventID: "evt_1"}
	for range 3 {
		if res := g.Send(context.Background(), r); res.Outcome != send.Delivered {
			t.Fatalf("outcome %v", res.Outcome)
		}
	}
	lease = ha.NewTestLease(2) // lost and regained: the receiver has it
	g.Send(context.Background(), r)
	if cs.n != 1 {
		t.Fatalf("receiver got %d sends of one delivery, want 1", cs.n)
	}
	g.Send(context.Background(), send.Request{Callback: "cb", EventID: "evt_2"})
	if cs.n != 2 {
		t.Fatalf("another delivery: %d sends, want 2", cs.n)
	}
	lease = nil
	if res := g.Send(context.Background(), send.Request{Callback: "cb", EventID: "evt_3"}); res.Outcome != send.Retryable || cs.n != 2 {
		t.Fatalf("without a lease: %v, %d sends", res.Outcome, cs.n)
	}
}

// slowLeases grants term 1 on a campaign that takes slow by the injected
// clock, then fails every renewal (the database is gone).
type slowLeases struct {
	mu    sync.Mutex
	now   time.Time
	slow  time.Duration
	calls int
}

func (s *slowLeases) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now
}

func (s *slowLeases) Acquire(context.Context, string, string, int64, time.Duration) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.calls > 1 {
		return 0, errors.New("connection refused")
	}
	s.now = s.now.Add(s.slow)
	return 1, nil
}

func (s *slowLeases) Resign(context.Context, string, string, int64) error { return nil }

// TestLeaseTrustCountsFromWhenTheRenewalWasSent: a lease acquired by a
// request that took half the TTL is trusted for TTL - TTL/5 from when the
// request was sent, i.e. for 0.3 TTL more, not for that plus twice the
// round trip (the timer added the elapsed time instead of subtracting it).
func TestLeaseTrustCountsFromWhenTheRenewalWasSent(t *testing.T) {
	const ttl = 2 * time.Second
	st := &slowLeases{now: time.Now(), slow: ttl / 2}
	e := ha.NewElector(ha.ElectorOptions{Store: st, Holder: "A", TTL: ttl, Now: st.Now})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	led := make(chan time.Time, 1)
	lost := make(chan time.Time, 1)
	go e.Run(ctx, func(ctx context.Context, l *ha.Lease) error {
		led <- time.Now()
		<-l.Lost()
		lost <- time.Now()
		<-ctx.Done()
		return nil
	})
	from := <-led
	select {
	case at := <-lost:
		// 0.3 TTL = 600ms is the bound; the bug gave 2.6 s.
		if d := at.Sub(from); d > ttl*3/10+500*time.Millisecond {
			t.Errorf("lease trusted %v after it was granted, want about %v", d, ttl*3/10)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("lease never lost")
	}
}
