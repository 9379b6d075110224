package ha

import (
	"context"
	"errors"

	"github.com/mistral-tap/mistral-tap/notifier/send"
)

// Sender is the dispatcher's sender.
type Sender interface {
	Send(ctx context.Context, r send.Request) send.Result
}

// errNotLeader is the result of a send attempted without a trusted lease.
var errNotLeader = errors.New("not the leader (lease lost): not sent")

// GuardSender returns a Sender that sends only under a trusted lease
// (current returns nil otherwise) and cancels a send in flight when that
// lease is lost. The database fences the recording of the outcome; this
// keeps a deposed leader from reaching the receiver at all once it knows.
func GuardSender(s Sender, current func() *Lease) Sender { return guard{s, current} }

type guard struct {
	s       Sender
	current func() *Lease
}

func (g guard) Send(ctx context.Context, r send.Request) send.Result {
	l := g.current()
	if l == nil {
		return send.Result{Outcome: send.Retryable, Err: errNotLeader}
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
	return g.s.Send(ctx, r)
}
