package notifier

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// listenerRoute is the route of listener id, as notifier/listeners builds
// it.
func listenerRoute(id string) Route {
	return Route{Callback: config.Callback{Name: ListenerPrefix + id, URL: "http://receiver.test/l/" + id,
		Retry: fastRetry, Concurrency: 4}, Format: idFormat{}}
}

// listenerMatcher routes an event to the listeners whose roots include
// its root (nil: every listener), like the registry's execution scopes.
type listenerMatcher struct {
	mu    sync.Mutex
	roots map[string][]string // listener name → roots; nil slice: all
}

func (m *listenerMatcher) set(name string, roots ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.roots == nil {
		m.roots = map[string][]string{}
	}
	m.roots[name] = roots
}

func (m *listenerMatcher) Match(ev *event.Event) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for name, roots := range m.roots {
		if roots == nil || slices.Contains(roots, ev.RootExecutionID) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// listenerHarness is a running dispatcher with History on, a file
// callback "file" and the listener matcher.
func listenerHarness(t *testing.T, s *fakeSender, tune func(*Options)) (*harness, *listenerMatcher) {
	t.Helper()
	h := newHarness(t, "", s, routing(config.Callback{Name: "file"}), func(o *Options) {
		o.History = true
		if tune != nil {
			tune(o)
		}
	})
	m := &listenerMatcher{}
	h.d.SetListenerMatcher(m)
	h.start()
	return h, m
}

func (h *harness) addListener(id string, roots []string, keep func(*event.Event) bool) int {
	h.t.Helper()
	n, err := h.d.AddListener(context.Background(), listenerRoute(id), RootsOf(roots...), keep)
	if err != nil {
		h.t.Fatalf("AddListener(%s): %v", id, err)
	}
	return n
}

// The heart of AddListener: events accepted before, during and after it
// by many goroutines (each root's events in sequence order, as the tracker
// accepts them) all reach the listener exactly once, per root in order.
func TestListenerBackfillThenLiveExactlyOnce(t *testing.T) {
	for round := range 3 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			s := newFakeSender()
			h, m := listenerHarness(t, s, nil)
			const roots, perRoot = 6, 24
			var all []event.Event
			var names []string
			for r := range roots {
				root := fmt.Sprintf("r%d", r)
				names = append(names, root)
				all = append(all, evs(root, perRoot)...)
			}
			name := ListenerPrefix + "L"
			m.set(name) // the registry knows it before AddListener
			var wg sync.WaitGroup
			start := make(chan struct{})
			for r := range roots {
				wg.Add(1)
				go func() {
					defer wg.Done()
					mine := all[r*perRoot : (r+1)*perRoot]
					rng := rand.New(rand.NewPCG(uint64(round), uint64(r)))
					for i := 0; i < len(mine); {
						if i == len(mine)/4 {
							<-start // a quarter of each root before the listener
						}
						n := min(1+rng.IntN(3), len(mine)-i)
						if i < len(mine)/4 {
							n = min(n, len(mine)/4-i)
						}
						if err := h.d.Accept(context.Background(), mine[i:i+n], nil); err != nil {
							t.Errorf("Accept: %v", err)
							return
						}
						i += n
					}
				}()
			}
			h.waitFor("a quarter of every root accepted", func() bool {
				// One query: pending and delivered apart could count a
				// row twice.
				return len(h.rows(store.Filter{Callback: "file"})) >= roots*perRoot/4
			})
			close(start) // the rest races with AddListener
			backfilled := h.addListener("L", names, nil)
			wg.Wait()
			if backfilled < roots*perRoot/4 {
				t.Errorf("backfilled %d, want at least the %d accepted before", backfilled, roots*perRoot/4)
			}
			h.waitFor("every event delivered to the listener", func() bool {
				return len(h.rows(store.Filter{Callback: name, State: store.Delivered})) == len(all)
			})
			h.settle(name)
			_, delivered, order := s.snapshot()
			for _, e := range all {
				if n := delivered[ListenerClass+"/"+e.ID]; n != 1 {
					t.Errorf("%s delivered %d times to the listener, want 1", e.ID, n)
				}
			}
			if got := order[ListenerClass]; len(got) != len(all) {
				t.Errorf("listener got %d deliveries, want %d", len(got), len(all))
			}
			checkOrder(t, map[string][]string{ListenerClass: order[ListenerClass]})
			if !h.d.ListenerIdle(name) {
				t.Error("ListenerIdle = false after everything was delivered")
			}
		})
	}
}

