package notifier

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// Queue is what a lane reads from the store: its callback's pending rows,
// a cheap summary of them, and the callbacks a 410 disabled.
type Queue interface {
	Pending(ctx context.Context, callback string, limit int) ([]store.Delivery, error)
	PendingSummary(ctx context.Context, callback string) (int, time.Time, error)
	DisabledCallbacks(ctx context.Context) (map[string]store.Disabled, error)
}

// Retries of an outcome the store could not commit start after
// saveRetryMin and double up to saveRetryMax.
const (
	saveRetryMin = time.Second
	saveRetryMax = 30 * time.Second
)

// outcome is a send's result as it is to be saved.
type outcome struct {
	w        store.Write // the row's update, and the 410's disable if any
	u        store.Update
	failures int       // failed commits so far
	retryAt  time.Time // next commit attempt, after a failure
}

// laneDeps is what a lane gets from its dispatcher.
type laneDeps struct {
	queue     Queue
	now       func() time.Time
	log       *slog.Logger
	maxLoaded int
	resync    time.Duration
	probeMin  time.Duration
	// send starts a send of it in its own goroutine; save queues an
	// outcome for commit. Both report back through the lane's methods.
	send func(l *lane, it *item)
	save func(l *lane, it *item, o *outcome)
	// breakers has the breaker recorded by the previous dispatcher;
	// saveBreaker queues a record of a change for commit (breaker.go).
	breakers    Breakers
	saveBreaker func(store.Breaker)
	// waiting, if set, is called whenever the lane waits and was not
	// notified since it last looked at its queue: gen is the notification
	// count it looked after, busy the sends and commits under way (tests).
	waiting func(name string, gen uint64, busy int)
}

// disablement is a callback switched off by a 410 Gone (persisted in the
// store): its pending deliveries wait until a replay or a new URL.
type disablement struct {
	on    bool
	why   string
	since time.Time
	url   string // the URL that answered 410
}

// lane is one callback's scheduler. It combines the callback's queue
// (ordering), its window on the store's pending rows (spill and refill),
// its breaker and 410 disablement, under one mutex, and runs the loop that
// starts sends. A lane never waits on another lane, so a slow receiver
// holds up only its own callback.
type lane struct {
	name string
	deps laneDeps
	log  *slog.Logger

	wake   chan struct{}
	gen    atomic.Uint64 // notifications so far
	cancel context.CancelFunc
	done   chan struct{}

	mu          sync.Mutex
	q           queue
	win         window
	br          breaker
	dis         disablement
	removed     bool
	removedAs   string        // why its deliveries are dead-lettered (remove, removing)
	held        bool          // started by AddListener: no sends until its backfill is in
	url         string        // the callback's URL, redacted: what the breaker judges
	brMu        sync.Mutex    // orders breaker records (saveBreaker)
	brSaved     breakerStatus // the breaker as last recorded, and for which URL
	brURL       string
	concurrency int
	inflight    int // sends in progress (bounded by concurrency)
	busy        int // sends and commits under way (for idle)
	unsaved     map[*item]struct{}
}

// newLane returns a lane for r; pending is the store's count of its pending
// rows.
func newLane(deps laneDeps, r Route, def config.Delivery, pending int) *lane {
	log := deps.log.With("callback", r.Callback.Name)
	l := &lane{
		name: r.Callback.Name, deps: deps, log: log,
		wake: make(chan struct{}, 1), done: make(chan struct{}),
		q: newQueue(), win: newWindow(deps.maxLoaded, pending),
		br: newProbeBreaker(deps.probeMin, log), unsaved: map[*item]struct{}{},
	}
	l.configureLocked(r, def)
	return l
}

// configureLocked applies a (re)loaded route and delivery settings.
func (l *lane) configureLocked(r Route, def config.Delivery) {
	l.concurrency = r.Callback.Concurrency
	if l.concurrency <= 0 {
		l.concurrency = DefaultConcurrency
	}
	l.q.setOrdered(r.Callback.Ordering != "none")
	l.br.configure(def.BreakerThreshold, def.BreakerProbeMax)
	url := r.Callback.RedactedURL()
	if l.url != "" && url != l.url {
		// The breaker judged the old receiver; the new one gets a chance
		// at once (the next record says so).
		if l.br.state().open {
			l.log.Info("circuit closed: the callback's URL changed")
		}
		l.br.restore(breakerStatus{})
	}
	l.url = url
}

