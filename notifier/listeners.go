package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// ListenerPrefix starts the route name of every listener registered through
// the API ("listener:" + id), so that they never collide with the file's
// callbacks.
const ListenerPrefix = "listener:"

// ListenerClass is the one name under which listener routes appear in
// Status and in the sender's metrics label: never per id, whose number is
// not bounded by the configuration.
const ListenerClass = "listeners"

// IsListener reports whether a route name is a listener's.
func IsListener(name string) bool { return strings.HasPrefix(name, ListenerPrefix) }

// ErrNotRunning is returned by AddListener while Run is not running (a
// standby replica, or before start): the caller retries later.
var ErrNotRunning = errors.New("notifier: dispatcher not running")

// Historian is what listeners need of the store: the recorded events of
// roots for a backfill, pruning them, and the stored listeners (Run
// dead-letters the pending deliveries of listeners deleted meanwhile).
type Historian interface {
	History(ctx context.Context, roots []string) ([]store.Recorded, error)
	PruneHistory(ctx context.Context, before time.Time) (int, error)
	Listeners(ctx context.Context) ([]store.Listener, error)
}

// SetListenerMatcher sets the listeners' matcher, asked by Accept after the
// file routing's. Call it once, before Run and before any Accept.
func (d *Dispatcher) SetListenerMatcher(m Matcher) {
	d.bar.Lock()
	d.lmatch = m
	d.bar.Unlock()
}

// AddListener is AddListenerWith without Ready.
func (d *Dispatcher) AddListener(ctx context.Context, rt Route, roots Roots, keep func(*event.Event) bool) (int, error) {
	return d.AddListenerWith(ctx, rt, ListenerOptions{Roots: roots, Keep: keep})
}

// ListenerOptions are what AddListenerWith backfills a listener with.
type ListenerOptions struct {
	// Roots whose recorded events are backfilled; nil: none.
	Roots Roots
	// Keep chooses the events of the backfill (nil: all); called in root,
	// then sequence order.
	Keep func(*event.Event) bool
	// Ready, if set, runs once the barrier is durable (every event that
	// did not see the route is in the history) and before any Accept is
	// matched against the route: Accepts wait for it, so it must be short
	// and must not call the Dispatcher. A listener whose matching depends
	// on what came before (a sub-execution's subtree) learns it here. An
	// error fails AddListenerWith, the route removed before any Accept
	// saw it.
	Ready func(ctx context.Context) error
}

// AddListenerWith starts delivering to a listener's route
// (rt.Callback.Name is ListenerPrefix + id; rt.Callback must be complete,
// retry policy included) and backfills it with the recorded events of
// o.Roots that o.Keep accepts. It returns how many deliveries the backfill
// added.
//
// It is atomic with respect to Accept: no event of the roots is missed or
// delivered twice, and per root the sequence order holds. (1) Under bar,
// which every Accept holds shared until its write is submitted, the route
// is added and its lane started held (it sends nothing), and a barrier write
// is submitted; once the barrier is durable, every write that did not see
// the route is durable too, history included. With o.Ready, bar is held
// until Ready returns (the committer never takes bar, so the barrier
// completes). (2) The history is read and inserted as deliveries (ids that
// exist, because a later Accept saw the route, are left alone) and handed
// to the lane, which orders them by sequence before the live ones. (3) The
// lane is released.
//
// A route already added is left as it is and 0 returned, so the caller
// may call it again at every sync. Calls of AddListenerWith and
// RemoveListener run one at a time. It fails with ErrNotRunning while Run
// is not running; on any other failure the route is removed again (its
// rows, if any, stay pending) and the caller retries.
func (d *Dispatcher) AddListenerWith(ctx context.Context, rt Route, o ListenerOptions) (int, error) {
	name := rt.Callback.Name
	if !IsListener(name) {
		return 0, fmt.Errorf("notifier: listener route %q does not start with %q", name, ListenerPrefix)
	}
	// A RemoveListener waits for the backfill: otherwise its rows could
	// land after the removal's dead-lettering and stay pending.
	d.lops.Lock()
	defer d.lops.Unlock()
	l, err := d.goLive(ctx, rt, o.Ready)
	if l == nil || err != nil {
		return 0, err
	}
	var rs []string
	if o.Roots != nil {
		rs, err = o.Roots(ctx)
	}
	n := 0
	if err == nil {
		n, err = d.backfill(ctx, l, rs, o.Keep)
	}
	if err != nil {
		d.dropListener(name, l)
		return 0, fmt.Errorf("notifier: adding listener %s: %w", name, err)
	}
	l.release()
	return n, nil
}

