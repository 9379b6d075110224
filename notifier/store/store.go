// Package store is mistral-tap's embedded durable store: the delivery outbox,
// the tracker's entity states, watcher checkpoints, callbacks disabled by
// a 410, circuit breakers, and for runtime listeners (issue 13) the
// listeners themselves (their spec sealed by the caller, never in clear) and
// the history of derived events their backfill reads (Write.Events, History,
// OpenRoots, PruneHistory). It uses SQLite (modernc.org/sqlite, pure Go) in
// WAL mode with synchronous=FULL, so a committed write survives kill -9 and
// power loss.
//
// The SQL is deliberately plain (no SQLite-only syntax beyond pragmas and
// `?` placeholders) so that a PostgreSQL backend can share it.
//
// Delivered rows are kept (state "delivered") for a retention period so that
// listings can show them and a re-accepted event is not delivered twice; Prune
// deletes them afterwards. Dead rows are kept until replayed.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// FileName is the database's file name under the state directory.
const FileName = "mistral-tap.db"

// ErrLocked is returned by Open with Options.Exclusive when another process
// already dispatches from the same database.
var ErrLocked = errors.New("store: database is locked by another dispatcher")

// State is a delivery's state.
type State string

// Delivery states.
const (
	Pending   State = "pending"
	Dead      State = "dead"
	Delivered State = "delivered"
)

// Valid reports whether s is a known state.
func (s State) Valid() bool { return s == Pending || s == Dead || s == Delivered }

// Delivery is one (event, callback) row of the outbox.
type Delivery struct {
	// ID is EventID + "/" + Callback: deterministic, so re-accepting an event
	// is a no-op.
	ID       string `json:"id"`
	EventID  string `json:"event_id"`
	Callback string `json:"callback"`
	RootID   string `json:"root_execution_id"`
	Seq      uint64 `json:"sequence"`
	// EventType is the event's type, denormalised for listings.
	EventType string    `json:"event_type"`
	State     State     `json:"state"`
	Attempts  int       `json:"attempts"`
	NextAt    time.Time `json:"next_attempt_at"`
	// CreatedAt is the event's time; max_age counts from it, or from
	// ReplayedAt when later.
	CreatedAt  time.Time `json:"created_at"`
	ReplayedAt time.Time `json:"replayed_at,omitzero"`
	UpdatedAt  time.Time `json:"updated_at"`
	LastError  string    `json:"last_error,omitempty"`
	LastStatus int       `json:"last_status,omitempty"`
	// Event is the JSON of the event.Event; empty in listings unless asked.
	Event json.RawMessage `json:"event,omitempty"`
}

// NewDelivery builds the pending delivery of ev to callback, due now.
func NewDelivery(ev *event.Event, callback string, now time.Time) (Delivery, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return Delivery{}, fmt.Errorf("store: encoding event %s: %w", ev.ID, err)
	}
	return NewDeliveryJSON(ev, body, callback, now), nil
}

// NewDeliveryJSON is NewDelivery with ev's JSON already encoded (body), so
// that one encoding serves the history and every callback.
func NewDeliveryJSON(ev *event.Event, body []byte, callback string, now time.Time) Delivery {
	created := ev.Time
	if created.IsZero() {
		created = now
	}
	return Delivery{
		ID: DeliveryID(ev.ID, callback), EventID: ev.ID, Callback: callback,
		RootID: ev.RootExecutionID, Seq: ev.Sequence, EventType: string(ev.Type),
		State: Pending, NextAt: now, CreatedAt: created, UpdatedAt: now, Event: body,
	}
}

// DeliveryID is the id of the delivery of event eventID to callback.
func DeliveryID(eventID, callback string) string { return eventID + "/" + callback }

// Update records the outcome of an attempt.
type Update struct {
	ID         string
	State      State
	Attempts   int
	NextAt     time.Time
	LastError  string
	LastStatus int
	UpdatedAt  time.Time
}

// Disabled is a callback disabled because its endpoint answered 410 Gone.
type Disabled struct {
	Name   string    `json:"name"`
	Reason string    `json:"reason"`
	URL    string    `json:"-"` // the URL that answered 410; secrets may be in it
	Since  time.Time `json:"since"`
}