// reconfigure applies a reloaded route. It reports whether the callback is
// disabled by a 410 from another URL than its new one: the caller then
// re-enables it in the store and calls enable.
func (l *lane) reconfigure(r Route, def config.Delivery) (urlChanged bool) {
	l.mu.Lock()
	l.configureLocked(r, def)
	urlChanged = l.dis.on && l.dis.url != "" && l.dis.url != r.Callback.RedactedURL()
	l.mu.Unlock()
	l.notify()
	return urlChanged
}

// enable lifts a 410's disablement, logging msg if there was one.
func (l *lane) enable(msg string) {
	l.mu.Lock()
	was := l.dis.on
	l.dis = disablement{}
	l.mu.Unlock()
	if was {
		l.log.Info(msg)
	}
	l.notify()
}

// remove stops the lane for good: its callback left the configuration.
// With a reason its deliveries are being dead-lettered (abandonAs): the
// outcome of a send still under way is decided dead with that reason (the
// stores never revive a dead letter, so one committed after the
// abandonment changes nothing). Without one (an AddListener undone) the
// rows stay pending for the next route.
func (l *lane) remove(reason string) {
	l.mu.Lock()
	l.removed = true
	if reason != "" {
		l.removedAs = reason
	}
	l.mu.Unlock()
	l.cancel()
}

// removing records why the lane is about to be removed, before its route
// goes: a send that then finds no route records that reason.
func (l *lane) removing(reason string) {
	l.mu.Lock()
	l.removedAs = reason
	l.mu.Unlock()
}

// removal is the reason the lane is (being) removed with, "" if none.
func (l *lane) removal() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.removedAs
}

// release lets a held lane send.
func (l *lane) release() {
	l.mu.Lock()
	l.held = false
	l.mu.Unlock()
	l.notify()
}

// idle reports whether the lane has nothing to deliver: nothing held in
// memory, sent or being saved, and no pending row left in the store.
func (l *lane) idle() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.held && !l.win.spilled && !l.win.reading && l.win.pending == 0 && l.q.len() == 0 &&
		l.busy == 0 && l.inflight == 0 && len(l.unsaved) == 0
}

// replayed is told that dead letters were replayed: the lane re-reads the
// store, and a replay of the whole callback also lifts a 410.
func (l *lane) replayed(wholeCallback bool) {
	if wholeCallback {
		l.enable("callback re-enabled by replay")
	}
	l.mu.Lock()
	l.win.requestRefill()
	l.mu.Unlock()
	l.notify()
}

