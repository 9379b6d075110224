package listeners

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// BenchmarkPrimeSubExecution measures what activating a listener on a
// sub-execution holds Accepts for, besides one commit: reading and decoding
// the history of its root (prime, run as AddListenerWith's Ready), for
// roots of growing size on the SQLite store.
func BenchmarkPrimeSubExecution(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			st, err := store.Open(filepath.Join(b.TempDir(), "tap.db"), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			tr := newTree()
			for i := 0; len(tr.evs) < n; i++ {
				typ := event.TaskLaunched
				if i%2 == 1 {
					typ = event.TaskSucceeded
				}
				tr.task(fmt.Sprintf("T%d", i/2), "P", "wb.parent", typ)
			}
			var w store.Write
			now := time.Now().UTC()
			for _, ev := range tr.evs {
				body, err := json.Marshal(ev)
				if err != nil {
					b.Fatal(err)
				}
				w.Events = append(w.Events, store.Recorded{ID: ev.ID, RootID: "P", EntityID: ev.EntityID(),
					Type: string(ev.Type), Seq: ev.Sequence, CreatedAt: now, Event: body})
			}
			if err := st.Commit(context.Background(), w); err != nil {
				b.Fatal(err)
			}
			r := &Registry{o: RegistryOptions{Store: st}, log: slog.New(slog.DiscardHandler)}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				lv, err := newLive(store.Listener{Scope: ScopeExecution, ScopeValue: "S", RootID: "P", Events: []string{"*"}})
				if err != nil {
					b.Fatal(err)
				}
				if err := r.prime(context.Background(), lv, []string{"P"}); err != nil {
					b.Fatal(err)
				}
				if !lv.execs["SS"] {
					b.Fatal("prime did not learn the subtree")
				}
			}
		})
	}
}
