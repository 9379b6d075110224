package track

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

type discardSink struct{}

func (discardSink) Accept(context.Context, []event.Event, []event.EntityState) error { return nil }

// BenchmarkTrackerMemory fills a Tracker with n tracked entities (half
// executions, half their tasks, as a poll or a tapped list reveals them)
// and reports the heap in use after GC per entity. Target: < 1 KiB.
func BenchmarkTrackerMemory(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("entities=%d", n), func(b *testing.B) {
			var perEntity float64
			for b.Loop() {
				perEntity = fillAndMeasure(b, n)
			}
			b.ReportMetric(perEntity, "bytes/entity")
		})
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func fillAndMeasure(b *testing.B, n int) float64 {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tr, err := New(Options{Sink: discardSink{}, Horizon: now.Add(-time.Hour), Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	before := heapInUse()
	ts := now.Format(tsLayout)
	const batch = 1000
	for i := 0; i < n; i += batch {
		obs := make([]event.Observation, 0, batch)
		for j := i; j < i+batch && j < n; j += 2 {
			xid := fmt.Sprintf("6b9f0c1e-1111-4a5b-9c1d-%012d", j)
			tid := fmt.Sprintf("7c0a1d2f-2222-4b6c-8d2e-%012d", j+1)
			upd := ts
			obs = append(obs,
				event.Observation{Source: event.SourceWatch, RequestedAt: now, Execution: &event.Execution{
					ID: xid, WorkflowName: "wf", State: event.StateRunning, CreatedAt: ts, UpdatedAt: &upd}},
				event.Observation{Source: event.SourceWatch, RequestedAt: now, Task: &event.Task{
					ID: tid, Name: "t1", WorkflowName: "wf", WorkflowExecutionID: xid, State: event.StateRunning, CreatedAt: ts, UpdatedAt: &upd}},
			)
		}
		if err := tr.process(context.Background(), obs); err != nil {
			b.Fatal(err)
		}
	}
	after := heapInUse()
	if got := len(tr.entities); got != n {
		b.Fatalf("tracked %d entities, want %d", got, n)
	}
	runtime.KeepAlive(tr)
	return float64(after-before) / float64(n)
}
