package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

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
