package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// BenchmarkCommitStates: the cost of persisting tracker states (new
// executions with random UUIDs, as Mistral's) by transaction size, into a
// table that already holds 50,000 rows. ns/op is per state.
func BenchmarkCommitStates(b *testing.B) {
	for _, batch := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "b.db"), Options{Exclusive: true})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			newStates := func(n int) []event.EntityState {
				out := make([]event.EntityState, n)
				for i := range out {
					id := uuid.NewString()
					out[i] = event.EntityState{Kind: event.KindExecution, ID: id, RootID: id, State: "RUNNING",
						UpdatedAt: "2026-11-28 09:00:00", LastSeq: 1}
				}
				return out
			}
			for range 50 {
				if err := s.Commit(ctx, Write{States: newStates(1000)}); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				if err := s.Commit(ctx, Write{States: newStates(batch)}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpenExclusive: what the dispatcher's Open costs with its
// integrity check (quick_check reads every page), by outbox size, against
// the CLI's Open without it. Each delivery carries a ~1 KiB event. ns/op is
// per Open.
func BenchmarkOpenExclusive(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("deliveries=%d", n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), FileName)
			s, err := Open(path, Options{Exclusive: true})
			if err != nil {
				b.Fatal(err)
			}
			info := strings.Repeat("x", 800)
			for i := 0; i < n; i += 1000 {
				var ins []Delivery
				for j := i; j < min(i+1000, n); j++ {
					id := uuid.NewString()
					e := &event.Event{ID: id, Type: event.WorkflowLaunched, RootExecutionID: id, Sequence: 1,
						Execution: &event.Execution{ID: id, State: event.StateRunning, StateInfo: &info}}
					d, _ := NewDelivery(e, "cb", time.Now())
					ins = append(ins, d)
				}
				if err := s.Commit(context.Background(), Write{Insert: ins}); err != nil {
					b.Fatal(err)
				}
			}
			s.Close()
			for _, excl := range []bool{true, false} {
				b.Run(fmt.Sprintf("exclusive=%v", excl), func(b *testing.B) {
					for range b.N {
						s, err := Open(path, Options{Exclusive: excl})
						if err != nil {
							b.Fatal(err)
						}
						s.Close()
					}
					if fi, err := os.Stat(path); err == nil {
						b.ReportMetric(float64(fi.Size())/(1<<20), "MiB")
					}
				})
			}
		})
	}
}