// goLive adds rt's route and its held lane under bar, waits for the
// barrier and runs ready (if any) before Accepts may match against the
// route. It returns a nil lane and nil error when the route was already
// added; on failure the route is gone.
func (d *Dispatcher) goLive(ctx context.Context, rt Route, ready func(context.Context) error) (*lane, error) {
	name := rt.Callback.Name
	d.bar.Lock()
	d.mu.Lock()
	if !d.running {
		d.mu.Unlock()
		d.bar.Unlock()
		return nil, ErrNotRunning
	}
	if _, ok := (*d.lroutes.Load())[name]; ok {
		d.mu.Unlock()
		d.bar.Unlock()
		return nil, nil
	}
	d.setListenerRoute(name, &rt)
	l := d.startLaneHeld(rt, d.routing.Load().Delivery, 0, true)
	c := d.c
	d.mu.Unlock()
	barrier := make(chan error, 1)
	err := c.submit(store.Write{}, func(err error) { barrier <- err })
	if ready == nil {
		// Nothing to learn first: Accepts may go on while the barrier
		// commits.
		d.bar.Unlock()
	}
	if err == nil {
		err = <-barrier
	}
	if err == nil && ready != nil {
		err = ready(ctx)
	}
	if ready != nil {
		if err != nil {
			d.setListenerRoute(name, nil) // before any Accept matched it
		}
		d.bar.Unlock()
	}
	if err != nil {
		d.dropListener(name, l)
		return nil, fmt.Errorf("notifier: adding listener %s: %w", name, err)
	}
	return l, nil
}

// Roots names the roots whose history a new listener is backfilled with.
// AddListener calls it after its barrier, not before: a root whose first
// event was accepted between a caller's own reading and the route going
// live would be in neither the backfill nor the live stream. nil: none.
type Roots func(ctx context.Context) ([]string, error)

// RootsOf is the Roots that are always ids.
func RootsOf(ids ...string) Roots {
	return func(context.Context) ([]string, error) { return ids, nil }
}

// setListenerRoute adds (rt) or removes (nil) a listener route, copying the
// map; bar is held.
func (d *Dispatcher) setListenerRoute(name string, rt *Route) {
	m := maps.Clone(*d.lroutes.Load())
	if rt == nil {
		delete(m, name)
	} else {
		m[name] = *rt
	}
	d.lroutes.Store(&m)
}

// dropListener undoes a failed AddListener without dead-lettering: the
// rows stay pending for the next attempt.
func (d *Dispatcher) dropListener(name string, l *lane) {
	d.bar.Lock()
	d.setListenerRoute(name, nil)
	d.bar.Unlock()
	d.mu.Lock()
	if d.lanes[name] == l {
		delete(d.lanes, name)
	}
	d.mu.Unlock()
	l.remove("")
}

