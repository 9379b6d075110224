package notifier

import (
	"container/heap"
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// item is a pending delivery held in memory by its lane.
type item struct {
	id       string
	root     string
	seq      uint64
	attempts int
	nextAt   time.Time
	created  time.Time
	replayed time.Time
	ev       *event.Event

	inflight bool
	probe    bool
	hidx     int // index in the lane's heap, -1 when not in it
}

// itemHeap orders eligible items by next attempt time.
type itemHeap []*item

func (h itemHeap) Len() int { return len(h) }
func (h itemHeap) Less(i, j int) bool {
	if h[i].nextAt.Equal(h[j].nextAt) {
		return h[i].seq < h[j].seq
	}
	return h[i].nextAt.Before(h[j].nextAt)
}
func (h itemHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *itemHeap) Push(x any) {
	it := x.(*item)
	it.hidx = len(*h)
	*h = append(*h, it)
}
func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	it.hidx = -1
	return it
}

// BreakerState is a callback's circuit breaker state.
type BreakerState string

// Breaker states.
const (
	BreakerClosed BreakerState = "closed"
	BreakerOpen   BreakerState = "open"
)

// lane is one callback's scheduler: its in-memory queue (a bounded window on
// the store's pending rows), its concurrency limit, ordering and breaker.
// A lane never waits on another lane, so a slow receiver holds up only
// its own callback.
type lane struct {
	name string
	d    *Dispatcher
	log  *slog.Logger

	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}

	mu          sync.Mutex
	items       map[string]*item
	roots       map[string][]*item // per root, by sequence
	heap        itemHeap           // items that may be sent (heads only when ordered)
	ordered     bool
	concurrency int
	inflight    int // sends in progress (bounded by concurrency)
	pending     int // pending rows in the store (exact when !spilled)

	// spilled: the store may hold pending rows that are not in memory.
	spilled    bool
	needRefill bool
	// While a refill reads the store, completions are recorded here so the
	// merge does not resurrect a row completed after the read began, and
	// accepted items wait in late: the read may or may not include them.
	tracking     bool
	recentlyDone map[string]struct{}
	late         []*item

	// maxReplayed is the latest replayed_at of any row a refill read: a
	// later one in the store is a replay this lane has not seen.
	maxReplayed time.Time

	disabled      bool
	disabledWhy   string
	disabledSince time.Time
	disabledURL   string
	removed       bool

	failures     int // consecutive retryable failures
	open         bool
	probing      bool
	probeAt      time.Time
	probeBackoff time.Duration
}

// newLane returns a lane for r; pending is the store's count of its pending
// rows.
func newLane(d *Dispatcher, r Route, pending int) *lane {
	l := &lane{
		name: r.Callback.Name, d: d, log: d.log.With("callback", r.Callback.Name),
		wake: make(chan struct{}, 1), done: make(chan struct{}),
		items: map[string]*item{}, roots: map[string][]*item{},
		// Spilled until the first refill has read the store: an event
		// accepted meanwhile must not overtake older pending ones of its
		// root.
		spilled: true, pending: pending,
	}
	l.configure(r)
	return l
}

// configure applies a (re)loaded route; the caller holds mu or owns l.
func (l *lane) configure(r Route) {
	l.concurrency = r.Callback.Concurrency
	if l.concurrency <= 0 {
		l.concurrency = DefaultConcurrency
	}
	ordered := r.Callback.Ordering != "none"
	if ordered != l.ordered {
		l.ordered = ordered
		l.reindex()
	}
}

func (l *lane) notify() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// reindex rebuilds the heap after the ordering mode changed.
func (l *lane) reindex() {
	for _, it := range l.heap {
		it.hidx = -1
	}
	l.heap = l.heap[:0]
	for _, list := range l.roots {
		for i, it := range list {
			if i > 0 && l.ordered {
				break
			}
			if !it.inflight {
				heap.Push(&l.heap, it)
			}
		}
	}
}