// Write is one group of changes; Commit applies many in one transaction.
type Write struct {
	// Insert adds deliveries; a delivery whose id exists is left alone.
	Insert []Delivery
	// States are upserted in the same transaction as Insert.
	States []event.EntityState
	// Updates record attempt outcomes of pending rows (others are left
	// alone).
	Updates []Update
	// Disable marks callbacks disabled.
	Disable []Disabled
	// Checkpoints are saved positions (the watcher's), upserted by key.
	Checkpoints []Checkpoint
	// Breakers are circuit breaker states, upserted by callback.
	Breakers []Breaker
	// Inserted, if not nil, must have len(Insert); Commit sets Inserted[i]
	// to whether Insert[i] was new (false: the id already existed).
	Inserted []bool
	// Events are kept as history (see Recorded), in the same transaction
	// as the states that produced them; an event whose id exists is left
	// alone.
	Events []Recorded
}

// Recorded is one derived event kept as history, so that a listener
// registered after an event was derived still receives it (backfill). It is
// written in the same transaction as the states that produced it, so the
// history never lacks an event whose state was saved.
type Recorded struct {
	ID, RootID, EntityID, Type string
	Seq                        uint64
	CreatedAt                  time.Time
	// Event is the event.Event's JSON.
	Event json.RawMessage
}

// Checkpoint is a saved position: a key and its value.
type Checkpoint struct{ Key, Value string }

// Breaker is a callback's circuit breaker as its dispatcher last recorded
// it, so that the next dispatcher to send the callback (after a restart,
// or a new leader on a shared store) carries on from it instead of
// starting closed and sending a dead receiver a full round of requests.
type Breaker struct {
	Callback string
	// URL is the callback's URL the state is about, redacted (secrets
	// never reach the database); a dispatcher whose callback has another
	// URL starts closed.
	URL string
	// State is "closed", "open" or "half-open" (an open circuit whose
	// trial send is under way).
	State string
	// Failures counts consecutive retryable failures.
	Failures int
	// OpenedAt is when the circuit last opened; zero while closed.
	OpenedAt time.Time
	// NextProbe is when an open circuit may send its next trial.
	NextProbe time.Time
	// Backoff is the current wait between trials of an open circuit (it
	// doubles after each failed one).
	Backoff   time.Duration
	UpdatedAt time.Time
}

// Options tunes Open.
type Options struct {
	// Exclusive takes a lock file next to the database so that only one
	// process dispatches from it; a second Exclusive Open fails with
	// ErrLocked. Readers (the CLI) open without it, concurrently.
	Exclusive bool
	// BusyTimeout is how long a statement waits for another connection's
	// lock. Default 5s.
	BusyTimeout time.Duration
	// CheckInterval is how often Run checks that the database file is
	// still in place. Default DefaultCheckInterval (5s).
	CheckInterval time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Store is an open database. Its methods are safe for concurrent use.
type Store struct {
	w, r *sql.DB
	lock *os.File
	log  *slog.Logger
	path string
	// Integrity (integrity.go): the files opened, how often Run checks
	// them, and the permanent failure once they are lost or corrupt.
	dbID, lockID fileID
	checkEvery   time.Duration
	healthMu     sync.Mutex
	failure      error
	// Commit's statements, prepared once on the writer: re-preparing them
	// in every transaction cost a parse per statement per commit, which
	// dominates small commits (an idle system commits one delivery at a
	// time).
	ins, ups, upd, dis, hist *sql.Stmt
}

// Commit's statements.
const (
	insertDelivery = `INSERT INTO deliveries (id, event_id, callback, root_id, seq, event_type, state,
		attempts, next_attempt_at, created_at, replayed_at, updated_at, last_error, last_status, event)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`
	upsertState = `INSERT INTO entity_states (id, kind, root_id, state, updated_at, retry_count, last_seq,
		requested_ns, policies, started_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET kind = excluded.kind,
		root_id = excluded.root_id, state = excluded.state, updated_at = excluded.updated_at,
		retry_count = excluded.retry_count, last_seq = excluded.last_seq, requested_ns = excluded.requested_ns,
		policies = excluded.policies, started_at = excluded.started_at`
	// An attempt's outcome applies to a row that is still pending: one
	// committed after its callback was removed must not revive the dead
	// letter Abandon made of it.
	updateDelivery = `UPDATE deliveries SET state = ?, attempts = ?, next_attempt_at = ?,
		last_error = ?, last_status = ?, updated_at = ? WHERE id = ? AND state = 'pending'`
	upsertCheckpoint = `INSERT INTO checkpoints (key, value) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`
	insertHistory = `INSERT INTO history (id, root_id, entity_id, type, seq, created_at, event)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`
	disableCallback = `INSERT INTO disabled_callbacks (name, reason, url, since) VALUES (?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET reason = excluded.reason, url = excluded.url, since = excluded.since`
	upsertBreaker = `INSERT INTO breakers (callback, url, state, failures, opened_at, next_probe, backoff_ms, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (callback) DO UPDATE SET url = excluded.url, state = excluded.state,
		failures = excluded.failures, opened_at = excluded.opened_at, next_probe = excluded.next_probe,
		backoff_ms = excluded.backoff_ms, updated_at = excluded.updated_at`
)

// Open opens the database at path, creating and migrating it if needed. If
// path is a directory, FileName is used inside it. Every file it creates or
// opens there gets mode 0600, whatever the umask.
//
// A new database is created only in a state directory never used before:
// a missing database whose directory shows previous use (the lock file's
// marker, a WAL, a loss recorded while running) or an empty database file
// fails with ErrStateLost, naming the file, until the operator restores it
// or calls Reset. With Exclusive, Open also runs QuickCheck and refuses a
// corrupt database (ErrCorrupt).
func Open(path string, o Options) (*Store, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, FileName)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: creating state directory: %w", err)
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 5 * time.Second
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	s := &Store{log: o.Logger, path: path, checkEvery: o.CheckInterval}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if o.Exclusive {
		f, err := takeLock(path)
		if err != nil {
			return nil, err
		}
		s.lock = f
	}
	dsn := func(path string, write bool) string {
		q := url.Values{}
		q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", o.BusyTimeout.Milliseconds()))
		q.Add("_pragma", "journal_mode(WAL)")
		// FULL: the WAL is fsynced at every commit, so a commit that
		// returned survives power loss (NORMAL would only survive a crash).
		q.Add("_pragma", "synchronous(FULL)")
		// rw, not rwc: SQLite must never create the database itself (a
		// connection opened after the file was deleted would silently
		// start an empty one); create does, once, atomically.
		q.Set("mode", "rw")
		if write {
			// BEGIN IMMEDIATE takes the write lock up front, so busy_timeout
			// applies instead of a SQLITE_BUSY on lock upgrade.
			q.Set("_txlock", "immediate")
		}
		return "file:" + path + "?" + q.Encode()
	}
	if err := s.open(dsn, o.Exclusive); err != nil {
		s.closeStmts()
		for _, db := range []*sql.DB{s.r, s.w} {
			if db != nil {
				db.Close()
			}
		}
		s.closeLock()
		return nil, err
	}
	return s, nil
}