func (l *lane) notify() {
	l.gen.Add(1)
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// accept takes freshly committed items, unless the lane is spilled: then
// older rows wait in the store and the new ones must queue behind them.
func (l *lane) accept(items []*item) {
	l.mu.Lock()
	for _, it := range items {
		if l.q.has(it.id) {
			// A refill read it from the store first and counted it
			// (AddListener's backfill races with a new lane's first
			// refill): counting it again would keep the lane from ever
			// looking idle.
			continue
		}
		if l.win.accepted(it, l.q.len()) {
			l.q.add(it)
		}
	}
	l.mu.Unlock()
	l.notify()
}

// takeDue takes the items to send now and returns how long to wait before
// looking again (0: no timer needed).
func (l *lane) takeDue(now time.Time) ([]*item, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held || l.dis.on || l.removed || !l.q.eligible() || l.inflight >= l.concurrency {
		return nil, 0
	}
	ok, probe, wait := l.br.allow(now)
	if !ok {
		return nil, wait
	}
	if probe {
		// An open circuit's trial goes now, due or not.
		it := l.q.pop()
		it.probe = true
		l.started(it)
		return []*item{it}, 0
	}
	var out []*item
	for l.inflight < l.concurrency {
		at, ok := l.q.next()
		if !ok {
			return out, 0
		}
		if at.After(now) {
			return out, at.Sub(now)
		}
		it := l.q.pop()
		l.started(it)
		out = append(out, it)
	}
	return out, 0
}

func (l *lane) started(it *item) {
	l.inflight++
	l.busy++
}

// observe updates the breaker and the disablement from a send's result,
// before the result is committed, so that no further sends start meanwhile.
func (l *lane) observe(it *item, res send.Result, url string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.br.record(res.Outcome, it.probe, now)
	it.probe = false
	if res.Outcome == send.Gone && !l.dis.on {
		l.dis = disablement{on: true, why: "endpoint answered 410 Gone", since: now, url: url}
		l.log.Warn("callback disabled: endpoint answered 410 Gone; replay the callback or change its URL to re-enable")
	}
}

// sent frees the concurrency slot of a send whose outcome is queued for
// commit (see Dispatcher.attempt).
func (l *lane) sent() {
	l.mu.Lock()
	l.inflight--
	l.mu.Unlock()
	l.notify()
	l.saveBreaker() // observe may have changed it
}

// completed applies a commit of o (err nil) or its failure. A failed
// commit keeps the item in flight and its outcome in memory, to be
// committed again with back-off: the receiver already has the delivery,
// so sending it again would only flood it (the store's trouble is logged
// once, by the dispatcher's storeHealth). If the process stops first, the
// row is still pending and is sent again after the restart.
func (l *lane) completed(it *item, o *outcome, err error) {
	l.mu.Lock()
	l.busy--
	switch {
	case err != nil:
		o.failures++
		o.retryAt = l.deps.now().Add(saveBackoff(o.failures))
		it.unsaved = o
		l.unsaved[it] = struct{}{}
		l.log.Debug("saving delivery outcome failed; retrying", "delivery", it.id, "failures", o.failures, "err", err)
	case o.u.State == store.Pending:
		l.settle(it)
		it.attempts, it.nextAt = o.u.Attempts, o.u.NextAt
		l.q.requeue(it)
	default:
		l.settle(it)
		l.q.remove(it)
		l.win.completed(it.id, l.q.len())
	}
	l.mu.Unlock()
	l.notify()
}

// saveBackoff is the wait before committing an outcome again after its
// n-th failed commit.
func saveBackoff(n int) time.Duration {
	d := saveRetryMin
	for i := 1; i < n && d < saveRetryMax; i++ {
		d *= 2
	}
	return min(d, saveRetryMax)
}

// settle marks its outcome as saved.
func (l *lane) settle(it *item) {
	it.inflight, it.unsaved = false, nil
	delete(l.unsaved, it)
}

// dueSaves takes the outcomes whose commit is to be retried now, and
// returns how long until the next one (0: none waiting).
func (l *lane) dueSaves(now time.Time) (due []unsavedItem, wait time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for it := range l.unsaved {
		if at := it.unsaved.retryAt; at.After(now) {
			if d := at.Sub(now); wait == 0 || d < wait {
				wait = d
			}
			continue
		}
		delete(l.unsaved, it)
		l.busy++
		due = append(due, unsavedItem{it, it.unsaved})
	}
	return due, wait
}

type unsavedItem struct {
	it *item
	o  *outcome
}

// run schedules the lane's sends until ctx is done.
func (l *lane) run(ctx context.Context) {
	defer close(l.done)
	defer l.reportUnsaved()
	l.loadBreaker(ctx)
	l.refill(ctx)
	resync := time.NewTicker(l.deps.resync)
	defer resync.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for ctx.Err() == nil {
		gen := l.gen.Load()
		l.mu.Lock()
		refill := l.win.takeRefill()
		l.mu.Unlock()
		if refill {
			l.refill(ctx)
		}
		now := l.deps.now()
		saves, saveWait := l.dueSaves(now)
		for _, s := range saves {
			l.deps.save(l, s.it, s.o)
		}
		batch, wait := l.takeDue(now)
		if len(batch) == 1 && batch[0].probe {
			l.saveBreaker() // half-open, before the trial can end
		}
		for _, it := range batch {
			l.deps.send(l, it)
		}
		if len(batch) > 0 {
			continue // there may be more due; takeDue stops at the limit
		}
		if wait <= 0 || (saveWait > 0 && saveWait < wait) {
			wait = saveWait
		}
		if wait <= 0 {
			wait = time.Hour
		}
		l.reportWaiting(gen)
		timer.Reset(wait)
		select {
		case <-ctx.Done():
		case <-l.wake:
		case <-timer.C:
		case <-resync.C:
			l.resync(ctx)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// reportWaiting tells deps.waiting that the lane, having looked at its
// queue after notification gen, has nothing new to look at.
func (l *lane) reportWaiting(gen uint64) {
	if l.deps.waiting == nil {
		return
	}
	l.mu.Lock()
	busy := l.busy
	l.mu.Unlock()
	if l.gen.Load() == gen {
		l.deps.waiting(l.name, gen, busy)
	}
}

// reportUnsaved warns, when the lane stops, about outcomes still unsaved.
func (l *lane) reportUnsaved() {
	l.mu.Lock()
	n := len(l.unsaved)
	l.mu.Unlock()
	if n > 0 {
		l.log.Warn("stopping with delivery outcomes the store could not save; those deliveries will be sent again", "deliveries", n)
	}
}

// refill loads pending rows from the store into memory, oldest first, up
// to the window's max; it also picks up rows re-queued by another process
// (the CLI's replay) and the callback's disabled state.
func (l *lane) refill(ctx context.Context) {
	l.mu.Lock()
	l.win.beginRead()
	l.mu.Unlock()
	dis, derr := l.deps.queue.DisabledCallbacks(ctx)
	rows, err := l.deps.queue.Pending(ctx, l.name, l.win.max)
	l.mu.Lock()
	defer l.mu.Unlock()
	done, late := l.win.endRead()
	if derr == nil {
		l.applyDisabledLocked(dis)
	}
	if err != nil {
		if ctx.Err() == nil {
			l.log.Error("loading pending deliveries failed", "err", err)
		}
		l.win.readFailed(late)
		return
	}
	for _, d := range rows {
		l.win.sawReplay(d.ReplayedAt)
		if l.q.len() >= l.win.max {
			break
		}
		if _, ok := done[d.ID]; ok || l.q.has(d.ID) {
			continue
		}
		var ev event.Event
		if err := json.Unmarshal(d.Event, &ev); err != nil {
			l.log.Error("undecodable event in outbox; leaving it pending", "delivery", d.ID, "err", err)
			continue
		}
		l.q.add(&item{id: d.ID, root: d.RootID, seq: d.Seq, attempts: d.Attempts, nextAt: d.NextAt,
			created: d.CreatedAt, replayed: d.ReplayedAt, ev: &ev})
	}
	l.win.readDone(len(rows))
	for _, it := range late {
		if l.win.spilled || l.q.len() >= l.win.max {
			l.win.lateSpilled()
			break
		}
		l.q.add(it)
	}
	l.win.settled(l.q.len())
	l.notify()
}

func (l *lane) applyDisabledLocked(dis map[string]store.Disabled) {
	if x, ok := dis[l.name]; ok && !l.dis.on {
		l.dis = disablement{on: true, why: x.Reason, since: x.Since, url: x.URL}
	} else if !ok && l.dis.on {
		l.dis = disablement{}
		l.log.Info("callback re-enabled")
	}
}

// resync is the periodic re-read, which exists to pick up what another
// process (the CLI) changed. When the lane holds every pending row (not
// spilled), the store's count of them equals the lane's and no row was
// replayed after the latest replay the lane has read, nothing was added
// behind its back and the full read of every pending row with its event
// is skipped (docs/performance.md). Any disagreement, including a
// completion or accept committed but not yet applied to memory, falls back
// to the full refill, which merges safely.
func (l *lane) resync(ctx context.Context) {
	l.mu.Lock()
	spilled := l.win.spilled
	l.mu.Unlock()
	if !spilled {
		n, replayed, err := l.deps.queue.PendingSummary(ctx, l.name)
		l.mu.Lock()
		same := err == nil && l.win.matches(n, replayed)
		l.mu.Unlock()
		if same {
			dis, err := l.deps.queue.DisabledCallbacks(ctx)
			if err == nil {
				l.mu.Lock()
				l.applyDisabledLocked(dis)
				l.mu.Unlock()
			}
			return
		}
	}
	l.refill(ctx)
}

// status reports the lane for Status.
func (l *lane) status(now time.Time) CallbackStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.br.state()
	s := CallbackStatus{
		Name: l.name, Pending: l.win.pending, InFlight: l.inflight, Breaker: BreakerClosed,
		ConsecutiveFailures: b.failures, Disabled: l.dis.on,
	}
	if b.open {
		s.Breaker, s.NextProbe = BreakerOpen, b.nextProbe
	}
	if l.dis.on {
		s.DisabledReason, s.DisabledSince = l.dis.why, l.dis.since
	}
	if oldest := l.q.oldest(); !oldest.IsZero() {
		s.OldestPendingAge = now.Sub(oldest)
		s.OldestPendingSeconds = s.OldestPendingAge.Seconds()
	}
	return s
}