// addLocked adds it unless its id is already held.
func (l *lane) addLocked(it *item) {
	if _, ok := l.items[it.id]; ok {
		return
	}
	it.hidx = -1
	l.items[it.id] = it
	list := append(l.roots[it.root], it)
	i := len(list) - 1
	for i > 0 && list[i-1].seq > it.seq {
		list[i] = list[i-1]
		i--
	}
	list[i] = it
	l.roots[it.root] = list
	if !l.ordered {
		heap.Push(&l.heap, it)
		return
	}
	if i != 0 {
		return
	}
	if len(list) > 1 && list[1].hidx >= 0 {
		heap.Remove(&l.heap, list[1].hidx) // it is no longer the head
	}
	heap.Push(&l.heap, it)
}

// removeLocked drops it (delivered or dead) and promotes its root's next
// delivery.
func (l *lane) removeLocked(it *item) {
	if l.items[it.id] != it {
		return
	}
	delete(l.items, it.id)
	if it.hidx >= 0 {
		heap.Remove(&l.heap, it.hidx)
	}
	list := l.roots[it.root]
	for i, x := range list {
		if x == it {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(l.roots, it.root)
		return
	}
	l.roots[it.root] = list
	if l.ordered && !list[0].inflight && list[0].hidx < 0 {
		heap.Push(&l.heap, list[0])
	}
}

// accept takes freshly committed items, unless the lane is spilled: then
// older rows wait in the store and the new ones must queue behind them.
func (l *lane) accept(items []*item) {
	l.mu.Lock()
	max := l.d.o.MaxLoaded
	for _, it := range items {
		l.pending++
		if l.tracking {
			// Merged after the read if it turns out to be complete. This
			// used to mark the lane spilled, so that under steady load
			// (an accept during every read) a lane that was not behind
			// re-read the store back to back and delivered new events only
			// through those reads.
			l.late = append(l.late, it)
			continue
		}
		if l.spilled || len(l.items) >= max {
			l.spilled = true
			continue
		}
		l.addLocked(it)
	}
	l.mu.Unlock()
	l.notify()
}

// takeDue pops the items to send now and returns how long to wait before
// looking again (0: no timer needed).
func (l *lane) takeDue(now time.Time) ([]*item, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.disabled || l.removed || len(l.heap) == 0 {
		return nil, 0
	}
	if l.open {
		if l.probing || l.inflight >= l.concurrency {
			return nil, 0
		}
		if now.Before(l.probeAt) {
			return nil, l.probeAt.Sub(now)
		}
		it := heap.Pop(&l.heap).(*item)
		it.inflight, it.probe, l.probing = true, true, true
		l.inflight++
		return []*item{it}, 0
	}
	var out []*item
	for l.inflight < l.concurrency && len(l.heap) > 0 && !l.heap[0].nextAt.After(now) {
		it := heap.Pop(&l.heap).(*item)
		it.inflight = true
		l.inflight++
		out = append(out, it)
	}
	if l.inflight < l.concurrency && len(l.heap) > 0 {
		return out, l.heap[0].nextAt.Sub(now)
	}
	return out, 0
}

// observe updates the breaker and the disabled flag from a send result,
// before the result is committed, so that no further sends start meanwhile.
func (l *lane) observe(it *item, res send.Result, url string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if it.probe {
		l.probing = false
		it.probe = false
	}
	switch res.Outcome {
	case send.Retryable:
		l.failures++
		th := l.d.routingDelivery().BreakerThreshold
		switch {
		case l.open:
			l.probeBackoff = min(2*l.probeBackoff, l.probeMax())
			l.probeAt = now.Add(l.probeBackoff)
		case th > 0 && l.failures >= th:
			l.open = true
			l.probeBackoff = min(l.d.o.BreakerProbeMin, l.probeMax())
			l.probeAt = now.Add(l.probeBackoff)
			l.log.Warn("circuit opened", "consecutive_failures", l.failures, "next_probe_in", l.probeBackoff)
		}
	case send.Delivered, send.Permanent:
		// The receiver answered: it is up, whatever it thought of the body.
		l.failures = 0
		if l.open {
			l.open = false
			l.log.Info("circuit closed")
		}
	case send.Gone:
		if !l.disabled {
			l.disabled, l.disabledWhy, l.disabledSince, l.disabledURL = true, "endpoint answered 410 Gone", now, url
			l.log.Warn("callback disabled: endpoint answered 410 Gone; replay the callback or change its URL to re-enable")
		}
	}
}

func (l *lane) probeMax() time.Duration {
	if m := l.d.routingDelivery().BreakerProbeMax; m > 0 {
		return m
	}
	return DefaultBreakerProbeMax
}

// sent frees the concurrency slot of a send whose outcome is queued for
// commit (see Dispatcher.attempt).
func (l *lane) sent() {
	l.mu.Lock()
	l.inflight--
	l.mu.Unlock()
	l.notify()
}

// completed applies a committed (or failed) update to memory.
func (l *lane) completed(it *item, u store.Update, err error) {
	l.mu.Lock()
	it.inflight = false
	switch {
	case err != nil:
		// Not recorded: the row is still pending as before; try again soon.
		l.log.Error("recording delivery outcome failed", "delivery", it.id, "err", err)
		it.nextAt = time.Now().Add(time.Second)
		l.requeueLocked(it)
	case u.State == store.Pending:
		it.attempts, it.nextAt = u.Attempts, u.NextAt
		l.requeueLocked(it)
	default:
		l.pending--
		l.removeLocked(it)
		if l.tracking {
			l.recentlyDone[it.id] = struct{}{}
		}
		// A refill reads up to MaxLoaded rows, those still in memory
		// included: waiting until a quarter is left (rather than half)
		// makes it read 1.33 rows per row it adds instead of 2, and a
		// quarter still covers the read (measured ~50 ms for 10,000 rows
		// against ~0.4 s to deliver 2,500 at 6,000/s).
		if l.spilled && len(l.items) <= l.d.o.MaxLoaded/4 {
			l.needRefill = true
		}
	}
	l.mu.Unlock()
	l.notify()
}

func (l *lane) requeueLocked(it *item) {
	if l.items[it.id] != it || it.hidx >= 0 {
		return
	}
	if l.ordered && l.roots[it.root][0] != it {
		return
	}
	heap.Push(&l.heap, it)
}

// run schedules the lane's sends until ctx is done.
func (l *lane) run(ctx context.Context) {
	defer close(l.done)
	l.refill(ctx)
	resync := time.NewTicker(l.d.o.Resync)
	defer resync.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if ctx.Err() != nil {
			return
		}
		l.mu.Lock()
		refill := l.needRefill
		l.needRefill = false
		l.mu.Unlock()
		if refill {
			l.refill(ctx)
		}
		batch, wait := l.takeDue(l.d.now())
		for _, it := range batch {
			l.d.sends.Add(1)
			go l.d.attempt(l, it)
		}
		if len(batch) > 0 {
			continue // there may be more due; takeDue stops at the limit
		}
		if wait <= 0 {
			wait = time.Hour
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
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

// refill loads pending rows from the store into memory, oldest first, up
// to MaxLoaded; it also picks up rows re-queued by another process (the
// CLI's replay) and the callback's disabled state.
func (l *lane) refill(ctx context.Context) {
	l.mu.Lock()
	l.tracking, l.recentlyDone, l.late = true, map[string]struct{}{}, nil
	l.mu.Unlock()
	dis, derr := l.d.st.DisabledCallbacks(ctx)
	rows, err := l.d.st.Pending(ctx, l.name, l.d.o.MaxLoaded)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tracking = false
	done, late := l.recentlyDone, l.late
	l.recentlyDone, l.late = nil, nil
	if derr == nil {
		l.applyDisabledLocked(dis)
	}
	if err != nil {
		if ctx.Err() == nil {
			l.log.Error("loading pending deliveries failed", "err", err)
		}
		if len(late) > 0 {
			l.spilled = true // they are in the store only
		}
		return
	}
	for _, d := range rows {
		if d.ReplayedAt.After(l.maxReplayed) {
			l.maxReplayed = d.ReplayedAt
		}
		if len(l.items) >= l.d.o.MaxLoaded {
			break
		}
		if _, ok := l.items[d.ID]; ok {
			continue
		}
		if _, ok := done[d.ID]; ok {
			continue
		}
		var ev event.Event
		if err := json.Unmarshal(d.Event, &ev); err != nil {
			l.log.Error("undecodable event in outbox; leaving it pending", "delivery", d.ID, "err", err)
			continue
		}
		l.addLocked(&item{id: d.ID, root: d.RootID, seq: d.Seq, attempts: d.Attempts, nextAt: d.NextAt,
			created: d.CreatedAt, replayed: d.ReplayedAt, ev: &ev})
	}
	// A read of fewer than MaxLoaded rows saw every row committed before
	// it: an item accepted during the read is either among them (addLocked
	// keeps the first) or newer than all of them, so it can join memory
	// without overtaking anything of its root. Otherwise older rows wait
	// in the store and the late items with them.
	l.spilled = len(rows) >= l.d.o.MaxLoaded
	for _, it := range late {
		if l.spilled || len(l.items) >= l.d.o.MaxLoaded {
			l.spilled, l.needRefill = true, true
			break
		}
		l.addLocked(it)
	}
	if !l.spilled {
		l.pending = len(l.items)
	}
	l.notify()
}

func (l *lane) applyDisabledLocked(dis map[string]store.Disabled) {
	if x, ok := dis[l.name]; ok && !l.disabled {
		l.disabled, l.disabledWhy, l.disabledSince, l.disabledURL = true, x.Reason, x.Since, x.URL
	} else if !ok && l.disabled {
		l.disabled = false
		l.log.Info("callback re-enabled")
	}
}

// resync is the periodic re-read, which exists to pick up what another
// process (the CLI) changed. When the lane holds every pending row (not
// spilled), the store's count of them equals the lane's and no row was
// replayed after the latest replay the lane has read, nothing was added
// behind its back: the full read of every pending row with its event (~5 %
// of mistral-tap's CPU under the POST load) is skipped. Any disagreement,
// including a completion or accept committed but not yet applied to memory,
// falls back to the full refill, which merges safely.
func (l *lane) resync(ctx context.Context) {
	l.mu.Lock()
	spilled := l.spilled
	l.mu.Unlock()
	if !spilled {
		n, replayed, err := l.d.st.PendingSummary(ctx, l.name)
		l.mu.Lock()
		same := err == nil && !l.spilled && n == l.pending && !replayed.After(l.maxReplayed)
		l.mu.Unlock()
		if same {
			dis, err := l.d.st.DisabledCallbacks(ctx)
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
	s := CallbackStatus{
		Name: l.name, Pending: l.pending, InFlight: l.inflight, Breaker: BreakerClosed,
		ConsecutiveFailures: l.failures, Disabled: l.disabled,
	}
	if l.open {
		s.Breaker = BreakerOpen
		s.NextProbe = l.probeAt
	}
	if l.disabled {
		s.DisabledReason, s.DisabledSince = l.disabledWhy, l.disabledSince
	}
	var oldest time.Time
	for _, it := range l.items {
		if oldest.IsZero() || it.created.Before(oldest) {
			oldest = it.created
		}
	}
	if !oldest.IsZero() {
		s.OldestPendingAge = now.Sub(oldest)
		s.OldestPendingSeconds = s.OldestPendingAge.Seconds()
	}
	return s
}