// open does Open's work after the lock; the caller cleans up on error.
func (s *Store) open(dsn func(string, bool) string, exclusive bool) error {
	ctx := context.Background()
	fresh, err := preflight(s.path)
	if err != nil {
		return err
	}
	if fresh {
		if err := create(s.path, dsn); err != nil {
			return err
		}
	}
	// Before SQLite opens it: a new WAL or shared-memory file takes the
	// database's mode.
	s.tighten(s.path)
	if s.w, err = sql.Open("sqlite", dsn(s.path, true)); err != nil {
		return fmt.Errorf("store: opening %s: %w", s.path, err)
	}
	s.w.SetMaxOpenConns(1) // SQLite has one writer; queue here, not on busy_timeout
	s.w.SetConnMaxIdleTime(0)
	if exclusive {
		if err := s.QuickCheck(ctx); err != nil {
			return err
		}
	}
	if err := s.migrate(ctx); err != nil {
		return s.classify(err)
	}
	for _, p := range []struct {
		st **sql.Stmt
		q  string
	}{{&s.ins, insertDelivery}, {&s.ups, upsertState}, {&s.upd, updateDelivery}, {&s.dis, disableCallback},
		{&s.hist, insertHistory}} {
		if *p.st, err = s.w.Prepare(p.q); err != nil {
			return fmt.Errorf("store: preparing statements: %w", err)
		}
	}
	if s.r, err = sql.Open("sqlite", dsn(s.path, false)); err != nil {
		return fmt.Errorf("store: opening %s for reading: %w", s.path, err)
	}
	s.r.SetMaxOpenConns(4)
	s.tighten(s.path)
	if err := s.remember(); err != nil {
		return err
	}
	if exclusive {
		return s.markInitialised(time.Now())
	}
	return nil
}

func (s *Store) closeLock() {
	if s.lock != nil {
		s.lock.Close() // closing releases the flock
		s.lock = nil
	}
}

func (s *Store) closeStmts() {
	for _, st := range []*sql.Stmt{s.ins, s.ups, s.upd, s.dis, s.hist} {
		if st != nil {
			st.Close()
		}
	}
}

// Close closes the database and releases the dispatcher lock.
func (s *Store) Close() error {
	s.closeStmts()
	err := errors.Join(s.r.Close(), s.w.Close())
	s.closeLock()
	return err
}

