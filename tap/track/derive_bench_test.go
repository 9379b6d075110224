package track

import (
	"fmt"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// BenchmarkDeriveNewRoots derives one batch of new top-level executions
// (one WORKFLOW_LAUNCHED each), what a burst of POSTs or a tapped list of
// fresh executions hands the tracker. Per-batch lookups must stay linear.
func BenchmarkDeriveNewRoots(b *testing.B) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ts := now.Format(tsLayout)
	for _, n := range []int{16, 1000} {
		obs := make([]event.Observation, n)
		for i := range obs {
			obs[i] = event.Observation{Source: event.SourceTap, RequestedAt: now, Execution: &event.Execution{
				ID: fmt.Sprintf("x-%06d", i), WorkflowName: "wb.wf", State: event.StateRunning, CreatedAt: ts}}
		}
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			tr, err := New(Options{Sink: discardSink{}, Horizon: now.Add(-time.Hour), Now: func() time.Time { return now }})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if c := tr.derive(obs); len(c.events) != n {
					b.Fatalf("%d events", len(c.events))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
		})
	}
}
