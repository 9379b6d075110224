package track

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// HorizonCheckpoint is the checkpoint key under which the tracker's horizon
// is kept across restarts.
const HorizonCheckpoint = "tracker.horizon"

// HousekeepingInterval is how often Housekeep persists the horizon and
// drops forgotten states when the caller passes 0.
const HousekeepingInterval = time.Minute

// StateStore is where Housekeep persists the horizon and forgets the
// states of entities the tracker no longer remembers.
type StateStore interface {
	SetCheckpoint(ctx context.Context, key, value string) error
	ForgetStates(ctx context.Context, ids []string) error
}

// Housekeep persists the tracker's horizon and drops forgotten entity
// states from st every interval until ctx ends, so the store does not grow
// without bound and a restart after downtime replays what happened
// meanwhile rather than treating it as history. A failed round is logged
// and retried at the next tick; it returns nil when ctx ends.
func (t *Tracker) Housekeep(ctx context.Context, st StateStore, interval time.Duration, log *slog.Logger) error {
	if interval <= 0 {
		interval = HousekeepingInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	last := t.Horizon()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		h := t.Horizon()
		if !h.After(last) {
			continue
		}
		if err := t.persistHorizon(ctx, st, h); err != nil {
			log.Warn("tracker housekeeping failed", "err", err)
			continue
		}
		last = h
	}
}

func (t *Tracker) persistHorizon(ctx context.Context, st StateStore, h time.Time) error {
	if err := st.SetCheckpoint(ctx, HorizonCheckpoint, h.Format(time.RFC3339)); err != nil {
		return fmt.Errorf("saving the horizon: %w", err)
	}
	if err := st.ForgetStates(ctx, t.TakeForgotten()); err != nil {
		return fmt.Errorf("pruning forgotten states: %w", err)
	}
	return nil
}

// LoadHorizon reads the horizon persisted under HorizonCheckpoint; the zero
// time means none was saved yet (first start).
func LoadHorizon(ctx context.Context, get func(ctx context.Context, key string) (string, error)) (time.Time, error) {
	v, err := get(ctx, HorizonCheckpoint)
	if err != nil {
		return time.Time{}, fmt.Errorf("reading the tracker horizon: %w", err)
	}
	if v == "" {
		return time.Time{}, nil
	}
	h, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("tracker horizon %q in the store is malformed: %w", v, err)
	}
	return h, nil
}
