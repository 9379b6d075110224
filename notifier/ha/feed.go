package ha

import (
	"context"
	"log/slog"
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
	// appends began. Drain and Before take every visible row. Default
	// 100ms.
	Settle time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Feed is the leader's consumer of the observations queue.
type Feed struct {
	o  FeedOptions
	mu sync.Mutex // one round at a time (Run, Drain, Before)
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
	if err := b.f.Drain(ctx); err != nil && ctx.Err() == nil {
		b.f.o.Logger.Warn("consuming observations before a poll failed", "err", err)
	}
	return b.next.ObserveSync(ctx, obs)
}

// ConsumedKey is the checkpoint the Feed moves through the Barrier.
const ConsumedKey = "observations.consumed"

// Run consumes until ctx ends. Rows are deleted only after what they
// produced is durable (ObserveSync, then the Barrier), so a leader that
// dies mid-way leaves them for the next one, which derives the same events
// with the same ids. Rows are read in id order; a row that commits late
// with a lower id is simply read on the next round (the tracker orders
// observations by the entity's updated_at, not by arrival).
func (f *Feed) Run(ctx context.Context) error {
	poll := time.NewTicker(f.o.Poll)
	defer poll.Stop()
	for {
		n, err := f.round(ctx, f.o.Settle)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			f.o.Logger.Warn("consuming observations failed; retrying", "err", err)
		}
		if n > 0 && err == nil {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-f.o.Wake:
		case <-poll.C:
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
func (f *Feed) Drain(ctx context.Context) error {
	for {
		n, err := f.round(ctx, 0)
		if err != nil || n == 0 {
			return err
		}
	}
}

func (f *Feed) round(ctx context.Context, olderThan time.Duration) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rows, err := f.o.Queue.ReadObservations(ctx, 256, olderThan)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	ids := make([]int64, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	for _, obs := range split(rows) {
		if err := f.o.Observer.ObserveSync(ctx, obs); err != nil {
			return 0, err
		}
	}
	if err := f.o.Barrier.SetCheckpoint(ctx, ConsumedKey, strconv.FormatInt(ids[len(ids)-1], 10)); err != nil {
		return 0, err
	}
	return len(rows), f.o.Queue.DeleteObservations(ctx, ids)
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