// backfill inserts, as deliveries to l's route, the recorded events of
// roots that keep accepts, and hands the new ones to l.
func (d *Dispatcher) backfill(ctx context.Context, l *lane, roots []string, keep func(*event.Event) bool) (int, error) {
	if len(roots) == 0 {
		return 0, nil
	}
	hist, err := d.st.History(ctx, roots)
	if err != nil {
		return 0, err
	}
	now := d.now()
	var w store.Write
	var items []*item
	for _, r := range hist {
		ev := new(event.Event)
		if err := json.Unmarshal(r.Event, ev); err != nil {
			d.log.Error("undecodable event in history; not backfilled", "event", r.ID, "listener", l.name, "err", err)
			continue
		}
		if keep != nil && !keep(ev) {
			continue
		}
		del := store.NewDeliveryJSON(ev, r.Event, l.name, now)
		w.Insert = append(w.Insert, del)
		items = append(items, &item{id: del.ID, root: del.RootID, seq: del.Seq, nextAt: del.NextAt,
			created: del.CreatedAt, ev: ev, hidx: -1})
	}
	if len(w.Insert) == 0 {
		return 0, nil
	}
	w.Inserted = make([]bool, len(w.Insert))
	if err := d.submit(ctx, w)(); err != nil {
		return 0, err
	}
	var fresh []*item
	for i, ok := range w.Inserted {
		if ok {
			fresh = append(fresh, items[i])
		}
	}
	l.accept(fresh)
	return len(fresh), nil
}

// RemoveListener stops delivering to a listener's route: its lane stops and
// its pending deliveries become dead letters with reason as their error
// (replayable, like a removed callback's). Accepts that saw the route are
// committed first (a barrier), so none of their rows stays pending behind.
// Removing a route never added dead-letters its pending rows all the same
// (a listener deleted while this process was not dispatching).
func (d *Dispatcher) RemoveListener(name, reason string) {
	if !IsListener(name) {
		return
	}
	d.lops.Lock()
	defer d.lops.Unlock()
	d.mu.Lock()
	if l := d.lanes[name]; l != nil {
		// Before the route goes: a send that then finds none says why.
		l.removing(reason)
	}
	d.mu.Unlock()
	d.bar.Lock()
	d.setListenerRoute(name, nil)
	d.mu.Lock()
	l := d.lanes[name]
	delete(d.lanes, name)
	c := d.c
	if !d.running {
		c = nil
	}
	d.mu.Unlock()
	barrier := make(chan error, 1)
	if c == nil || c.submit(store.Write{}, func(err error) { barrier <- err }) != nil {
		barrier <- nil // no committer: Accept commits directly, under bar
	}
	d.bar.Unlock()
	<-barrier
	if l != nil {
		l.remove(reason)
	}
	d.abandonAs(name, reason)
}

// ListenerIdle reports whether a listener's route has nothing left to
// deliver: no delivery held, in flight, being committed by an Accept, or
// pending in the store behind its lane. False when the route is not added
// here (a standby replica cannot tell).
func (d *Dispatcher) ListenerIdle(name string) bool {
	// Every Accept past its match has counted its deliveries in incoming.
	d.bar.Lock()
	d.bar.Unlock() //nolint:staticcheck // an empty critical section is the point
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.lanes[name]
	if l == nil || !IsListener(name) || d.incoming[name] > 0 {
		return false
	}
	return l.idle()
}

// expect counts, per listener, the deliveries of ds submitted and not yet
// handed to lanes (delta +1) or no longer expected (-1). It returns the
// listener deliveries, for the matching -1.
func (d *Dispatcher) expect(ds []store.Delivery, delta int) []store.Delivery {
	var ls []store.Delivery
	for _, del := range ds {
		if IsListener(del.Callback) {
			ls = append(ls, del)
		}
	}
	if len(ls) > 0 {
		d.mu.Lock()
		d.expectLocked(ls, delta)
		d.mu.Unlock()
	}
	return ls
}

func (d *Dispatcher) expectLocked(ls []store.Delivery, delta int) {
	for _, del := range ls {
		if d.incoming[del.Callback] += delta; d.incoming[del.Callback] <= 0 {
			delete(d.incoming, del.Callback)
		}
	}
}

// route returns the route of a lane: the file routing's or a listener's.
func (d *Dispatcher) route(rt *Routing, name string) (Route, bool) {
	if r, ok := rt.Routes[name]; ok {
		return r, true
	}
	r, ok := (*d.lroutes.Load())[name]
	return r, ok
}
