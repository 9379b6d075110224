// Package notifier is mistral-tap's delivery core: a durable outbox that
// never loses an event. Accept writes every (event, callback) delivery to the
// store, in one transaction with the tracker states that produced it, before
// anything is attempted; per-callback lanes then send them with ordering per
// root execution, bounded concurrency, a long-horizon retry policy, dead
// letters, a circuit breaker and 410 disabling.
//
// Choices worth knowing:
//   - A 410 disables the callback (persisted). Its pending deliveries stay
//     pending and are not attempted; a replay of the callback, or a reload
//     that changes the callback's URL, re-enables it.
//   - A callback removed from the configuration has its pending deliveries
//     turned into dead letters ("callback removed"); they can be replayed
//     once it is back.
//   - Delivered rows are kept for Options.Retention, then pruned.
//   - Replay makes dead letters pending again with attempts reset; max_age
//     then counts from the replay. A replayed delivery is not ordered
//     against later deliveries of its root that went ahead while it was dead.
//   - An outcome the store cannot commit (a full disk) is kept in memory and
//     committed again with back-off; the delivery is not sent again unless
//     the process stops first. StoreHealthy reports the condition.
//   - Listeners registered at runtime (notifier/listeners) are routes named
//     ListenerPrefix + id beside the file's, matched by the matcher given to
//     SetListenerMatcher. AddListener backfills one from the event history
//     (Options.History) atomically with Accept: every event of its roots
//     reaches it exactly once, in order per root. AddListenerWith's Ready
//     runs after every event that did not see the route is in the history
//     and before any Accept is matched against the route (Accepts wait for
//     it). A reload of the file
//     (SetRouting) leaves them alone; RemoveListener dead-letters their
//     pending deliveries. Status and the sender's metrics label show them
//     as one class, ListenerClass, never per id.
//
// The store is seen through small interfaces, each defined where it is
// used: Writer (the committer), Queue (the lanes), Callbacks and Pruner
// (the dispatcher's housekeeping), DeadLetters (the admin API's list
// and replay) and Historian (listeners' backfill). Store is only their sum,
// what a backend implements.
package notifier

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier/payload"
	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// Matcher says which callbacks an event goes to.
type Matcher interface {
	Match(ev *event.Event) []string
}

// Sender performs one delivery (with its short in-process retries).
type Sender interface {
	Send(ctx context.Context, r send.Request) send.Result
}

// Formatter renders an event in a callback's payload format;
// *payload.Formatter is one.
type Formatter interface {
	Format(ev *event.Event) (payload.Message, error)
}

var _ Formatter = (*payload.Formatter)(nil)

// Route is one configured callback, ready to send.
type Route struct {
	Callback config.Callback
	Format   Formatter
	// Secrets are the resolved signing secrets (none: unsigned).
	Secrets []string
}

// Routing is the part of the configuration the dispatcher uses; SetRouting
// swaps it atomically.
type Routing struct {
	Matcher  Matcher
	Routes   map[string]Route
	Delivery config.Delivery
}

// Callbacks is what the dispatcher asks of the store when callbacks come
// and go: which have pending rows at start, dead-lettering a removed
// callback's rows, and lifting a 410 when a callback's URL changed.
type Callbacks interface {
	CountPending(ctx context.Context) (map[string]int, error)
	Abandon(ctx context.Context, callback, reason string, now time.Time) (int, error)
	Enable(ctx context.Context, name string) error
}

// Pruner deletes delivered rows past their retention.
type Pruner interface {
	Prune(ctx context.Context, before time.Time) (int, error)
}

// DeadLetters lists deliveries and replays dead letters, for the admin API
// (Dispatcher.List and Dispatcher.Replay).
type DeadLetters interface {
	List(ctx context.Context, f store.Filter) ([]store.Delivery, error)
	Replay(ctx context.Context, f store.ReplayFilter, now time.Time) (int, error)
}

// Store is a backend for the dispatcher: the sum of what its parts use.
type Store interface {
	Writer
	Queue
	Callbacks
	Pruner
	DeadLetters
	Historian
	Breakers
}

