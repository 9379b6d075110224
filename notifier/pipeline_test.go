package notifier

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/notifier/store"
)

// gatedStore holds every commit that records an outcome until open is
// closed, like a disk whose fsync takes forever.
type gatedStore struct {
	*store.Store
	open chan struct{}
}

func (g *gatedStore) Commit(ctx context.Context, ws ...store.Write) error {
	for _, w := range ws {
		if len(w.Updates) > 0 {
			<-g.open
			break
		}
	}
	return g.Store.Commit(ctx, ws...)
}

// The concurrency slot is freed when the outcome is queued for commit, so
// a slow commit does not idle the lane; but a root's next delivery still
// waits until its predecessor's outcome is committed.
func TestSlotFreedBeforeCommitButRootWaits(t *testing.T) {
	s := newFakeSender()
	s.sent = make(chan send.Request, 16)
	gate := make(chan struct{})
	h := newHarness(t, "", s, routing(config.Callback{Name: "a", Concurrency: 1}), func(o *Options) {
		o.Store = &gatedStore{Store: o.Store.(*store.Store), open: gate}
	})
	h.start()
	h.accept(append(evs("r1", 2), evs("r2", 1)...)...)

	next := func(what string) string {
		t.Helper()
		select {
		case r := <-s.sent:
			return r.EventID
		case <-time.After(5 * time.Second):
			t.Fatalf("timed out waiting for %s", what)
			return ""
		}
	}
	first := next("first send")
	second := next("second send while the first outcome is not committed")
	heads := map[string]bool{"evt_r1_1": true, "evt_r2_1": true}
	if !heads[first] || !heads[second] || first == second {
		t.Fatalf("sent %s then %s with commits held; want both roots' heads", first, second)
	}
	// r1's second event must wait for evt_r1_1's outcome to be committed:
	// with both slots free, the lane waits with only the two commits
	// under way (a third send would count).
	h.waitFor("both slots free", func() bool { return h.status("a").InFlight == 0 })
	if busy := h.waitLane("a", -1); busy != 2 {
		t.Fatalf("%d sends and commits under way with the commits held; want the 2 commits", busy)
	}
	select {
	case r := <-s.sent:
		t.Fatalf("%s sent before its predecessor's outcome was committed", r.EventID)
	default:
	}
	close(gate)
	if got := next("r1's successor after the commit"); got != "evt_r1_2" {
		t.Fatalf("sent %s, want evt_r1_2", got)
	}
	h.waitFor("all delivered", func() bool { return h.count(store.Delivered) == 3 })
	_, _, order := s.snapshot()
	checkOrder(t, order)
}

// heldOutcomes holds commits that record outcomes until open is closed,
// and closes landed when the first one has returned.
type heldOutcomes struct {
	Store
	open   chan struct{}
	landed chan struct{}
	once   sync.Once
}

func (g *heldOutcomes) Commit(ctx context.Context, ws ...store.Write) error {
	for _, w := range ws {
		if len(w.Updates) > 0 {
			<-g.open
			defer g.once.Do(func() { close(g.landed) })
			break
		}
	}
	return g.Store.Commit(ctx, ws...)
}

// An outcome committed after its callback was removed (and its rows made
// dead letters) must not revive the row as pending.
func TestOutcomeAfterRemovalStaysDead(t *testing.T) {
	s := newFakeSender()
	s.sent = make(chan send.Request, 16)
	s.set("b", fail(503))
	held := &heldOutcomes{open: make(chan struct{}), landed: make(chan struct{})}
	h := newHarness(t, "", s, routing(config.Callback{Name: "a"}, config.Callback{Name: "b"}), func(o *Options) {
		held.Store = o.Store
		o.Store = held
	})
	h.start()
	h.accept(evs("r1", 1)...)
	for range 2 { // a's and b's
		select {
		case <-s.sent:
		case <-time.After(5 * time.Second):
			t.Fatal("not sent")
		}
	}
	h.d.SetRouting(routing(config.Callback{Name: "a"}))
	close(held.open)
	select {
	case <-held.landed:
	case <-time.After(5 * time.Second):
		t.Fatal("outcome not committed")
	}
	if rows := h.rows(store.Filter{Callback: "b"}); len(rows) != 1 || rows[0].State != store.Dead {
		t.Fatalf("b's row after removal and a late outcome: %+v; want dead", rows)
	}
}
