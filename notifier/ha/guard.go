package ha

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/send"
)

// Sender is the dispatcher's sender.
type Sender interface {
	Send(ctx context.Context, r send.Request) send.Result
}

// errNotLeader is the result of a send attempted without a trusted lease.
var errNotLeader = errors.New("not the leader (lease lost): not sent")

// deliveredTTL is how long GuardSender remembers a delivered send: longer
// than the dispatcher's retry of an outcome it could not record (1 s).
const deliveredTTL = 2 * time.Minute

// GuardSender returns a Sender that sends only under a trusted lease
// (current returns nil otherwise) and cancels a send in flight when that
// lease is lost. The database fences the recording of the outcome; this
// keeps a deposed leader from reaching the receiver at all once it knows.
//
// It also remembers, for deliveredTTL, the deliveries the receiver
// accepted: when recording the outcome failed (the database is briefly
// unreachable, or this replica lost and regained the lease meanwhile) the
// dispatcher tries the delivery again, and the answer is then the
// remembered one rather than a repeat at the receiver. Another replica
// taking over remembers nothing, so it may repeat a delivery that was in
// flight, with the same webhook-id.
func GuardSender(s Sender, current func() *Lease) Sender {
	return &guard{s: s, current: current, sent: map[string]sentEntry{}}
}

type guard struct {
	s       Sender
	current func() *Lease

	mu    sync.Mutex
	sent  map[string]sentEntry
	prune time.Time
}

type sentEntry struct {
	at  time.Time
	res send.Result
}

func (g *guard) Send(ctx context.Context, r send.Request) send.Result {
	l := g.current()
	if l == nil {
		return send.Result{Outcome: send.Retryable, Err: errNotLeader}
	}
	key := r.Callback + "\x00" + r.EventID
	g.mu.Lock()
	e, ok := g.sent[key]
	g.mu.Unlock()
	if ok {
		return e.res
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-l.Lost():
			cancel()
		case <-ctx.Done():
		}
	}()
	res := g.s.Send(ctx, r)
	if res.Outcome == send.Delivered {
		g.remember(key, sentEntry{at: time.Now(), res: res})
	}
	return res
}

func (g *guard) remember(key string, e sentEntry) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sent[key] = e
	if e.at.Sub(g.prune) < deliveredTTL/4 {
		return
	}
	g.prune = e.at
	for k, x := range g.sent {
		if e.at.Sub(x.at) > deliveredTTL {
			delete(g.sent, k)
		}
	}
}
