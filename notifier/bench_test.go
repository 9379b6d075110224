package notifier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"syscall"
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

// benchEvents makes n events spread over roots roots, like a busy engine:
// ids as the tracker makes them (event.NewID) and Mistral's UUIDs, whose
// length and randomness are what the store's indexes pay for.
func benchEvents(prefix string, n, roots int) []event.Event {
	out := make([]event.Event, n)
	now := time.Now()
	for i := range out {
		root := benchUUID(fmt.Sprintf("%s-root-%d", prefix, i%roots))
		task := benchUUID(fmt.Sprintf("%s-t%d", prefix, i))
		out[i] = event.Event{
			ID:   event.NewID(event.KindTask, task, event.TaskSucceeded, event.StateSuccess, "2025-01-01 00:00:00", 0),
			Type: event.TaskSucceeded, Sequence: uint64(i/roots + 1),
			RootExecutionID: root, Time: now, Source: event.SourceTap,
			Task: &event.Task{ID: task, Name: "task", WorkflowExecutionID: root,
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
			// One tracker state per event, as the tracker hands over.
			states := make([]event.EntityState, len(evs))
			for i, ev := range evs {
				states[i] = event.EntityState{Kind: event.KindTask, ID: ev.Task.ID, RootID: ev.RootExecutionID,
					State: ev.Task.State, UpdatedAt: ev.Task.CreatedAt}
			}
			b.ResetTimer()
			cpu0 := cpuTime()
			start := time.Now()
			for i := 0; i < len(evs); i += 100 {
				j := min(i+100, len(evs))
				if err := h.d.Accept(ctx, evs[i:j], states[i:j]); err != nil {
					b.Fatal(err)
				}
			}
			for h.d.Status()[0].Pending > 0 {
				time.Sleep(100 * time.Microsecond)
			}
			el := time.Since(start)
			cpu := cpuTime() - cpu0
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "deliveries/s")
			// CPU (user+system, whole process) per delivery: what the
			// store costs mistral-tap's shared cores, less noisy than
			// the rate on this box.
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/delivery")
		})
	}
}

// benchUUID is a UUID (Mistral's id format) derived from s.
func benchUUID(s string) string {
	h := sha256.Sum256([]byte(s))
	x := hex.EncodeToString(h[:16])
	return x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkOutboxAccept measures the cost per event of writing deliveries
// for one callback, per Accept batch size (one transaction per batch), with
// the dispatcher not running so that nothing else competes for the writer;
// history=on also records every event (Options.History, the listeners API).
func BenchmarkOutboxAccept(b *testing.B) {
	for _, history := range []bool{false, true} {
		for _, batch := range []int{1, 100, 1000} {
			b.Run(fmt.Sprintf("history=%s/batch=%d", onOff(history), batch), func(b *testing.B) {
				r := routing(config.Callback{Name: "a"})
				h := newHarness(b, b.TempDir(), nil, r, func(o *Options) { o.Sender = ackSender{}; o.History = history })
				// Not running: Accept commits directly, nothing is sent.
				evs := benchEvents(b.Name(), b.N, 200)
				b.ResetTimer()
				cpu0 := cpuTime()
				start := time.Now()
				for i := 0; i < len(evs); i += batch {
					if err := h.d.Accept(context.Background(), evs[i:min(i+batch, len(evs))], nil); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
				// CPU per event: steadier than the rate on shared cores.
				b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/event")
			})
		}
	}
}

// BenchmarkAcceptUnmatched measures the common case: events that no
// callback wants, handed over with their tracker states in batches of 100
// to a running dispatcher (states deferred, Options.StatesDelay), durable at
// the end; history=on adds a history row per event to those transactions.
func BenchmarkAcceptUnmatched(b *testing.B) {
	for _, history := range []bool{false, true} {
		b.Run("history="+onOff(history), func(b *testing.B) {
			h := newHarness(b, b.TempDir(), nil, &Routing{}, func(o *Options) { o.Sender = ackSender{}; o.History = history })
			h.start()
			ctx := context.Background()
			evs := benchEvents(b.Name(), b.N, 200)
			states := make([]event.EntityState, len(evs))
			for i, ev := range evs {
				states[i] = event.EntityState{Kind: event.KindTask, ID: ev.Task.ID, RootID: ev.RootExecutionID,
					State: ev.Task.State, UpdatedAt: ev.Task.CreatedAt}
			}
			b.ResetTimer()
			cpu0 := cpuTime()
			start := time.Now()
			for i := 0; i < len(evs); i += 100 {
				j := min(i+100, len(evs))
				if err := h.d.Accept(ctx, evs[i:j], states[i:j]); err != nil {
					b.Fatal(err)
				}
			}
			// Durable once a later write is (the committer keeps order).
			if err := h.d.SetCheckpoint(ctx, "bench", "end"); err != nil {
				b.Fatal(err)
			}
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/event")
		})
	}
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
