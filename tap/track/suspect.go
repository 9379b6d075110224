package track

import (
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// defaultMaxFutureSkew is Options.MaxFutureSkew's default: far beyond
// ordinary clock drift between hosts, far below what pins an entity for
// long enough to matter.
const defaultMaxFutureSkew = 5 * time.Minute

// maxUnknownStatesLogged bounds the distinct unknown state values logged
// one by one, so that an engine (or a proxy in between) returning garbage
// cannot grow the tracker's memory or flood the log.
const maxUnknownStatesLogged = 32

// notes remembers which suspect inputs were already logged.
type notes struct {
	futureLogged bool
	unknown      map[string]bool
}

// knownState reports whether s is a state of Mistral's state machine
// (mistral/workflow/states.py), spelled as the API spells it.
func knownState(s string) bool {
	switch s {
	case event.StateIdle, event.StateWaiting, event.StateRunning, event.StateDelayed, event.StatePaused,
		event.StateSuccess, event.StateCancelled, event.StateError, event.StateSkipped:
		return true
	}
	return false
}

// unknownState counts an observation ignored because of its state, and
// logs each distinct value once: nothing about such an entity can be
// derived (not even its launch), so no event is better than a made-up one.
func (t *Tracker) unknownState(id, state string) {
	t.statsMu.Lock()
	t.stats.UnknownStates++
	t.statsMu.Unlock()
	if t.notes.unknown == nil {
		t.notes.unknown = map[string]bool{}
	}
	switch n := len(t.notes.unknown); {
	case t.notes.unknown[state] || n > maxUnknownStatesLogged:
		return
	case n == maxUnknownStatesLogged:
		t.log.Warn("more unknown states; no longer logging each (see mistral_tap_tracker_observations_rejected_total)")
	default:
		t.log.Warn("observation in a state Mistral does not have; ignored, no event derived (logged once per state)",
			"state", state, "entity", id)
	}
	t.notes.unknown[state] = true
}

// trustedTS returns updated when it is at most limit (Unix seconds), else
// fallback: the entity's last trusted timestamp, or the horizon for an
// entity seen for the first time. Both are at or before any real update
// still to come, so that update is taken as newer and its events are not
// lost. The first distrusted timestamp is logged; all are counted.
func (t *Tracker) trustedTS(id string, updated, fallback, limit int64) int64 {
	if updated <= limit {
		return updated
	}
	t.statsMu.Lock()
	t.stats.FutureTimestamps++
	t.statsMu.Unlock()
	if !t.notes.futureLogged {
		t.notes.futureLogged = true
		t.log.Warn("updated_at far ahead of the local clock (clock skew or a bad engine row); state taken, timestamp not trusted for ordering (logged once; see mistral_tap_tracker_observations_rejected_total)",
			"entity", id, "updated_at", formatTS(updated), "limit", formatTS(limit), "max_future_skew", t.maxSkew)
	}
	return fallback
}