// migrations are applied in order; schema_version records how many ran.
// Never edit a released entry: append a new one.
var migrations = []string{
	`CREATE TABLE deliveries (
		id              TEXT PRIMARY KEY,
		event_id        TEXT NOT NULL,
		callback        TEXT NOT NULL,
		root_id         TEXT NOT NULL,
		seq             BIGINT NOT NULL,
		event_type      TEXT NOT NULL,
		state           TEXT NOT NULL,
		attempts        INTEGER NOT NULL DEFAULT 0,
		next_attempt_at BIGINT NOT NULL,
		created_at      BIGINT NOT NULL,
		replayed_at     BIGINT NOT NULL DEFAULT 0,
		updated_at      BIGINT NOT NULL,
		last_error      TEXT NOT NULL DEFAULT '',
		last_status     INTEGER NOT NULL DEFAULT 0,
		event           TEXT NOT NULL
	);
	CREATE INDEX deliveries_queue ON deliveries (callback, state, created_at, root_id, seq);
	CREATE INDEX deliveries_state ON deliveries (state, updated_at);
	CREATE TABLE entity_states (
		id          TEXT PRIMARY KEY,
		kind        TEXT NOT NULL,
		root_id     TEXT NOT NULL,
		state       TEXT NOT NULL,
		updated_at  TEXT NOT NULL,
		retry_count INTEGER NOT NULL,
		last_seq    BIGINT NOT NULL
	);
	CREATE TABLE checkpoints (
		key   TEXT PRIMARY KEY,
		value TEXT NOT NULL
	);
	CREATE TABLE disabled_callbacks (
		name   TEXT PRIMARY KEY,
		reason TEXT NOT NULL,
		url    TEXT NOT NULL,
		since  BIGINT NOT NULL
	);`,
	// 2: partial indexes. The full ones kept an entry for every row in
	// every state, so each completion (pending → delivered) deleted and
	// re-inserted an entry in both, and a new row added one to both. Now
	// a new row adds one entry (pending), a completion removes it and adds
	// one (delivered or dead): 3 index writes per delivery instead of 6.
	// Queries that filter on a state spell it as a literal so that the
	// planner can use these (List inlines the validated state).
	`DROP INDEX deliveries_queue;
	DROP INDEX deliveries_state;
	CREATE INDEX deliveries_pending ON deliveries (callback, created_at, root_id, seq) WHERE state = 'pending';
	CREATE INDEX deliveries_delivered ON deliveries (updated_at) WHERE state = 'delivered';
	CREATE INDEX deliveries_dead ON deliveries (callback, created_at) WHERE state = 'dead'`,
	// 3 (issue 13): runtime listeners, and the event history their
	// backfill reads. history is read by root (in sequence order) and
	// pruned by time; listeners' spec is sealed by notifier/listeners.
	`CREATE TABLE history (
		id         TEXT PRIMARY KEY,
		root_id    TEXT NOT NULL,
		entity_id  TEXT NOT NULL,
		type       TEXT NOT NULL,
		seq        BIGINT NOT NULL,
		created_at BIGINT NOT NULL,
		event      TEXT NOT NULL
	);
	CREATE INDEX history_root ON history (root_id, seq);
	CREATE INDEX history_time ON history (created_at);
	CREATE TABLE listeners (
		id          TEXT PRIMARY KEY,
		project_id  TEXT NOT NULL,
		scope       TEXT NOT NULL,
		scope_value TEXT NOT NULL,
		root_id     TEXT NOT NULL,
		events      TEXT NOT NULL,
		spec        BLOB NOT NULL,
		created_at  BIGINT NOT NULL,
		updated_at  BIGINT NOT NULL,
		expires_at  BIGINT NOT NULL
	);
	CREATE INDEX listeners_project ON listeners (project_id)`,
	// 4 (issue 12): circuit breakers survive a restart.
	`CREATE TABLE breakers (
		callback   TEXT PRIMARY KEY,
		url        TEXT NOT NULL,
		state      TEXT NOT NULL,
		failures   INTEGER NOT NULL,
		opened_at  BIGINT NOT NULL,
		next_probe BIGINT NOT NULL,
		backoff_ms BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	)`,
	// 5 (issue 12): what the tracker needs to decide, after a restart, as
	// it would have without one (see event.EntityState): the request time
	// that breaks same-second ties (Unix nanoseconds, 0 unknown), a task's
	// fired wait policies (event.PolicyFlags) and its started_at.
	`ALTER TABLE entity_states ADD COLUMN requested_ns BIGINT NOT NULL DEFAULT 0;
	ALTER TABLE entity_states ADD COLUMN policies INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE entity_states ADD COLUMN started_at TEXT NOT NULL DEFAULT ''`,
}

