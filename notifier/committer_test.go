package notifier

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// commitLog is a Writer that records each transaction's writes,
// identified by their first state's id.
type commitLog struct {
	mu  sync.Mutex
	txs [][]string
	at  []time.Time
}

func (c *commitLog) Commit(_ context.Context, ws ...store.Write) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	for _, w := range ws {
		ids = append(ids, w.States[0].ID)
	}
	c.txs = append(c.txs, ids)
	c.at = append(c.at, time.Now())
	return nil
}

func (c *commitLog) snapshot() ([][]string, []time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]string(nil), c.txs...), append([]time.Time(nil), c.at...)
}

func stateWrite(id string) store.Write {
	return store.Write{States: []event.EntityState{{ID: id}}}
}

// TestCommitterDefersStates: writes nobody waits for share a transaction
// (they wait up to deferDelay for company); a write somebody waits for
// takes the deferred ones before it along at once; stop flushes the rest;
// and across transactions the submission order is kept.
func TestCommitterDefersStates(t *testing.T) {
	cases := []struct {
		name string
		// ops: "d" deferred, "w" waited for; "|" sleeps 2×deferDelay.
		ops     string
		wantTxs []string // ids per transaction, concatenated
	}{
		{"burst of deferred writes is one transaction", "dddd", []string{"0123"}},
		{"waited-for write takes the deferred ones along", "dddw", []string{"0123"}},
		{"deferred after a waited-for write are deferred", "w|ddd", []string{"0", "234"}},
		{"two bursts apart are two transactions", "dd|dd", []string{"01", "34"}},
		{"stop flushes deferred writes", "ddd!", []string{"012"}},
	}
	const deferDelay = 40 * time.Millisecond
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			log := &commitLog{}
			cm := newCommitter(log, 0, deferDelay, nil)
			var waits []chan error
			start := time.Now()
			stopped := false
			for i, o := range c.ops {
				id := string(rune('0' + i))
				switch o {
				case 'd':
					if err := cm.submitDeferred(stateWrite(id), nil); err != nil {
						t.Fatal(err)
					}
				case 'w':
					res := make(chan error, 1)
					if err := cm.submit(stateWrite(id), func(err error) { res <- err }); err != nil {
						t.Fatal(err)
					}
					waits = append(waits, res)
				case '|':
					time.Sleep(2 * deferDelay)
				case '!':
					cm.stop()
					stopped = true
				}
			}
			for _, w := range waits {
				select {
				case err := <-w:
					if err != nil {
						t.Fatal(err)
					}
				case <-time.After(deferDelay / 2):
					t.Fatalf("a waited-for write was not committed within %v: it waited for the deferral", deferDelay/2)
				}
			}
			if !stopped {
				time.Sleep(2 * deferDelay)
				cm.stop()
			}
			txs, at := log.snapshot()
			var got []string
			for _, tx := range txs {
				s := ""
				for _, id := range tx {
					s += id
				}
				got = append(got, s)
			}
			if len(got) != len(c.wantTxs) {
				t.Fatalf("transactions %q, want %q", got, c.wantTxs)
			}
			for i := range got {
				if got[i] != c.wantTxs[i] {
					t.Fatalf("transactions %q, want %q", got, c.wantTxs)
				}
			}
			if c.ops == "dddd" {
				if d := at[0].Sub(start); d < deferDelay/2 {
					t.Errorf("deferred burst committed after %v, expected it to wait ~%v for company", d, deferDelay)
				}
			}
		})
	}
}

// TestAcceptDefersStateOnlyWrites: tracker states whose events matched no
// callback are saved without Accept waiting (Options.StatesDelay), are
// durable within the delay, and a write with deliveries is durable only
// together with every state accepted before it. StatesDelay < 0 keeps them
// synchronous.
func TestAcceptDefersStateOnlyWrites(t *testing.T) {
	for _, c := range []struct {
		name  string
		delay time.Duration
		sync  bool
	}{
		{"deferred", 200 * time.Millisecond, false},
		{"synchronous", -1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, "", newFakeSender(), routing(config.Callback{Name: "cb"}), func(o *Options) { o.StatesDelay = c.delay })
			h.start()
			ctx := context.Background()
			states := func() int {
				all, err := h.st.LoadStates(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return len(all)
			}
			if err := h.d.Accept(ctx, nil, []event.EntityState{{ID: "a", RootID: "a"}}); err != nil {
				t.Fatal(err)
			}
			if got, want := states(), map[bool]int{true: 1, false: 0}[c.sync]; got != want {
				t.Fatalf("right after Accept: %d states saved, want %d", got, want)
			}
			if !c.sync {
				h.waitFor("deferred state saved", func() bool { return states() == 1 })
			}
			// A deferred state, then a delivery: both durable when Accept returns.
			if err := h.d.Accept(ctx, nil, []event.EntityState{{ID: "b", RootID: "b"}}); err != nil {
				t.Fatal(err)
			}
			if err := h.d.Accept(ctx, evs("c", 1), []event.EntityState{{ID: "c", RootID: "c"}}); err != nil {
				t.Fatal(err)
			}
			if got := states(); got != 3 {
				t.Fatalf("after a delivery's Accept: %d states saved, want 3 (the deferred one goes along)", got)
			}
		})
	}
}

// TestCheckpointWaitsForDeferredStates: a checkpoint saved after deferred
// states is durable only together with them (the watcher's checkpoint must
// never move past an observation whose state a crash could still lose).
func TestCheckpointWaitsForDeferredStates(t *testing.T) {
	h := newHarness(t, "", newFakeSender(), routing(config.Callback{Name: "cb"}), func(o *Options) { o.StatesDelay = time.Hour })
	h.start()
	ctx := context.Background()
	if err := h.d.Accept(ctx, nil, []event.EntityState{{ID: "a", RootID: "a"}}); err != nil {
		t.Fatal(err)
	}
	if all, _ := h.st.LoadStates(ctx); len(all) != 0 {
		t.Fatalf("%d states saved right after Accept, want 0 (deferred for an hour)", len(all))
	}
	if err := h.d.SetCheckpoint(ctx, "watch.updated_at", "2026-11-28 10:00:00"); err != nil {
		t.Fatal(err)
	}
	all, err := h.st.LoadStates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := h.st.Checkpoint(ctx, "watch.updated_at")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || cp != "2026-11-28 10:00:00" {
		t.Fatalf("after SetCheckpoint: %d states, checkpoint %q; want the deferred state saved with it", len(all), cp)
	}
}
