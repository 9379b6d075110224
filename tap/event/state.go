package event

// EntityState is what the tracker remembers about one execution or task. It
// is persisted together with the events it produced, so that a restart
// neither repeats nor misses events. It lives here, in the shared
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
	// RetryCount is a task's retry counter from runtime_context, used to
	// detect retry cycles that happened between two observations.
	RetryCount int
	// LastSeq is the last sequence number issued for events of this root;
	// meaningful only on a root execution's row.
	LastSeq uint64
}