func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: starting migration: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("store: creating schema_version: %w", err)
	}
	var v int
	err = tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return fmt.Errorf("store: initialising schema_version: %w", err)
		}
	case err != nil:
		return fmt.Errorf("store: reading schema_version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("store: database schema version %d is newer than this binary's %d", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		for _, stmt := range strings.Split(migrations[i], ";") {
			if strings.TrimSpace(stmt) == "" {
				continue
			}
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("store: migration %d: %w", i+1, err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, len(migrations)); err != nil {
		return fmt.Errorf("store: updating schema_version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: committing migration: %w", err)
	}
	return nil
}

// Millis and FromMillis are how both stores keep a time: milliseconds
// since the epoch, 0 for the zero time.
func Millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func FromMillis(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// Nanos and FromNanos keep a time with nanosecond precision (an entity state's
// request time, which orders sightings within one second).
func Nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func FromNanos(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v).UTC()
}

// Commit applies writes in one transaction, durable when it returns nil.
func (s *Store) Commit(ctx context.Context, writes ...Write) error {
	return s.note(s.commit(ctx, writes...))
}

func (s *Store) commit(ctx context.Context, writes ...Write) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: beginning commit: %w", err)
	}
	defer tx.Rollback()
	c := commitTx{ctx: ctx, tx: tx}
	for _, w := range writes {
		if err := s.apply(&c, w); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: committing: %w", err)
	}
	return nil
}

// commitTx is one commit's transaction with its handles on the statements
// prepared at Open, each taken on first use: on the writer's single
// connection database/sql reuses them as they are.
type commitTx struct {
	ctx                      context.Context
	tx                       *sql.Tx
	ins, ups, upd, dis, hist *sql.Stmt
}

// stmt returns the transaction's handle *p on shared, taking it once.
func (c *commitTx) stmt(p **sql.Stmt, shared *sql.Stmt) *sql.Stmt {
	if *p == nil {
		*p = c.tx.StmtContext(c.ctx, shared)
	}
	return *p
}

// apply writes one Write in c, in a fixed order (deliveries, history,
// states, updates, disabled callbacks, checkpoints, breakers); the first
// error ends it.
func (s *Store) apply(c *commitTx, w Write) error {
	if err := c.insertDeliveries(s.ins, w.Insert, w.Inserted); err != nil {
		return err
	}
	if err := c.recordEvents(s.hist, w.Events); err != nil {
		return err
	}
	if err := c.saveStates(s.ups, w.States); err != nil {
		return err
	}
	if err := c.updateDeliveries(s.upd, w.Updates); err != nil {
		return err
	}
	if err := c.disableCallbacks(s.dis, w.Disable); err != nil {
		return err
	}
	if err := c.saveCheckpoints(w.Checkpoints); err != nil {
		return err
	}
	return c.saveBreakers(w.Breakers)
}

// insertDeliveries inserts ds and, for each i < len(inserted), sets
// inserted[i] to whether ds[i] was new (an existing id is left alone).
func (c *commitTx) insertDeliveries(shared *sql.Stmt, ds []Delivery, inserted []bool) error {
	for i, d := range ds {
		res, err := c.stmt(&c.ins, shared).ExecContext(c.ctx, d.ID, d.EventID, d.Callback, d.RootID, int64(d.Seq), d.EventType,
			string(d.State), d.Attempts, Millis(d.NextAt), Millis(d.CreatedAt), Millis(d.ReplayedAt), Millis(d.UpdatedAt),
			d.LastError, d.LastStatus, string(d.Event))
		if err != nil {
			return fmt.Errorf("store: inserting delivery %s: %w", d.ID, err)
		}
		if i < len(inserted) {
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("store: inserting delivery %s: %w", d.ID, err)
			}
			inserted[i] = n > 0
		}
	}
	return nil
}

// recordEvents adds rs to the history.
func (c *commitTx) recordEvents(shared *sql.Stmt, rs []Recorded) error {
	for _, r := range rs {
		if _, err := c.stmt(&c.hist, shared).ExecContext(c.ctx, r.ID, r.RootID, r.EntityID, r.Type, int64(r.Seq),
			Millis(r.CreatedAt), string(r.Event)); err != nil {
			return fmt.Errorf("store: recording event %s: %w", r.ID, err)
		}
	}
	return nil
}

// saveStates upserts the tracker's entity states.
func (c *commitTx) saveStates(shared *sql.Stmt, sts []event.EntityState) error {
	for _, st := range sts {
		if _, err := c.stmt(&c.ups, shared).ExecContext(c.ctx, st.ID, string(st.Kind), st.RootID, st.State, st.UpdatedAt,
			st.RetryCount, int64(st.LastSeq), Nanos(st.RequestedAt), int(st.Policies), st.StartedAt); err != nil {
			return fmt.Errorf("store: saving state of %s: %w", st.ID, err)
		}
	}
	return nil
}