var _ Store = (*store.Store)(nil)

// Options configures a Dispatcher.
type Options struct {
	// Store is the durable outbox. Required.
	Store Store
	// Sender sends. Required.
	Sender Sender
	// Routing is the initial routing; nil routes nothing.
	Routing *Routing
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock: every time the dispatcher stores or schedules by
	// comes from it; nil is time.Now. Timers wait in real time and then
	// compare with Now.
	Now func() time.Time
	// Grace bounds how long Run waits for in-flight sends on shutdown
	// before cancelling them. Default 10s.
	Grace time.Duration
	// MaxLoaded caps the pending deliveries held in memory per callback;
	// the rest wait in the store. Default 10000.
	MaxLoaded int
	// Resync is how often a lane re-reads the store, which picks up
	// replays made by another process. Default 5s.
	Resync time.Duration
	// Retention is how long delivered rows are kept. Default 1h.
	Retention time.Duration
	// BreakerProbeMin is the first wait before probing an open circuit; it
	// doubles up to Delivery.BreakerProbeMax. Default 1s.
	BreakerProbeMin time.Duration
	// CommitDelay makes the committer wait this long to gather more writes
	// into a transaction. Default 0: it batches whatever queued while the
	// previous transaction was syncing.
	CommitDelay time.Duration
	// StatesDelay is how long tracker states whose events went to no
	// callback may wait to share a transaction with later writes. Such
	// writes are the common case (a new execution's WORKFLOW_LAUNCHED that
	// nobody subscribed to) and each would cost a transaction of its own
	// (docs/performance.md). Accept does not wait for them, so a crash may lose
	// the last StatesDelay of them: after a restart the tracker derives
	// those events again (same ids) and they still match no callback. A
	// write with deliveries takes every deferred state before it along, so
	// a delivery is never durable ahead of a state it depends on. Default
	// 50ms; negative: states are committed before Accept returns.
	StatesDelay time.Duration
	// History records every accepted event (store.Write.Events, in the
	// same transaction as its states and deliveries), so that a listener
	// added later is backfilled (AddListener). Set when the listeners API
	// is on. Default off.
	History bool
	// HistoryRetention is how long recorded events are kept (by event
	// time). With History on, delivered rows are kept at least as long, so
	// that a listener added again (after a restart or a fail-over) is not
	// backfilled with events it already received. Default 24h.
	HistoryRetention time.Duration
}

// CallbackStatus is a callback's delivery state.
type CallbackStatus struct {
	Name    string `json:"name"`
	Pending int    `json:"pending"`
	// InFlight counts requests to the receiver in progress (outcomes
	// waiting to be committed are not counted).
	InFlight int `json:"in_flight"`
	// OldestPendingAge is the age of the oldest pending event held in
	// memory (the oldest overall, since they load oldest first).
	OldestPendingAge     time.Duration `json:"-"`
	OldestPendingSeconds float64       `json:"oldest_pending_seconds"`
	Breaker              BreakerState  `json:"breaker"`
	ConsecutiveFailures  int           `json:"consecutive_failures"`
	NextProbe            time.Time     `json:"next_probe,omitzero"`
	Disabled             bool          `json:"disabled"`
	DisabledReason       string        `json:"disabled_reason,omitempty"`
	DisabledSince        time.Time     `json:"disabled_since,omitzero"`
}

// Dispatcher is the durable outbox and its workers. It is the tracker's
// sink (track.Sink), which notifier does not import: the flow runs from the
// tracker to the notifier, never back.
type Dispatcher struct {
	o       Options
	st      Store
	log     *slog.Logger
	routing atomic.Pointer[Routing]
	c       *committer
	health  *storeHealth
	// laneWaiting, if set before Run, is called whenever a lane waits
	// (tests; see laneDeps.waiting).
	laneWaiting func(name string, gen uint64, busy int)
	// acceptBuilt, if set, is called by Accept between matching and
	// submitting its write (tests of AddListener's atomicity).
	acceptBuilt func()

	mu      sync.Mutex
	lanes   map[string]*lane
	running bool
	runCtx  context.Context

	// Listener routes (listeners.go). bar is held shared by Accept from
	// loading the routes until its write is submitted, exclusively by
	// AddListener and RemoveListener while they change lroutes and submit
	// their barrier. lroutes is copied on write (attempt reads it without
	// bar). incoming counts, per listener, deliveries submitted by Accept
	// and not yet handed to the lane (guarded by mu).
	bar      sync.RWMutex
	lops     sync.Mutex // one AddListener or RemoveListener at a time
	lmatch   Matcher
	lroutes  atomic.Pointer[map[string]Route]
	incoming map[string]int

	sends      sync.WaitGroup
	sendCtx    context.Context
	cancelSend context.CancelFunc
}

