package ha

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// Queue is the leader's side of the observations queue; *pgstore.Store
// implements it.
type Queue interface {
	ReadObservations(ctx context.Context, limit int, olderThan time.Duration) ([]pgstore.ObservationBatch, error)
	DeleteObservations(ctx context.Context, ids []int64) error
}

// SyncObserver derives events from observations and returns once they are
// accepted; *track.Tracker implements it.
type SyncObserver interface {
	ObserveSync(ctx context.Context, obs []event.Observation) error
}

// Barrier returns once every write submitted before it is durable;
// *notifier.Dispatcher's SetCheckpoint is one.
type Barrier interface {
	SetCheckpoint(ctx context.Context, key, value string) error
}

// FeedOptions configure a Feed.
type FeedOptions struct {
	Queue    Queue
	Observer SyncObserver
	Barrier  Barrier
	// Wake signals new rows (LISTEN); Poll is the fallback. Default 1s.
	Wake <-chan struct{}
	Poll time.Duration
	// Settle is how old a row must be before Run consumes it: replicas
	// append concurrently, and a row whose transaction started earlier
	// (a client's POST tapped on one replica) may commit after a later one
	// (the client's next GET, tapped on another); waiting lets the
	// earlier one become visible, so rows are consumed in the order their
	// appends began. Drain and Before take every visible row; Before
	// first waits until Settle after the poll's request time. Default
	// 100ms.
	Settle time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Feed is the leader's consumer of the observations queue.
type Feed struct {
	o  FeedOptions
	mu sync.Mutex // one round at a time (Run, Drain, Before)
	// seen is when Run first read each row it left (by our clock): a row
	// whose request time lies ahead of our clock (another replica's clock
	// runs fast) is consumed Settle after that instead.
	seen map[int64]time.Time
}

// NewFeed returns a Feed; call Run.
func NewFeed(o FeedOptions) *Feed {
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Settle <= 0 {
		o.Settle = 100 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Feed{o: o}
}

// Before returns an observer for the watcher that consumes the queue
// before each poll's observations: what a replica tapped a moment before
// (a POST's new execution) reaches the tracker ahead of the poll that
// found the execution's first task, as it does within one instance.
func (f *Feed) Before(next SyncObserver) SyncObserver { return before{f, next} }

type before struct {
	f    *Feed
	next SyncObserver
}

func (b before) ObserveSync(ctx context.Context, obs []event.Observation) error {
	// A response tapped on another replica just before this poll began
	// may still be on its way into the queue (forwarders append
	// asynchronously): give it Settle from the poll's request, as Run
	// gives rows Settle to show up in order. Otherwise a pause tapped
	// moments before a poll that already shows the resume is consumed
	// after it, as stale, and both events are lost.
	if at := requestedAt(obs); !at.IsZero() {
		if d := time.Until(at.Add(b.f.o.Settle)); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
	}
	// Only what was requested before the poll: a rerun tapped just after
	// the poll read a failure must follow the failure, as within one
	// instance, or the failure is taken for a stale read.
	if err := b.f.drain(ctx, requestedAt(obs)); err != nil && ctx.Err() == nil {
		b.f.o.Logger.Warn("consuming observations before a poll failed", "err", err)
	}
	return b.next.ObserveSync(ctx, obs)
}

// requestedAt is the earliest request time of obs (a poll's share one).
func requestedAt(obs []event.Observation) time.Time {
	var at time.Time
	for _, o := range obs {
		if at.IsZero() || (!o.RequestedAt.IsZero() && o.RequestedAt.Before(at)) {
			at = o.RequestedAt
		}
	}
	return at
}

// ConsumedKey is the checkpoint the Feed moves through the Barrier.
const ConsumedKey = "observations.consumed"

// Run consumes until ctx ends. Rows are deleted only after what they
// produced is durable (ObserveSync, then the Barrier), so a leader that
// dies mid-way leaves them for the next one, which derives the same events
// with the same ids. A row is consumed once it was appended Settle ago and
// its observations were requested Settle ago, in request order (see
// round); one that arrives later still is consumed next (the tracker
// orders observations by the entity's updated_at, then request time).
func (f *Feed) Run(ctx context.Context) error {
	poll := time.NewTicker(f.o.Poll)
	defer poll.Stop()
	for {
		n, left, err := f.round(ctx, f.o.Settle, f.settled(time.Now()))
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			f.o.Logger.Warn("consuming observations failed; retrying", "err", err)
		}
		if n > 0 && err == nil {
			continue
		}
		if left == 0 || err != nil {
			select {
			case <-ctx.Done():
				return nil
			case <-f.o.Wake:
			case <-poll.C:
			}
		}
		select { // let the new rows settle (FeedOptions.Settle)
		case <-ctx.Done():
			return nil
		case <-time.After(f.o.Settle):
		}
	}
}

// Drain consumes until the queue is empty once (or ctx ends). A new
// leader drains before its watcher's first poll: observations tapped
// during a database outage are older than what the engine shows now, and
// the tracker would drop them as stale once the watcher saw the newer
// state.
func (f *Feed) Drain(ctx context.Context) error { return f.drain(ctx, time.Time{}) }

// drain consumes until no visible row requested before cutoff is left
// (every visible row with a zero cutoff).
func (f *Feed) drain(ctx context.Context, cutoff time.Time) error {
	for {
		n, _, err := f.round(ctx, 0, func(r pgstore.ObservationBatch) bool {
			return cutoff.IsZero() || requestedAt(r.Obs).Before(cutoff)
		})
		if err != nil || n == 0 {
			return err
		}
	}
}

// settled is Run's readiness: a row requested Settle before now, or first
// read Settle before now (so a replica whose clock runs ahead delays its
// rows by Settle, not by its skew). Called with f.mu held (from round).
func (f *Feed) settled(now time.Time) func(pgstore.ObservationBatch) bool {
	cut := now.Add(-f.o.Settle)
	return func(r pgstore.ObservationBatch) bool {
		if requestedAt(r.Obs).Before(cut) {
			return true
		}
		first, ok := f.seen[r.ID]
		if !ok {
			if f.seen == nil {
				f.seen = map[int64]time.Time{}
			}
			f.seen[r.ID] = now
			return false
		}
		return !first.After(cut)
	}
}

// round consumes, of the rows appended at least olderThan ago and sorted
// by request time, the leading ones ready accepts, and returns how many it
// consumed and how many it left. Replicas' forwarders append
// asynchronously, so a response tapped on one replica can reach the queue
// after one tapped later on another (seen: a client's POST after its rerun
// of the failed task): ids give the order of appends, the request times
// the order of what the engine said, which is what the tracker needs. Run
// waits Settle (see settled) so that a late append takes its place.
func (f *Feed) round(ctx context.Context, olderThan time.Duration, ready func(pgstore.ObservationBatch) bool) (int, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rows, err := f.o.Queue.ReadObservations(ctx, 256, olderThan)
	if err != nil || len(rows) == 0 {
		return 0, 0, err
	}
	slices.SortStableFunc(rows, func(a, b pgstore.ObservationBatch) int {
		return requestedAt(a.Obs).Compare(requestedAt(b.Obs))
	})
	n := 0
	for n < len(rows) && ready(rows[n]) {
		n++
	}
	for _, r := range rows[n+min(1, len(rows)-n):] {
		ready(r) // start the clock of every row left (see settled)
	}
	if n == 0 {
		return 0, len(rows), nil
	}
	ids := make([]int64, n)
	var last int64
	for i, r := range rows[:n] {
		ids[i], last = r.ID, max(last, r.ID)
		delete(f.seen, r.ID)
	}
	for _, obs := range split(rows[:n]) {
		if err := f.o.Observer.ObserveSync(ctx, obs); err != nil {
			return 0, 0, err
		}
	}
	if err := f.o.Barrier.SetCheckpoint(ctx, ConsumedKey, strconv.FormatInt(last, 10)); err != nil {
		return 0, 0, err
	}
	return n, len(rows) - n, f.o.Queue.DeleteObservations(ctx, ids)
}

// split cuts rows into runs in which no entity appears twice: the tracker
// keeps only the newest observation of an entity within one batch, and a
// pause and a resume tapped on two replicas (or during an outage) must
// both count.
func split(rows []pgstore.ObservationBatch) [][]event.Observation {
	var out [][]event.Observation
	var cur []event.Observation
	seen := map[string]bool{}
	for _, r := range rows {
		clash := false
		for _, o := range r.Obs {
			if seen[entityID(o)] {
				clash = true
				break
			}
		}
		if clash {
			out = append(out, cur)
			cur, seen = nil, map[string]bool{}
		}
		for _, o := range r.Obs {
			seen[entityID(o)] = true
		}
		cur = append(cur, r.Obs...)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

func entityID(o event.Observation) string {
	switch {
	case o.Execution != nil:
		return o.Execution.ID
	case o.Task != nil:
		return o.Task.ID
	}
	return ""
}