// updateDeliveries records attempt outcomes.
func (c *commitTx) updateDeliveries(shared *sql.Stmt, us []Update) error {
	for _, u := range us {
		if _, err := c.stmt(&c.upd, shared).ExecContext(c.ctx, string(u.State), u.Attempts, Millis(u.NextAt), u.LastError,
			u.LastStatus, Millis(u.UpdatedAt), u.ID); err != nil {
			return fmt.Errorf("store: updating delivery %s: %w", u.ID, err)
		}
	}
	return nil
}

// disableCallbacks marks callbacks disabled.
func (c *commitTx) disableCallbacks(shared *sql.Stmt, ds []Disabled) error {
	for _, d := range ds {
		if _, err := c.stmt(&c.dis, shared).ExecContext(c.ctx, d.Name, d.Reason, d.URL, Millis(d.Since)); err != nil {
			return fmt.Errorf("store: disabling callback %s: %w", d.Name, err)
		}
	}
	return nil
}

// saveCheckpoints upserts checkpoints by key (a statement not prepared at
// Open).
func (c *commitTx) saveCheckpoints(cs []Checkpoint) error {
	for _, cp := range cs {
		if _, err := c.tx.ExecContext(c.ctx, upsertCheckpoint, cp.Key, cp.Value); err != nil {
			return fmt.Errorf("store: saving checkpoint %s: %w", cp.Key, err)
		}
	}
	return nil
}

// saveBreakers upserts circuit breaker states by callback (a statement not
// prepared at Open).
func (c *commitTx) saveBreakers(bs []Breaker) error {
	for _, b := range bs {
		if _, err := c.tx.ExecContext(c.ctx, upsertBreaker, b.Callback, b.URL, b.State, b.Failures, Millis(b.OpenedAt),
			Millis(b.NextProbe), b.Backoff.Milliseconds(), Millis(b.UpdatedAt)); err != nil {
			return fmt.Errorf("store: saving breaker of %s: %w", b.Callback, err)
		}
	}
	return nil
}

const deliveryCols = `id, event_id, callback, root_id, seq, event_type, state, attempts, next_attempt_at,
	created_at, replayed_at, updated_at, last_error, last_status`

func scanDelivery(sc interface{ Scan(...any) error }, withEvent bool) (Delivery, error) {
	var d Delivery
	var seq, next, created, replayed, updated int64
	var state, body string
	dst := []any{&d.ID, &d.EventID, &d.Callback, &d.RootID, &seq, &d.EventType, &state, &d.Attempts,
		&next, &created, &replayed, &updated, &d.LastError, &d.LastStatus}
	if withEvent {
		dst = append(dst, &body)
	}
	if err := sc.Scan(dst...); err != nil {
		return Delivery{}, fmt.Errorf("store: reading delivery: %w", err)
	}
	d.Seq, d.State = uint64(seq), State(state)
	d.NextAt, d.CreatedAt, d.ReplayedAt, d.UpdatedAt = FromMillis(next), FromMillis(created), FromMillis(replayed), FromMillis(updated)
	if withEvent {
		d.Event = json.RawMessage(body)
	}
	return d, nil
}

// Pending returns up to limit pending deliveries of callback, with their
// events, oldest first (event time, then root and sequence), the order in
// which the dispatcher loads them so that within a root a loaded delivery
// never has an unloaded predecessor.
func (s *Store) Pending(ctx context.Context, callback string, limit int) ([]Delivery, error) {
	ds, err := s.pending(ctx, callback, limit)
	return ds, s.note(err)
}

func (s *Store) pending(ctx context.Context, callback string, limit int) ([]Delivery, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+deliveryCols+`, event FROM deliveries
		WHERE callback = ? AND state = 'pending' ORDER BY created_at, root_id, seq LIMIT ?`, callback, limit)
	if err != nil {
		return nil, fmt.Errorf("store: querying pending deliveries of %s: %w", callback, err)
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		d, err := scanDelivery(rows, true)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: querying pending deliveries of %s: %w", callback, err)
	}
	return out, nil
}