// New returns a Dispatcher; call Run to start delivering.
func New(o Options) (*Dispatcher, error) {
	if o.Store == nil {
		return nil, errors.New("notifier: Options.Store is required")
	}
	if o.Sender == nil {
		return nil, errors.New("notifier: Options.Sender is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Grace <= 0 {
		o.Grace = 10 * time.Second
	}
	if o.MaxLoaded <= 0 {
		o.MaxLoaded = 10000
	}
	if o.Resync <= 0 {
		o.Resync = 5 * time.Second
	}
	if o.StatesDelay == 0 {
		o.StatesDelay = 50 * time.Millisecond
	}
	if o.Retention <= 0 {
		o.Retention = time.Hour
	}
	if o.BreakerProbeMin <= 0 {
		o.BreakerProbeMin = time.Second
	}
	if o.HistoryRetention <= 0 {
		o.HistoryRetention = 24 * time.Hour
	}
	d := &Dispatcher{o: o, st: o.Store, log: o.Logger, lanes: map[string]*lane{},
		health: &storeHealth{log: o.Logger}, incoming: map[string]int{}}
	d.lroutes.Store(&map[string]Route{})
	r := o.Routing
	if r == nil {
		r = &Routing{}
	}
	d.routing.Store(r)
	d.sendCtx, d.cancelSend = context.WithCancel(context.Background())
	return d, nil
}

func (d *Dispatcher) now() time.Time { return d.o.Now() }

// Accept matches each event and writes its deliveries together with states
// (and, with Options.History, the events themselves) in one transaction,
// durable when Accept returns nil; then it wakes the callbacks' workers.
// Events are copied; the caller keeps ownership.
func (d *Dispatcher) Accept(ctx context.Context, events []event.Event, states []event.EntityState) error {
	// Shared from loading the routes until the write is submitted: a
	// listener added meanwhile (AddListener) waits, so every write either
	// saw its route or is committed before its backfill reads the history.
	d.bar.RLock()
	held := true
	defer func() {
		if held {
			d.bar.RUnlock()
		}
	}()
	w, items, err := d.build(events, states)
	if err != nil {
		return err
	}
	if d.acceptBuilt != nil {
		d.acceptBuilt()
	}
	if len(w.Insert) == 0 && len(w.States) == 0 && len(w.Events) == 0 {
		return nil
	}
	if len(w.Insert) == 0 && d.o.StatesDelay > 0 {
		// Only states (and history): nothing to deliver and nobody to
		// wake; see Options.StatesDelay.
		if c := d.committerOrNil(); c != nil {
			n := len(w.States)
			if c.submitDeferred(w, func(err error) {
				if err != nil {
					d.log.Error("saving tracker states failed; after a restart their events are derived again", "states", n, "err", err)
				}
			}) == nil {
				return nil
			}
		}
	}
	w.Inserted = make([]bool, len(w.Insert))
	toListeners := d.expect(w.Insert, 1)
	wait := d.submit(ctx, w)
	d.bar.RUnlock()
	held = false
	if err := wait(); err != nil {
		d.expect(toListeners, -1)
		return fmt.Errorf("notifier: accepting %d events: %w", len(events), err)
	}
	byLane := map[string][]*item{}
	for i, del := range w.Insert {
		if w.Inserted[i] { // a re-accepted event is not queued again
			byLane[del.Callback] = append(byLane[del.Callback], items[i])
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expectLocked(toListeners, -1)
	for name, its := range byLane {
		if l := d.lanes[name]; l != nil {
			l.accept(its)
		}
	}
	return nil
}

// build matches events against the file routing and the listeners, and
// returns the write (deliveries, states, history) and an item per delivery.
func (d *Dispatcher) build(events []event.Event, states []event.EntityState) (store.Write, []*item, error) {
	rt := d.routing.Load()
	lr := *d.lroutes.Load()
	now := d.now()
	w := store.Write{States: states}
	var items []*item
	for i := range events {
		ev := &events[i]
		names := d.match(rt, lr, ev)
		if len(names) == 0 && !d.o.History {
			continue
		}
		// One encoding serves the history and every callback.
		body, err := json.Marshal(ev)
		if err != nil {
			return w, nil, fmt.Errorf("notifier: accepting events: encoding event %s: %w", ev.ID, err)
		}
		if d.o.History {
			w.Events = append(w.Events, store.RecordedOf(ev, body, now))
		}
		var cp *event.Event
		for _, name := range names {
			if cp == nil {
				cp = copyEvent(ev)
			}
			del := store.NewDeliveryJSON(ev, body, name, now)
			w.Insert = append(w.Insert, del)
			items = append(items, &item{id: del.ID, root: del.RootID, seq: del.Seq, nextAt: del.NextAt,
				created: del.CreatedAt, ev: cp, hidx: -1})
		}
	}
	return w, items, nil
}

// match returns the routes ev goes to: the file matcher's, then the
// listeners'. A listener the registry knows but that is not (yet, or no
// longer) added here is skipped quietly: the registry may run ahead of
// AddListener, and on a standby replica no listener is added at all.
func (d *Dispatcher) match(rt *Routing, lr map[string]Route, ev *event.Event) []string {
	var out []string
	if rt.Matcher != nil {
		for _, name := range rt.Matcher.Match(ev) {
			if _, ok := rt.Routes[name]; !ok {
				d.log.Warn("matcher returned an unknown callback; event not routed to it", "callback", name, "event", ev.ID)
				continue
			}
			out = append(out, name)
		}
	}
	if d.lmatch != nil && len(lr) > 0 {
		for _, name := range d.lmatch.Match(ev) {
			if _, ok := lr[name]; ok && IsListener(name) {
				out = append(out, name)
			}
		}
	}
	return out
}

// submit queues w for commit and returns the wait for its outcome: through
// the committer's ordered queue while Run is running, directly otherwise
// (then the commit happens here and wait only reports it).
func (d *Dispatcher) submit(ctx context.Context, w store.Write) (wait func() error) {
	if c := d.committerOrNil(); c != nil {
		res := make(chan error, 1)
		if c.submit(w, func(err error) { res <- err }) == nil {
			// Not selecting on ctx: see committer.commit.
			return func() error { return <-res }
		}
	}
	err := d.st.Commit(ctx, w)
	d.health.observe(err)
	return func() error { return err }
}

// SetCheckpoint saves a position (the watcher's) in order with Accept's
// writes: it is durable only once every write accepted before it is,
// deferred tracker states included (Options.StatesDelay). So a watcher
// whose checkpoint moved past an observation never finds, after a crash,
// that the state the observation produced was lost.
func (d *Dispatcher) SetCheckpoint(ctx context.Context, key, value string) error {
	w := store.Write{Checkpoints: []store.Checkpoint{{Key: key, Value: value}}}
	if err := d.commit(ctx, w); err != nil {
		return fmt.Errorf("notifier: saving checkpoint %s: %w", key, err)
	}
	return nil
}

// commit makes w durable, through the committer's ordered queue while Run
// is running, directly otherwise.
func (d *Dispatcher) commit(ctx context.Context, w store.Write) error {
	if c := d.committerOrNil(); c != nil {
		return c.commit(ctx, w)
	}
	err := d.st.Commit(ctx, w)
	d.health.observe(err)
	return err
}

// StoreHealthy returns nil while the store commits, and an error naming
// the cause while its commits fail (a full disk): deliveries then wait,
// and readiness should fail.
func (d *Dispatcher) StoreHealthy() error { return d.health.get() }

func copyEvent(ev *event.Event) *event.Event {
	cp := *ev
	if ev.Execution != nil {
		x := *ev.Execution
		cp.Execution = &x
	}
	if ev.Task != nil {
		t := *ev.Task
		cp.Task = &t
	}
	return &cp
}

func (d *Dispatcher) committerOrNil() *committer {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running {
		return d.c
	}
	return nil
}

// SetRouting swaps the routing atomically. Lanes of new callbacks start;
// pending deliveries of removed callbacks become dead letters ("callback
// removed"); a callback disabled by a 410 whose URL changed is re-enabled.
func (d *Dispatcher) SetRouting(r *Routing) {
	if r == nil {
		r = &Routing{}
	}
	d.routing.Store(r)
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.running {
		return // Run reconciles the store with the routing when it starts
	}
	for name, l := range d.lanes {
		if _, ok := r.Routes[name]; ok {
			continue
		}
		if lr, ok := d.route(r, name); ok && IsListener(name) {
			// Listener lanes are not the file's: only the delivery
			// defaults apply to them.
			l.reconfigure(lr, r.Delivery)
			continue
		}
		l.remove(removedCallback)
		delete(d.lanes, name)
		d.abandon(name)
	}
	for name, rt := range r.Routes {
		l := d.lanes[name]
		if l == nil {
			d.startLane(rt, r.Delivery, 0)
			continue
		}
		if !l.reconfigure(rt, r.Delivery) {
			continue
		}
		if err := d.st.Enable(context.Background(), name); err != nil {
			d.log.Error("re-enabling callback failed", "callback", name, "err", err)
			continue
		}
		l.enable("callback re-enabled: its URL changed")
	}
}

// abandon dead-letters a removed callback's pending deliveries.
func (d *Dispatcher) abandon(name string) { d.abandonAs(name, removedCallback) }

// removedCallback is the dead letters' reason for a callback removed from
// the configuration.
const removedCallback = "callback removed"

// abandonAs dead-letters a route's pending deliveries with reason.
func (d *Dispatcher) abandonAs(name, reason string) {
	n, err := d.st.Abandon(context.Background(), name, reason, d.now())
	if err != nil {
		d.log.Error("dead-lettering deliveries of removed callback failed", "callback", name, "err", err)
		return
	}
	if n > 0 {
		d.log.Warn("callback removed; its pending deliveries are now dead letters", "callback", name, "reason", reason, "deliveries", n)
	}
}

// startLane starts a lane for rt; d.mu is held and d.running is true.
func (d *Dispatcher) startLane(rt Route, def config.Delivery, pending int) *lane {
	return d.startLaneHeld(rt, def, pending, false)
}

// startLaneHeld is startLane; a held lane sends nothing until released
// (AddListener's backfill).
func (d *Dispatcher) startLaneHeld(rt Route, def config.Delivery, pending int, held bool) *lane {
	l := newLane(laneDeps{
		queue: d.st, now: d.now, log: d.log, maxLoaded: d.o.MaxLoaded, resync: d.o.Resync,
		probeMin: d.o.BreakerProbeMin, send: d.startSend, save: d.save, waiting: d.laneWaiting,
		breakers: d.st, saveBreaker: d.saveBreaker,
	}, rt, def, pending)
	l.held = held
	ctx, cancel := context.WithCancel(d.runCtx)
	l.cancel = cancel
	d.lanes[rt.Callback.Name] = l
	go l.run(ctx)
	return l
}

// Run delivers until ctx is done; then it stops taking new work, gives
// in-flight sends Options.Grace to finish (cancelling them after), records
// their outcomes and returns nil.
func (d *Dispatcher) Run(ctx context.Context) error {
	if err := d.start(ctx); err != nil {
		return err
	}
	prune := time.NewTicker(min(d.o.Retention/4, time.Minute))
	defer prune.Stop()
	d.pruneUntilDone(ctx, prune.C)
	d.waitLanes()
	d.waitSends()
	d.mu.Lock()
	d.running = false
	d.lanes = map[string]*lane{}
	c := d.c
	d.mu.Unlock()
	c.stop() // flushes recorded outcomes
	d.sendCtx, d.cancelSend = context.WithCancel(context.Background())
	return nil
}

// start marks the dispatcher running under ctx and starts the lanes of the
// routed callbacks and listeners with their pending rows, all under d.mu:
// SetRouting, which takes it too, then sees either a dispatcher not
// running (and leaves the reconciling to Run) or one with all its lanes.
func (d *Dispatcher) start(ctx context.Context) error {
	d.mu.Lock()
	if d.running {
		d.mu.Unlock()
		return errors.New("notifier: dispatcher already running")
	}
	counts, err := d.st.CountPending(ctx)
	if err != nil {
		d.mu.Unlock()
		return fmt.Errorf("notifier: starting: %w", err)
	}
	d.c = newCommitter(d.st, d.o.CommitDelay, max(d.o.StatesDelay, 0), d.health.observe)
	d.running, d.runCtx = true, ctx
	rt := d.routing.Load()
	lr := *d.lroutes.Load()
	d.abandonUnrouted(ctx, rt, counts)
	for name, r := range rt.Routes {
		d.startLane(r, rt.Delivery, counts[name])
	}
	// Listeners added before a previous Run ended (a fail-over and back)
	// are still routed: their lanes start again.
	for name, r := range lr {
		d.startLane(r, rt.Delivery, counts[name])
	}
	d.mu.Unlock()
	return nil
}

// abandonUnrouted gives up the pending rows (counts, by callback) of
// callbacks no longer configured and of listeners since removed. d.mu is
// held by the caller.
func (d *Dispatcher) abandonUnrouted(ctx context.Context, rt *Routing, counts map[string]int) {
	gone := d.deletedListeners(ctx, counts)
	for name := range counts {
		if _, ok := rt.Routes[name]; ok {
			continue
		}
		if !IsListener(name) {
			d.abandon(name)
		} else if gone[name] {
			d.abandonAs(name, "listener removed")
		}
		// Other listeners' rows wait for AddListener.
	}
}

// pruneUntilDone prunes on every tick until ctx is done.
func (d *Dispatcher) pruneUntilDone(ctx context.Context, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			d.prune(ctx)
		}
	}
}

// waitLanes waits for every lane to end; lanes stop taking work when the
// Run context is done. The lanes are copied under d.mu and waited for
// without it: holding it for the whole drain would block every other
// caller of the dispatcher.
func (d *Dispatcher) waitLanes() {
	d.mu.Lock()
	lanes := make([]*lane, 0, len(d.lanes))
	for _, l := range d.lanes {
		lanes = append(lanes, l)
	}
	d.mu.Unlock()
	for _, l := range lanes {
		<-l.done // lanes stop taking work on ctx done
	}
}

// waitSends waits for in-flight sends to end, for at most the grace
// period: then they are cancelled, and waited for again.
func (d *Dispatcher) waitSends() {
	sent := make(chan struct{})
	go func() { d.sends.Wait(); close(sent) }()
	select {
	case <-sent:
	case <-time.After(d.o.Grace):
		d.log.Warn("shutdown grace expired; cancelling in-flight sends", "grace", d.o.Grace)
		d.cancelSend()
		<-sent
	}
}

// prune deletes delivered rows past their retention and, with History,
// recorded events past theirs. Delivered rows then stay at least as long
// as the history: a listener added again is backfilled from the history,
// and an existing delivery row is what keeps an event it already received
// from being sent again.
func (d *Dispatcher) prune(ctx context.Context) {
	keep := d.o.Retention
	if d.o.History {
		keep = max(keep, d.o.HistoryRetention)
		if n, err := d.st.PruneHistory(ctx, d.now().Add(-d.o.HistoryRetention)); err != nil && ctx.Err() == nil {
			d.log.Error("pruning event history failed", "err", err)
		} else if n > 0 {
			d.log.Debug("pruned event history", "events", n)
		}
	}
	if n, err := d.st.Prune(ctx, d.now().Add(-keep)); err != nil && ctx.Err() == nil {
		d.log.Error("pruning delivered rows failed", "err", err)
	} else if n > 0 {
		d.log.Debug("pruned delivered rows", "rows", n)
	}
}

// deletedListeners returns the listeners among counts' names that the store
// no longer has (deleted while this process was not dispatching). Without
// History (the listeners API off) it asks nothing.
func (d *Dispatcher) deletedListeners(ctx context.Context, counts map[string]int) map[string]bool {
	var names []string
	for name := range counts {
		if IsListener(name) {
			names = append(names, name)
		}
	}
	if len(names) == 0 || !d.o.History {
		return nil
	}
	ls, err := d.st.Listeners(ctx)
	if err != nil {
		d.log.Error("reading listeners failed; pending deliveries of deleted ones stay pending", "err", err)
		return nil
	}
	have := map[string]bool{}
	for _, l := range ls {
		have[ListenerPrefix+l.ID] = true
	}
	gone := map[string]bool{}
	for _, name := range names {
		gone[name] = !have[name]
	}
	return gone
}

// startSend starts a send of it (taken by l) in its own goroutine.
func (d *Dispatcher) startSend(l *lane, it *item) {
	d.sends.Add(1)
	go d.attempt(l, it)
}

// save queues o for commit; l learns the result through completed.
func (d *Dispatcher) save(l *lane, it *item, o *outcome) {
	if err := d.c.submit(o.w, func(err error) { l.completed(it, o, err) }); err != nil {
		err = d.st.Commit(context.Background(), o.w)
		d.health.observe(err)
		l.completed(it, o, err)
	}
}

// attempt sends one delivery and records its outcome.
func (d *Dispatcher) attempt(l *lane, it *item) {
	defer d.sends.Done()
	rt := d.routing.Load()
	route, ok := d.route(rt, l.name)
	var res send.Result
	switch {
	case !ok:
		// The route went before this send: nothing is sent, the row is
		// dead with the removal's reason (RemoveListener sets it first).
		d.unsent(l, it)
		return
	case route.Format == nil:
		res = send.Result{Outcome: send.Permanent, Err: errors.New("callback has no formatter")}
	default:
		msg, err := route.Format.Format(it.ev)
		if err != nil {
			res = send.Result{Outcome: send.Permanent, Err: fmt.Errorf("rendering payload: %w", err)}
			break
		}
		res = d.o.Sender.Send(d.sendCtx, request(route, rt.Delivery, it, msg))
	}
	now := d.now()
	// The store and the admin API see the URL without its secrets.
	var shownURL string
	if res.Outcome == send.Gone {
		shownURL = route.Callback.RedactedURL()
	}
	l.observe(it, res, shownURL, now)
	u := decide(route.Callback.Retry, it, res, now, rand.Float64(), l.removal())
	w := store.Write{Updates: []store.Update{u}}
	if res.Outcome == send.Gone && ok {
		w.Disable = []store.Disabled{{Name: l.name, Reason: "endpoint answered 410 Gone", URL: shownURL, Since: now}}
	}
	if u.State == store.Dead {
		l.log.Warn("delivery dead", "delivery", it.id, "status", u.LastStatus, "attempts", u.Attempts)
	}
	d.save(l, it, &outcome{w: w, u: u})
	// The concurrency slot is freed once the outcome is queued, not once
	// it is durable: concurrency bounds requests to the receiver, and
	// holding the slot through the commit's fsync idled the lane for one
	// fsync per round of sends (docs/performance.md). The
	// item itself stays in flight until completed, so it is not sent again
	// and its root's successor is not released before the outcome is
	// committed. Freeing after submit (which blocks when the committer's
	// queue is full) keeps a slow disk throttling the sends.
	l.sent()
}

// unsent records a delivery whose route was removed before it was sent:
// dead, with the removal's reason, and no attempt counted.
func (d *Dispatcher) unsent(l *lane, it *item) {
	reason := l.removal()
	if reason == "" {
		reason = removedCallback
	}
	now := d.now()
	u := store.Update{ID: it.id, State: store.Dead, Attempts: it.attempts, LastError: reason, UpdatedAt: now, NextAt: now}
	d.save(l, it, &outcome{w: store.Write{Updates: []store.Update{u}}, u: u})
	l.sent()
}

// request builds the send.Request for one delivery.
func request(rt Route, def config.Delivery, it *item, msg payload.Message) send.Request {
	cb := rt.Callback
	// send copies the header into each request, so it is only cloned here
	// when the callback's headers are added to it.
	h := msg.Header
	if len(cb.Headers) > 0 {
		h = h.Clone()
		if h == nil {
			h = http.Header{}
		}
		for k, v := range cb.Headers {
			if h.Get(k) == "" {
				h.Set(k, v)
			}
		}
	}
	method := msg.Method
	if method == "" {
		method = cb.Method
	}
	if method == "" {
		method = http.MethodPost
	}
	timeout := cb.Timeout
	if timeout <= 0 {
		timeout = def.Timeout
	}
	retries := def.Retries
	if cb.Retries != nil {
		retries = *cb.Retries
	}
	label := cb.Name
	if IsListener(label) {
		label = ListenerClass // metrics: one class, never per id
	}
	return send.Request{
		Callback: label, Method: method, URL: cmp.Or(msg.URL, cb.URL), Header: h, Body: msg.Body,
		EventID: it.ev.ID, RootID: it.root, Transport: cb.Type, Topic: msg.Key,
		Secrets: rt.Secrets, Conceal: cb.ExpandedSecrets(), Timeout: timeout, Retries: retries,
		RetryWaitMin: def.RetryWaitMin, RetryWaitMax: def.RetryWaitMax,
	}
}

// List returns deliveries from the store.
func (d *Dispatcher) List(ctx context.Context, f store.Filter) ([]store.Delivery, error) {
	return d.st.List(ctx, f)
}

// Replay re-queues matching dead letters (see store.Replay) and wakes the
// affected callbacks; replaying a callback re-enables it after a 410.
func (d *Dispatcher) Replay(ctx context.Context, f store.ReplayFilter) (int, error) {
	n, err := d.st.Replay(ctx, f, d.now())
	if err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, l := range d.lanes {
		if f.Callback != "" && f.Callback != name {
			continue
		}
		l.replayed(f.Callback != "")
	}
	return n, nil
}

// sumListeners adds a listener lane's status s to the class's sum: counts
// add up, the oldest pending and the most consecutive failures win, the
// breaker is open if any listener's is, disabled only if all are.
func sumListeners(sum *CallbackStatus, s CallbackStatus) *CallbackStatus {
	if sum == nil {
		s.Name, s.DisabledReason, s.DisabledSince, s.NextProbe = ListenerClass, "", time.Time{}, time.Time{}
		return &s
	}
	sum.Pending += s.Pending
	sum.InFlight += s.InFlight
	if s.OldestPendingAge > sum.OldestPendingAge {
		sum.OldestPendingAge, sum.OldestPendingSeconds = s.OldestPendingAge, s.OldestPendingSeconds
	}
	sum.ConsecutiveFailures = max(sum.ConsecutiveFailures, s.ConsecutiveFailures)
	if s.Breaker == BreakerOpen {
		sum.Breaker = BreakerOpen
	}
	sum.Disabled = sum.Disabled && s.Disabled
	return sum
}

// Status reports every running callback, sorted by name; listener routes
// are summed up as one entry named ListenerClass.
func (d *Dispatcher) Status() []CallbackStatus {
	d.mu.Lock()
	lanes := make([]*lane, 0, len(d.lanes))
	for _, l := range d.lanes {
		lanes = append(lanes, l)
	}
	d.mu.Unlock()
	now := d.now()
	out := make([]CallbackStatus, 0, len(lanes))
	var listeners *CallbackStatus
	for _, l := range lanes {
		s := l.status(now)
		if IsListener(s.Name) {
			listeners = sumListeners(listeners, s)
			continue
		}
		out = append(out, s)
	}
	if listeners != nil {
		out = append(out, *listeners)
	}
	slices.SortFunc(out, func(a, b CallbackStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}
