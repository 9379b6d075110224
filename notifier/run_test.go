package notifier

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier/store"
)

// failingCount is a store whose pending rows cannot be counted.
type failingCount struct {
	harnessStore
	err error
}

func (f failingCount) CountPending(context.Context) (map[string]int, error) { return nil, f.err }

// TestRunRefusesToStart: Run returns at once, with an error saying why,
// when the dispatcher already runs or its store cannot say what is
// pending; a refused Run leaves a running one alone.
func TestRunRefusesToStart(t *testing.T) {
	errCount := errors.New("disk on fire")
	tests := []struct {
		name    string
		wrap    func(harnessStore) harnessStore
		running bool // Run already under way
		want    string
		wantIs  error
	}{
		{name: "already running", running: true, want: "notifier: dispatcher already running"},
		{name: "pending count fails", wrap: func(st harnessStore) harnessStore { return failingCount{st, errCount} },
			want: "notifier: starting: disk on fire", wantIs: errCount},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := store.Open(t.TempDir(), store.Options{Exclusive: true})
			if err != nil {
				t.Fatal(err)
			}
			var hs harnessStore = st
			if tc.wrap != nil {
				hs = tc.wrap(hs)
			}
			h := newHarnessOn(t, hs, newFakeSender(), routing(config.Callback{Name: "a"}), nil)
			if tc.running {
				h.start()
			}
			err = h.d.Run(context.Background())
			if err == nil || err.Error() != tc.want {
				t.Fatalf("Run: err = %v, want %q", err, tc.want)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("Run: err %v does not wrap %v", err, tc.wantIs)
			}
			if tc.running {
				h.accept(evs("r1", 1)...)
				h.waitFor("the running dispatcher delivers", func() bool { return h.count(store.Delivered) == 1 })
			}
		})
	}
}

// TestRunDeadLettersRowsOfRemovedCallbacks: rows left pending by a
// previous run for a callback the routing no longer has become dead
// letters when Run starts; those of a callback still routed are sent.
func TestRunDeadLettersRowsOfRemovedCallbacks(t *testing.T) {
	dir := t.TempDir()
	s := newFakeSender()
	s.set("b", fail(503))
	h := newHarness(t, dir, s, routing(config.Callback{Name: "a"}, config.Callback{Name: "b"}), nil)
	h.start()
	h.accept(evs("r1", 2)...)
	h.waitFor("a delivered, b retrying", func() bool {
		a, _, _ := s.snapshot()
		return h.count(store.Delivered) == 2 && a["b/evt_r1_1"] >= 1
	})
	h.stop()

	h2 := newHarness(t, dir, newFakeSender(), routing(config.Callback{Name: "a"}), nil)
	h2.start()
	dead := h2.rows(store.Filter{Callback: "b", State: store.Dead})
	if len(dead) != 2 {
		t.Fatalf("b's dead letters after restart without b = %d, want 2", len(dead))
	}
	for _, row := range dead {
		if !strings.Contains(row.LastError, "callback removed") {
			t.Errorf("%s: last error %q, want callback removed", row.ID, row.LastError)
		}
	}
	if n := h2.count(store.Pending); n != 0 {
		t.Errorf("pending after restart = %d, want 0", n)
	}
}

// pruneSignal tells the harness after every Prune, so that waitFor
// re-checks the rows then.
type pruneSignal struct {
	harnessStore
	h *harness
}

func (p *pruneSignal) Prune(ctx context.Context, before time.Time) (int, error) {
	n, err := p.harnessStore.Prune(ctx, before)
	p.h.signal()
	return n, err
}

// TestRunPrunesDeliveredRows: while Run runs it prunes, every quarter of
// Options.Retention, the rows delivered longer ago than that.
func TestRunPrunesDeliveredRows(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	ps := &pruneSignal{harnessStore: st}
	h := newHarnessOn(t, ps, newFakeSender(), routing(config.Callback{Name: "a"}),
		func(o *Options) { o.Retention = 40 * time.Millisecond })
	ps.h = h
	h.start()
	h.accept(evs("r1", 1)...)
	h.waitFor("delivered", func() bool { return h.count(store.Delivered) == 1 })
	h.waitFor("delivered row pruned", func() bool { return len(h.rows(store.Filter{})) == 0 })
}

// TestRunRestartsListenerLanes: a listener added during a Run is still
// routed when the same dispatcher runs again (a fail-over and back): its
// lane starts again and receives new events.
func TestRunRestartsListenerLanes(t *testing.T) {
	h, m := listenerHarness(t, newFakeSender(), nil)
	name := ListenerPrefix + "L"
	m.set(name)
	h.addListener("L", nil, nil)
	h.cancel()
	if err := <-h.done; err != nil {
		t.Fatalf("first Run: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.d.Run(ctx) }()
	h.waitFor("the file callback's and the listener's lanes", func() bool { return len(h.d.Status()) == 2 })
	h.accept(evs("r1", 1)...)
	h.waitFor("the listener delivered", func() bool {
		return len(h.rows(store.Filter{Callback: name, State: store.Delivered})) == 1 &&
			len(h.rows(store.Filter{Callback: "file", State: store.Delivered})) == 1
	})
}
