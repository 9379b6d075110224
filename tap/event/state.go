package event

import "time"

// EntityState is what the tracker remembers about one execution or task. It
// is persisted together with the events it produced, so that a restart (or
// a new leader among replicas) derives exactly what the previous tracker
// would have: neither repeats nor misses events. Every field that decides
// whether a later observation is newer, or which transitions lie between
// two observations, must therefore be here. It lives here, in the shared
// vocabulary, because the tracker produces it and the notifier's store
// persists it, and neither may import the other.
type EntityState struct {
	Kind Kind
	ID   string
	// RootID is the root execution (the entity itself for a top-level
	// execution).
	RootID string
	// State and UpdatedAt are the last accepted observation.
	State     string
	UpdatedAt string
	// RequestedAt is when the request that revealed State was sent
	// (Observation.RequestedAt). Mistral's updated_at has whole seconds,
	// so another sighting in the same second counts as newer only if it
	// was requested later; without it a stale read in the same second as
	// the stored state would yield a spurious event after a restart. The
	// stores keep it with nanosecond precision; zero when unknown (rows
	// written before it was stored).
	RequestedAt time.Time
	// RetryCount is a task's retry counter from runtime_context, used to
	// detect retry cycles that happened between two observations.
	RetryCount int
	// Policies says which of a task's wait policies have fired (see
	// PolicyFlags).
	Policies PolicyFlags
	// StartedAt is a task's started_at (Mistral stamps it anew when a task
	// is rerun, which tells a rerun that failed again from the same
	// failure seen twice); "" for executions and tasks not started.
	StartedAt string
	// LastSeq is the last sequence number issued for events of this root;
	// meaningful only on a root execution's row.
	LastSeq uint64
}

// PolicyFlags are a task's wait-policy facts the tracker remembers, stored
// as one integer.
type PolicyFlags uint8

const (
	// WaitBeforeFired: Mistral's wait-before delay has happened.
	WaitBeforeFired PolicyFlags = 1 << iota
	// WaitAfterFired: Mistral's wait-after delay has started.
	WaitAfterFired
	// WaitAfterPending: the task sits in a wait-after delay whose first
	// completion was not seen (its outcome shows when the delay ends).
	WaitAfterPending
)