// keep sees the history in (root, sequence) order and filters it; roots
// limit the backfill; an already added listener is left alone.
func TestListenerBackfillKeepAndRoots(t *testing.T) {
	s := newFakeSender()
	h, _ := listenerHarness(t, s, nil)
	h.accept(evs("b", 3)...)
	h.accept(evs("a", 3)...)
	h.accept(evs("c", 2)...)
	var seen []string
	n := h.addListener("K", []string{"b", "a"}, func(ev *event.Event) bool {
		seen = append(seen, ev.ID)
		return ev.Sequence != 2
	})
	if want := []string{"evt_a_1", "evt_a_2", "evt_a_3", "evt_b_1", "evt_b_2", "evt_b_3"}; !slices.Equal(seen, want) {
		t.Fatalf("keep saw %v, want %v", seen, want)
	}
	if n != 4 {
		t.Fatalf("backfilled %d, want 4", n)
	}
	name := ListenerPrefix + "K"
	h.waitFor("backfill delivered", func() bool {
		return len(h.rows(store.Filter{Callback: name, State: store.Delivered})) == 4
	})
	if n := h.addListener("K", []string{"c"}, nil); n != 0 {
		t.Fatalf("second AddListener backfilled %d, want 0 (already added)", n)
	}
	if _, err := h.d.AddListener(context.Background(), Route{Callback: config.Callback{Name: "K"}}, nil, nil); err == nil {
		t.Fatal("AddListener without the listener prefix: no error")
	}
}

func TestAddListenerNotRunning(t *testing.T) {
	h := newHarness(t, "", newFakeSender(), nil, func(o *Options) { o.History = true })
	if _, err := h.d.AddListener(context.Background(), listenerRoute("x"), nil, nil); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("AddListener before Run = %v, want ErrNotRunning", err)
	}
}

// A removed listener gets nothing more: its pending deliveries are dead
// letters with the reason, later events make no row for it; a file reload
// meanwhile leaves listener lanes alone.
func TestRemoveListenerAndReloadKeepsListeners(t *testing.T) {
	s := newFakeSender()
	s.set(ListenerClass, fail(503)) // deliveries to listeners stay pending
	h, m := listenerHarness(t, s, nil)
	for _, id := range []string{"gone", "kept"} {
		m.set(ListenerPrefix + id)
		h.addListener(id, nil, nil)
	}
	// A reload without the file callback and with another one.
	h.d.SetRouting(routing(config.Callback{Name: "other"}))
	h.accept(evs("r", 3)...)
	h.waitFor("attempts on both listeners", func() bool {
		a, _, _ := s.snapshot()
		return a[ListenerClass+"/evt_r_1"] >= 2
	})
	if st := h.status(ListenerClass); st.Pending != 6 {
		t.Fatalf("listeners status %+v, want 6 pending (3 each)", st)
	}
	for _, st := range h.d.Status() {
		if IsListener(st.Name) {
			t.Fatalf("Status names a listener: %+v", st)
		}
	}
	if h.d.ListenerIdle(ListenerPrefix + "kept") {
		t.Fatal("ListenerIdle with pending deliveries")
	}
	h.d.RemoveListener(ListenerPrefix+"gone", "listener deleted")
	// A send under way when it was removed is dead with the reason and
	// its own last error ("listener deleted; last error: …").
	dead := h.rows(store.Filter{Callback: ListenerPrefix + "gone", State: store.Dead})
	if len(dead) != 3 {
		t.Fatalf("dead letters of the removed listener: %+v", dead)
	}
	for _, r := range dead {
		if !strings.HasPrefix(r.LastError, "listener deleted") {
			t.Errorf("dead letter %s: last error %q, want the removal's reason", r.ID, r.LastError)
		}
	}
	h.accept(evs("q", 2)...)
	if rows := h.rows(store.Filter{Callback: ListenerPrefix + "gone"}); len(rows) != 3 {
		t.Fatalf("removed listener has %d rows, want its 3 dead letters only", len(rows))
	}
	if rows := h.rows(store.Filter{Callback: ListenerPrefix + "kept", State: store.Pending}); len(rows) != 5 {
		t.Fatalf("kept listener has %d pending rows, want 5", len(rows))
	}
	if h.d.ListenerIdle(ListenerPrefix + "gone") {
		t.Fatal("ListenerIdle of a removed listener")
	}
	s.set(ListenerClass, deliver)
	h.waitFor("kept listener delivered", func() bool {
		return len(h.rows(store.Filter{Callback: ListenerPrefix + "kept", State: store.Delivered})) == 5
	})
	h.waitFor("kept listener idle", func() bool { return h.d.ListenerIdle(ListenerPrefix + "kept") })
	_, delivered, _ := s.snapshot()
	for _, id := range []string{"evt_r_1", "evt_q_1"} {
		if delivered[ListenerClass+"/"+id] != 1 {
			t.Errorf("%s delivered %d times to listeners, want 1 (only the kept one)", id, delivered[ListenerClass+"/"+id])
		}
	}
	if got := len(h.rows(store.Filter{Callback: "other"})); got != 5 {
		t.Errorf("reloaded file callback has %d rows, want 5", got)
	}
}

