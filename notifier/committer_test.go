package notifier

import (
	"context"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// commitLog is a Writer that records each transaction's writes,
// identified by their first state's id, and wakes waiters.
type commitLog struct {
	mu      sync.Mutex
	txs     [][]string
	writes  int
	changed chan struct{} // closed and replaced at every commit
}

func newCommitLog() *commitLog { return &commitLog{changed: make(chan struct{})} }

func (c *commitLog) Commit(_ context.Context, ws ...store.Write) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	for _, w := range ws {
		ids = append(ids, w.States[0].ID)
	}
	c.txs = append(c.txs, ids)
	c.writes += len(ws)
	close(c.changed)
	c.changed = make(chan struct{})
	return nil
}

func (c *commitLog) snapshot() (txs [][]string, writes int, changed <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]string(nil), c.txs...), c.writes, c.changed
}

func stateWrite(id string) store.Write {
	return store.Write{States: []event.EntityState{{ID: id}}}
}

// fakeTimers hands the committer timers that expire when the test says.
type fakeTimers struct {
	mu      sync.Mutex
	cur     chan time.Time // the armed timer, nil when none
	d       time.Duration
	changed chan struct{} // closed and replaced at every arm
}

func newFakeTimers() *fakeTimers { return &fakeTimers{changed: make(chan struct{})} }

func (f *fakeTimers) timer(d time.Duration) (<-chan time.Time, func()) {
	ch := make(chan time.Time, 1)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cur, f.d = ch, d
	close(f.changed)
	f.changed = make(chan struct{})
	return ch, func() {
		f.mu.Lock()
		if f.cur == ch {
			f.cur = nil
		}
		f.mu.Unlock()
	}
}

// waitArmed waits until a timer of d is armed.
func (f *fakeTimers) waitArmed(t *testing.T, d time.Duration) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		f.mu.Lock()
		ok, changed := f.cur != nil && f.d == d, f.changed
		f.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("no timer of %v armed", d)
		}
	}
}

// fire expires the armed timer, if any, and reports its duration.
func (f *fakeTimers) fire() (time.Duration, bool) {
	f.mu.Lock()
	ch, d := f.cur, f.d
	f.cur = nil
	f.mu.Unlock()
	if ch == nil {
		return 0, false
	}
	ch <- time.Time{}
	return d, true
}

// TestCommitterDefersStates: writes nobody waits for share a transaction
// (they wait up to deferDelay for company); a write somebody waits for
// takes the deferred ones before it along at once; stop flushes the rest;
// and across transactions the submission order is kept. Time passes only
// where a case says so: the committer's timers are fake.
func TestCommitterDefersStates(t *testing.T) {
	cases := []struct {
		name string
		// ops: "d" deferred, "w" waited for; "|" time passes until
		// every write so far is committed; "!" stop.
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
			log, timers := newCommitLog(), newFakeTimers()
			cm := makeCommitter(log, 0, deferDelay, nil)
			cm.timer = timers.timer
			go cm.run()
			submitted := 0
			// pass lets time pass until every submitted write is
			// committed: it fires the deferral's timer once the committer
			// has taken every queued write (so none races the expiry).
			pass := func() {
				timeout := time.After(5 * time.Second)
				for {
					_, n, committed := log.snapshot()
					if n == submitted {
						return
					}
					for len(cm.ops) > 0 {
						runtime.Gosched()
					}
					timers.mu.Lock()
					armed := timers.changed
					timers.mu.Unlock()
					if d, ok := timers.fire(); ok && d != deferDelay {
						t.Fatalf("timer of %v, want the deferral %v", d, deferDelay)
					}
					select {
					case <-committed:
					case <-armed:
					case <-timeout:
						t.Fatalf("%d of %d writes committed", n, submitted)
					}
				}
			}
			var waits []chan error
			stopped := false
			for i, o := range c.ops {
				id := string(rune('0' + i))
				switch o {
				case 'd':
					if err := cm.submitDeferred(stateWrite(id), nil); err != nil {
						t.Fatal(err)
					}
					submitted++
				case 'w':
					res := make(chan error, 1)
					if err := cm.submit(stateWrite(id), func(err error) { res <- err }); err != nil {
						t.Fatal(err)
					}
					submitted++
					waits = append(waits, res)
				case '|':
					pass()
				case '!':
					cm.stop()
					stopped = true
				}
			}
			for _, w := range waits {
				// No timer fires here: a write somebody waits for must
				// not wait for the deferral.
				select {
				case err := <-w:
					if err != nil {
						t.Fatal(err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("a waited-for write waited for the deferral")
				}
			}
			if !stopped {
				if c.ops == "dddd" {
					// They wait for company: the deferral's timer is armed
					// and nothing is committed before it expires.
					timers.waitArmed(t, deferDelay)
					if txs, _, _ := log.snapshot(); len(txs) != 0 {
						t.Fatalf("deferred writes committed before the deferral expired: %q", txs)
					}
				}
				pass()
				cm.stop()
			}
			txs, _, _ := log.snapshot()
			var got []string
			for _, tx := range txs {
				got = append(got, strings.Join(tx, ""))
			}
			if !slices.Equal(got, c.wantTxs) {
				t.Fatalf("transactions %q, want %q", got, c.wantTxs)
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
