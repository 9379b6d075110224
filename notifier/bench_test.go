package notifier

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// ackSender is a receiver that acknowledges at once.
type ackSender struct{}

func (ackSender) Send(context.Context, send.Request) send.Result {
	return send.Result{Outcome: send.Delivered, Status: 204}
}

// benchEvents makes n events spread over roots roots, like a busy engine.
func benchEvents(prefix string, n, roots int) []event.Event {
	out := make([]event.Event, n)
	now := time.Now()
	for i := range out {
		root := fmt.Sprintf("%s-root-%d", prefix, i%roots)
		out[i] = event.Event{
			ID: fmt.Sprintf("evt_%s_%d", prefix, i), Type: event.TaskSucceeded, Sequence: uint64(i/roots + 1),
			RootExecutionID: root, Time: now, Source: event.SourceTap,
			Task: &event.Task{ID: fmt.Sprintf("%s-t%d", prefix, i), Name: "task", WorkflowExecutionID: root,
				WorkflowName: "wb.wf", State: event.StateSuccess, Type: "ACTION", ProjectID: "p",
				CreatedAt: "2025-01-01 00:00:00"},
		}
	}
	return out
}

// BenchmarkDurableDelivery measures end-to-end durable deliveries: Accept
// in batches of 100 (one transaction each, synchronous=FULL), sends to a
// receiver that acks at once, completion recorded durably.
func BenchmarkDurableDelivery(b *testing.B) {
	for _, tc := range []struct {
		ordering    string
		concurrency int
	}{{"root", 4}, {"root", 32}, {"none", 32}} {
		b.Run(fmt.Sprintf("ordering=%s/concurrency=%d", tc.ordering, tc.concurrency), func(b *testing.B) {
			r := routing(config.Callback{Name: "a", Ordering: tc.ordering, Concurrency: tc.concurrency})
			h := newHarness(b, b.TempDir(), nil, r, func(o *Options) { o.Sender = ackSender{} })
			h.start()
			ctx := context.Background()
			evs := benchEvents(b.Name(), b.N, 200)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < len(evs); i += 100 {
				if err := h.d.Accept(ctx, evs[i:min(i+100, len(evs))], nil); err != nil {
					b.Fatal(err)
				}
			}
			for h.d.Status()[0].Pending > 0 {
				time.Sleep(100 * time.Microsecond)
			}
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkOutboxAccept measures the cost per event of writing deliveries
// for one callback, per Accept batch size (one transaction per batch), with
// the dispatcher not running so that nothing else competes for the writer.
func BenchmarkOutboxAccept(b *testing.B) {
	for _, batch := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			r := routing(config.Callback{Name: "a"})
			h := newHarness(b, b.TempDir(), nil, r, func(o *Options) { o.Sender = ackSender{} })
			// Not running: Accept commits directly, nothing is sent.
			evs := benchEvents(b.Name(), b.N, 200)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < len(evs); i += batch {
				if err := h.d.Accept(context.Background(), evs[i:min(i+batch, len(evs))], nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}