// History is written with states alone (deferred) as well as with
// deliveries, pruned by HistoryRetention; delivered rows stay as long.
func TestHistoryRecordedAndPruned(t *testing.T) {
	c := newFakeClock()
	s := newFakeSender()
	h, _ := listenerHarness(t, s, func(o *Options) {
		o.Now = c.Now
		o.Retention = time.Minute
		o.HistoryRetention = time.Hour
	})
	st := event.EntityState{Kind: event.KindExecution, ID: "x", RootID: "x", State: "RUNNING", UpdatedAt: "u", LastSeq: 2}
	x := evs("x", 2) // matches the file callback
	if err := h.d.Accept(context.Background(), x, []event.EntityState{st}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("x delivered", func() bool { return h.count(store.Delivered) == 2 })
	h.d.SetRouting(&Routing{}) // now nothing matches: states and history only
	if err := h.d.Accept(context.Background(), evs("y", 1), []event.EntityState{st}); err != nil {
		t.Fatal(err)
	}
	// A commit after the deferred one makes it durable.
	if err := h.d.SetCheckpoint(context.Background(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	hist, err := h.st.History(context.Background(), []string{"x", "y"})
	if err != nil || len(hist) != 3 {
		t.Fatalf("History = %d events, %v; want 3", len(hist), err)
	}
	// Past the delivery retention, not the history's: both kept.
	c.set(base.Add(30 * time.Minute))
	h.d.prune(context.Background())
	if hist, _ := h.st.History(context.Background(), []string{"x", "y"}); len(hist) != 3 || h.count(store.Delivered) != 2 {
		t.Fatalf("after 30m: %d events, %d delivered rows; want 3, 2", len(hist), h.count(store.Delivered))
	}
	c.set(base.Add(2 * time.Hour))
	h.d.prune(context.Background())
	if hist, _ := h.st.History(context.Background(), []string{"x", "y"}); len(hist) != 0 || h.count(store.Delivered) != 0 {
		t.Fatalf("after 2h: %d events, %d delivered rows; want none", len(hist), h.count(store.Delivered))
	}
}

// Without History nothing is recorded.
func TestHistoryOff(t *testing.T) {
	h := newHarness(t, "", newFakeSender(), routing(config.Callback{Name: "a"}), nil)
	h.start()
	h.accept(evs("x", 2)...)
	if hist, err := h.st.History(context.Background(), []string{"x"}); err != nil || len(hist) != 0 {
		t.Fatalf("History = %v, %v; want none", hist, err)
	}
}

// At start, pending rows of a listener the store no longer has become dead
// letters; those of a stored listener wait for AddListener.
func TestRunDeadLettersDeletedListeners(t *testing.T) {
	s := newFakeSender()
	s.set(ListenerClass, fail(503))
	h, m := listenerHarness(t, s, nil)
	ctx := context.Background()
	for _, id := range []string{"deleted", "stored"} {
		if err := h.st.CreateListener(ctx, store.Listener{ID: id, Scope: "execution_id", ScopeValue: "r"}, 0); err != nil {
			t.Fatal(err)
		}
		m.set(ListenerPrefix + id)
		h.addListener(id, nil, nil)
	}
	h.accept(evs("r", 2)...)
	h.waitFor("pending", func() bool {
		return len(h.rows(store.Filter{State: store.Pending})) == 4
	})
	path := h.path
	h.stop()
	// Deleted while the process was down.
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := st.DeleteListener(ctx, "deleted"); !ok || err != nil {
		t.Fatalf("DeleteListener = %v, %v", ok, err)
	}
	st.Close()
	h2 := newHarness(t, path, s, routing(config.Callback{Name: "file"}), func(o *Options) { o.History = true })
	h2.d.SetListenerMatcher(m)
	h2.start()
	h2.waitFor("deleted listener dead-lettered", func() bool {
		return len(h2.rows(store.Filter{Callback: ListenerPrefix + "deleted", State: store.Dead})) == 2
	})
	if got := h2.rows(store.Filter{Callback: ListenerPrefix + "stored", State: store.Pending}); len(got) != 2 {
		t.Fatalf("stored listener: %d pending, want 2", len(got))
	}
	s.set(ListenerClass, deliver)
	h2.addListener("stored", []string{"r"}, nil)
	h2.waitFor("stored listener delivered", func() bool {
		return len(h2.rows(store.Filter{Callback: ListenerPrefix + "stored", State: store.Delivered})) == 2
	})
	if dead := h2.rows(store.Filter{Callback: ListenerPrefix + "deleted", State: store.Dead}); !strings.Contains(dead[0].LastError, "listener removed") {
		t.Fatalf("dead letter error %q", dead[0].LastError)
	}
}

// An Accept that matched before the listener was added but has not
// submitted its write yet: AddListener waits for it, so its event is
// backfilled (without the wait the history read misses it, and no live
// delivery was made for it either).
func TestAddListenerWaitsForAcceptInFlight(t *testing.T) {
	s := newFakeSender()
	h := newHarness(t, "", s, routing(config.Callback{Name: "file"}), func(o *Options) { o.History = true })
	m := &listenerMatcher{}
	m.set(ListenerPrefix + "L")
	h.d.SetListenerMatcher(m)
	built, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h.d.acceptBuilt = func() {
		once.Do(func() {
			close(built)
			<-release
		})
	}
	h.start()
	accepted := make(chan error, 1)
	go func() { accepted <- h.d.Accept(context.Background(), evs("r", 1), nil) }()
	<-built
	added := make(chan int, 1)
	go func() { added <- h.addListener("L", []string{"r"}, nil) }()
	// AddListener must not finish while the Accept holds its write; give
	// a wrong one the time to.
	select {
	case n := <-added:
		t.Fatalf("AddListener returned (backfilled %d) while an Accept that matched before it had not submitted", n)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
	if n := <-added; n != 1 {
		t.Fatalf("backfilled %d, want the in-flight event", n)
	}
	h.waitFor("delivered to the listener", func() bool {
		return len(h.rows(store.Filter{Callback: ListenerPrefix + "L", State: store.Delivered})) == 1
	})
}

// ListenerIdle never answers true for a listener an Accept in progress is
// about to deliver to (the registry would remove it before its final
// event is sent).
func TestListenerIdleCountsAcceptInFlight(t *testing.T) {
	s := newFakeSender()
	s.set(ListenerClass, fail(503))
	h := newHarness(t, "", s, routing(config.Callback{Name: "file"}), func(o *Options) { o.History = true })
	m := &listenerMatcher{}
	name := ListenerPrefix + "L"
	m.set(name)
	h.d.SetListenerMatcher(m)
	built, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h.d.acceptBuilt = func() {
		once.Do(func() {
			close(built)
			<-release
		})
	}
	h.start()
	h.addListener("L", nil, nil)
	// Idle once its lane has read the store (it may hold older rows).
	h.waitFor("new listener idle", func() bool { return h.d.ListenerIdle(name) })
	accepted := make(chan error, 1)
	go func() { accepted <- h.d.Accept(context.Background(), evs("r", 1), nil) }()
	<-built
	idle := make(chan bool, 1)
	go func() { idle <- h.d.ListenerIdle(name) }()
	select {
	case v := <-idle:
		t.Fatalf("ListenerIdle answered %v while an Accept that matched the listener had not submitted", v)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if v := <-idle; v {
		t.Fatal("ListenerIdle = true with the Accept's delivery on its way")
	}
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
	if h.d.ListenerIdle(name) {
		t.Fatal("ListenerIdle = true with a pending delivery")
	}
}

// TestRemoveListenerDuringASend: a send under way when its listener is
// removed changes nothing of the dead letter the removal made ("listener
// deleted", not a retry left pending, not "callback removed").
func TestRemoveListenerDuringASend(t *testing.T) {
	s := newFakeSender()
	started, release := make(chan struct{}, 1), make(chan struct{})
	s.set(ListenerClass, func(r send.Request, n int) send.Result {
		select {
		case started <- struct{}{}:
		default:
		}
		<-release
		return fail(503)(r, n)
	})
	h, m := listenerHarness(t, s, nil)
	m.set(ListenerPrefix + "gone")
	h.addListener("gone", nil, nil)
	h.accept(evs("r", 2)...)
	<-started
	h.d.RemoveListener(ListenerPrefix+"gone", "listener deleted")
	close(release)
	// Run returns once the send and the commit of its outcome are done.
	h.cancel()
	if err := <-h.done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	h.cancel = nil
	rows := h.rows(store.Filter{Callback: ListenerPrefix + "gone"})
	if len(rows) != 2 {
		t.Fatalf("%d rows, want 2", len(rows))
	}
	for _, r := range rows {
		if r.State != store.Dead || r.LastError != "listener deleted" {
			t.Errorf("row %s: %s %q, want dead \"listener deleted\"", r.ID, r.State, r.LastError)
		}
	}
}

// Ready runs once the barrier is durable (an event accepted before is in
// the history) and while no Accept can match against the route (bar is
// held); a failing Ready leaves no route behind, and a later add works.
func TestAddListenerReady(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		err  error // Ready's answer
	}{{"ready", nil}, {"ready fails", boom}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newFakeSender()
			h, m := listenerHarness(t, s, nil)
			name := ListenerPrefix + "L"
			m.set(name)
			ctx := context.Background()
			if err := h.d.Accept(ctx, evs("r", 1), nil); err != nil {
				t.Fatal(err)
			}
			ran := false
			ready := func(ctx context.Context) error {
				ran = true
				if h.d.bar.TryRLock() {
					h.d.bar.RUnlock()
					t.Error("an Accept could match against the route during Ready")
				}
				if hist, err := h.st.History(ctx, []string{"r"}); err != nil || len(hist) != 1 {
					t.Errorf("history during Ready: %d events, %v; want the one accepted before", len(hist), err)
				}
				return tc.err
			}
			n, err := h.d.AddListenerWith(ctx, listenerRoute("L"), ListenerOptions{Roots: RootsOf("r"), Ready: ready})
			if !ran {
				t.Fatal("Ready not run")
			}
			if tc.err == nil {
				if err != nil || n != 1 {
					t.Fatalf("AddListenerWith = %d, %v; want 1 backfilled", n, err)
				}
				return
			}
			if !errors.Is(err, boom) {
				t.Fatalf("AddListenerWith = %d, %v; want Ready's error", n, err)
			}
			if _, ok := (*h.d.lroutes.Load())[name]; ok {
				t.Fatal("route left after a failed Ready")
			}
			// Not matched live: the route is gone; the next add backfills it.
			if err := h.d.Accept(ctx, evs("r", 2)[1:], nil); err != nil {
				t.Fatal(err)
			}
			if got := h.rows(store.Filter{Callback: name}); len(got) != 0 {
				t.Fatalf("%d deliveries to a listener whose add failed", len(got))
			}
			if n := h.addListener("L", []string{"r"}, nil); n != 2 {
				t.Fatalf("add after the failure backfilled %d, want 2", n)
			}
		})
	}
}
