package notifier

import (
	"cmp"
	"context"
	"fmt"

	"github.com/mistral-tap/mistral-tap/notifier/send"
)

// Transports is a Sender that hands each request to the transport of its
// callback's type (send.Request.Transport; "" is "http"). Each transport
// makes one delivery per Send and classifies its outcome, so the outbox's
// ordering, retries, dead letters and breaker apply to all of them alike.
// A new transport (Kafka, NATS) is one more entry, keyed by the type name
// that config accepts.
type Transports map[string]Sender

// Send implements Sender. A type with no transport is a permanent failure.
func (t Transports) Send(ctx context.Context, r send.Request) send.Result {
	typ := cmp.Or(r.Transport, "http")
	s := t[typ]
	if s == nil {
		return send.Result{Outcome: send.Permanent, Err: fmt.Errorf("notifier: callback %q: no %q transport in this process", r.Callback, typ)}
	}
	return s.Send(ctx, r)
}