// PendingSummary returns how many deliveries of callback are pending and the
// latest replayed_at among them: enough for a dispatcher that holds every
// pending row in memory to tell that nothing was added behind its back (a
// replay by another process) without reading the rows and their events.
func (s *Store) PendingSummary(ctx context.Context, callback string) (int, time.Time, error) {
	var n int
	var replayed sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT COUNT(*), MAX(replayed_at) FROM deliveries
		WHERE callback = ? AND state = 'pending'`, callback).Scan(&n, &replayed)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("store: summarising pending deliveries of %s: %w", callback, err)
	}
	return n, FromMillis(replayed.Int64), nil
}

// CountPending returns the number of pending deliveries per callback.
func (s *Store) CountPending(ctx context.Context) (map[string]int, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT callback, COUNT(*) FROM deliveries WHERE state = 'pending' GROUP BY callback`)
	if err != nil {
		return nil, fmt.Errorf("store: counting pending deliveries: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var cb string
		var n int
		if err := rows.Scan(&cb, &n); err != nil {
			return nil, fmt.Errorf("store: counting pending deliveries: %w", err)
		}
		out[cb] = n
	}
	return out, rows.Err()
}

// Abandon turns every pending delivery of callback into a dead letter with
// reason as its last error (e.g. the callback was removed from the
// configuration). It returns how many it changed.
func (s *Store) Abandon(ctx context.Context, callback, reason string, now time.Time) (int, error) {
	res, err := s.w.ExecContext(ctx, `UPDATE deliveries SET state = 'dead', last_error = ?, updated_at = ?
		WHERE callback = ? AND state = 'pending'`, reason, Millis(now), callback)
	if err != nil {
		return 0, fmt.Errorf("store: abandoning deliveries of %s: %w", callback, err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// Filter selects deliveries for List.
type Filter struct {
	ID       string
	Callback string
	State    State
	// Since keeps deliveries whose event time is at or after it.
	Since time.Time
	// Limit caps the result; 0 means 100.
	Limit int
	// WithEvent includes each event's JSON.
	WithEvent bool
}

// List returns deliveries matching f, most recently updated first.
func (s *Store) List(ctx context.Context, f Filter) ([]Delivery, error) {
	q := `SELECT ` + deliveryCols
	if f.WithEvent {
		q += `, event`
	}
	q += ` FROM deliveries WHERE 1 = 1`
	var args []any
	if f.ID != "" {
		q += ` AND id = ?`
		args = append(args, f.ID)
	}
	if f.Callback != "" {
		q += ` AND callback = ?`
		args = append(args, f.Callback)
	}
	if f.State != "" {
		if !f.State.Valid() {
			return nil, fmt.Errorf("store: unknown delivery state %q", f.State)
		}
		// A literal, not a parameter: the per-state indexes are partial
		// and only match a literal state (f.State is validated above).
		q += ` AND state = '` + string(f.State) + `'`
	}
	if !f.Since.IsZero() {
		q += ` AND created_at >= ?`
		args = append(args, Millis(f.Since))
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	q += ` ORDER BY updated_at DESC, id LIMIT ?`
	args = append(args, f.Limit)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: listing deliveries: %w", err)
	}
	defer rows.Close()
	out := []Delivery{}
	for rows.Next() {
		d, err := scanDelivery(rows, f.WithEvent)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: listing deliveries: %w", err)
	}
	return out, nil
}

// ReplayFilter selects dead letters to replay. At least one field must be
// set; set fields must all match.
type ReplayFilter struct {
	ID       string    `json:"id,omitempty"`
	Callback string    `json:"callback,omitempty"`
	Since    time.Time `json:"since,omitzero"` // event time at or after
}

// Replay turns matching dead letters back into pending deliveries due now,
// with attempts reset; max_age then counts from now. Replaying by callback
// also re-enables the callback if a 410 had disabled it. It returns how many
// deliveries it re-queued.
func (s *Store) Replay(ctx context.Context, f ReplayFilter, now time.Time) (int, error) {
	if f.ID == "" && f.Callback == "" && f.Since.IsZero() {
		return 0, errors.New("store: replay needs an id, a callback or a since time")
	}
	q := `UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?, replayed_at = ?,
		updated_at = ? WHERE state = 'dead'`
	args := []any{Millis(now), Millis(now), Millis(now)}
	if f.ID != "" {
		q += ` AND id = ?`
		args = append(args, f.ID)
	}
	if f.Callback != "" {
		q += ` AND callback = ?`
		args = append(args, f.Callback)
	}
	if !f.Since.IsZero() {
		q += ` AND created_at >= ?`
		args = append(args, Millis(f.Since))
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("store: beginning replay: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("store: replaying: %w", err)
	}
	n, _ := res.RowsAffected()
	if f.Callback != "" {
		if _, err := tx.ExecContext(ctx, `DELETE FROM disabled_callbacks WHERE name = ?`, f.Callback); err != nil {
			return 0, fmt.Errorf("store: re-enabling %s: %w", f.Callback, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("store: committing replay: %w", err)
	}
	return int(n), nil
}

// Prune deletes delivered rows last updated before before and returns how
// many it deleted.
func (s *Store) Prune(ctx context.Context, before time.Time) (int, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM deliveries WHERE state = 'delivered' AND updated_at < ?`, Millis(before))
	if err != nil {
		return 0, fmt.Errorf("store: pruning delivered rows: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// DisabledCallbacks returns the callbacks disabled by a 410, by name.
func (s *Store) DisabledCallbacks(ctx context.Context) (map[string]Disabled, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, reason, url, since FROM disabled_callbacks`)
	if err != nil {
		return nil, fmt.Errorf("store: reading disabled callbacks: %w", err)
	}
	defer rows.Close()
	out := map[string]Disabled{}
	for rows.Next() {
		var d Disabled
		var since int64
		if err := rows.Scan(&d.Name, &d.Reason, &d.URL, &since); err != nil {
			return nil, fmt.Errorf("store: reading disabled callbacks: %w", err)
		}
		d.Since = FromMillis(since)
		out[d.Name] = d
	}
	return out, rows.Err()
}

// Breaker returns callback's last recorded circuit breaker; ok is false
// when none was recorded.
func (s *Store) Breaker(ctx context.Context, callback string) (b Breaker, ok bool, err error) {
	var opened, next, backoff, updated int64
	err = s.r.QueryRowContext(ctx, `SELECT callback, url, state, failures, opened_at, next_probe, backoff_ms, updated_at
		FROM breakers WHERE callback = ?`, callback).Scan(&b.Callback, &b.URL, &b.State, &b.Failures, &opened, &next, &backoff, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return Breaker{}, false, nil
	}
	if err != nil {
		return Breaker{}, false, s.note(fmt.Errorf("store: reading breaker of %s: %w", callback, err))
	}
	b.OpenedAt, b.NextProbe, b.UpdatedAt = FromMillis(opened), FromMillis(next), FromMillis(updated)
	b.Backoff = time.Duration(backoff) * time.Millisecond
	return b, true, nil
}

// Enable re-enables a callback disabled by a 410.
func (s *Store) Enable(ctx context.Context, name string) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM disabled_callbacks WHERE name = ?`, name); err != nil {
		return fmt.Errorf("store: re-enabling %s: %w", name, err)
	}
	return nil
}

// LoadStates returns every saved tracker entity state.
func (s *Store) LoadStates(ctx context.Context) ([]event.EntityState, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, kind, root_id, state, updated_at, retry_count, last_seq,
		requested_ns, policies, started_at FROM entity_states`)
	if err != nil {
		return nil, fmt.Errorf("store: loading entity states: %w", err)
	}
	defer rows.Close()
	var out []event.EntityState
	for rows.Next() {
		var st event.EntityState
		var kind string
		var seq, reqNs int64
		var pol int
		if err := rows.Scan(&st.ID, &kind, &st.RootID, &st.State, &st.UpdatedAt, &st.RetryCount, &seq,
			&reqNs, &pol, &st.StartedAt); err != nil {
			return nil, fmt.Errorf("store: loading entity states: %w", err)
		}
		st.Kind, st.LastSeq = event.Kind(kind), uint64(seq)
		st.RequestedAt, st.Policies = FromNanos(reqNs), event.PolicyFlags(pol)
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: loading entity states: %w", err)
	}
	return out, nil
}

// ForgetStates deletes the states of the given entity ids (retention).
func (s *Store) ForgetStates(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: beginning forget: %w", err)
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, `DELETE FROM entity_states WHERE id = ?`)
	if err != nil {
		return fmt.Errorf("store: preparing forget: %w", err)
	}
	for _, id := range ids {
		if _, err := st.ExecContext(ctx, id); err != nil {
			return fmt.Errorf("store: forgetting state of %s: %w", id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: committing forget: %w", err)
	}
	return nil
}

// Checkpoint returns the value saved under key, "" if none.
func (s *Store) Checkpoint(ctx context.Context, key string) (string, error) {
	var v string
	err := s.r.QueryRowContext(ctx, `SELECT value FROM checkpoints WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("store: reading checkpoint %s: %w", key, err)
	}
	return v, nil
}

// SetCheckpoint durably saves value under key.
func (s *Store) SetCheckpoint(ctx context.Context, key, value string) error {
	if _, err := s.w.ExecContext(ctx, upsertCheckpoint, key, value); err != nil {
		return fmt.Errorf("store: saving checkpoint %s: %w", key, err)
	}
	return nil
}
