// Package pgstore is mistral-tap's durable store on PostgreSQL, for several
// replicas sharing one database. It has the method set of *store.Store (the
// outbox, tracker states, checkpoints, callbacks disabled by a 410, event
// history, listeners and circuit breakers) with the same semantics, plus what
// replicas need to act as one:
//
//   - a leader lease (Acquire, Resign) whose term is a fencing token: once
//     SetFence is called, every write the leader makes (Commit, SetCheckpoint,
//     ForgetStates, Abandon) checks in the same transaction that the lease
//     is still held under that term and has not expired by the database's
//     clock, and fails with ErrFenced otherwise, so a replica that lost its
//     lease can neither complete a delivery nor move a checkpoint;
//   - the observations queue (AppendObservations, ReadObservations,
//     DeleteObservations, WaitObservations): every replica's tap appends,
//     the leader consumes.
//
// Migrations are versioned and run under a transaction-level advisory lock,
// so replicas starting at once migrate one after the other; a database whose
// schema is newer than the binary is refused with both versions named.
//
// Secrets: the DSN's password never appears in errors or logs; errors name
// the server by RedactDSN.
package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// ErrFenced is returned by a fenced write when this replica no longer holds
// the lease under the term it was given (it expired, or another replica took
// it over). The write did not happen.
var ErrFenced = errors.New("pgstore: leader lease lost (fenced write refused)")

// fencedCode is the SQLSTATE mistral_tap_check_lease raises.
const fencedCode = "MTAP1"

// Options tunes Open.
type Options struct {
	// DSN is a libpq connection string or URL. Required. Its password never
	// appears in errors.
	DSN string
	// MaxConns caps the pool. Default 10.
	MaxConns int32
	// MinConns keeps this many connections open. Default 1.
	MinConns int32
	// ConnectTimeout bounds establishing a connection. Default 5s.
	ConnectTimeout time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Fence is a lease held: the holder's id and the term it was granted.
type Fence struct {
	Lease  string
	Holder string
	Term   int64
}

// Store is an open PostgreSQL store. Its methods are safe for concurrent use.
type Store struct {
	pool  *pgxpool.Pool
	log   *slog.Logger
	where string // the server, password-free, for errors
	fence atomic.Pointer[Fence]
}

var (
	urlPassword = regexp.MustCompile(`(://[^:/@]*:)[^@]*@`)
	kvPassword  = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
)

// RedactDSN returns dsn without its password, in URL or key=value form,
// even when it does not parse.
func RedactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" && u.Host != "" {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	dsn = urlPassword.ReplaceAllString(dsn, "${1}xxxxx@")
	return kvPassword.ReplaceAllString(dsn, "${1}xxxxx")
}

// server is host:port/db of a parsed config, for messages.
func server(c *pgconn.Config) string {
	return fmt.Sprintf("%s:%d/%s", c.Host, c.Port, c.Database)
}

// Open connects, migrates (see the package doc) and returns the store.
func Open(ctx context.Context, o Options) (*Store, error) {
	s, err := New(o)
	if err != nil {
		return nil, err
	}
	if err := s.Migrate(ctx); err != nil {
		s.pool.Close()
		return nil, err
	}
	return s, nil
}

// New returns the store without touching the database: the pool connects
// on first use. Until Migrate has succeeded its methods may fail on a
// missing or older schema, so a caller that starts before the database
// answers (a replica during an outage) uses nothing but Migrate and
// Health until then. Only a DSN that does not parse is an error here.
func New(o Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(o.DSN)
	if err != nil {
		// pgx's parse errors quote the DSN; never pass them on.
		return nil, fmt.Errorf("%w: %q is not a valid PostgreSQL connection string", ErrBadDSN, RedactDSN(o.DSN))
	}
	cfg.MaxConns, cfg.MinConns = 10, 1
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	if o.MinConns > 0 {
		cfg.MinConns = min(o.MinConns, cfg.MaxConns)
	}
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	if o.ConnectTimeout > 0 {
		cfg.ConnConfig.ConnectTimeout = o.ConnectTimeout
	}
	s := &Store{log: o.Logger, where: server(&cfg.ConnConfig.Config)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	// NewWithConfig connects nothing in the foreground (MinConns are
	// opened in the background), so it fails only on a config it refuses.
	if s.pool, err = pgxpool.NewWithConfig(context.Background(), cfg); err != nil {
		return nil, s.wrap("connecting", err)
	}
	return s, nil
}

// wrap names the server and the operation; pgconn's errors carry the host
// and user but never the password.
func (s *Store) wrap(op string, err error) error {
	if errors.Is(err, ErrFenced) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == fencedCode {
		return ErrFenced
	}
	return fmt.Errorf("pgstore: %s (%s): %w", op, s.where, err)
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return s.wrap("ping", err)
	}
	return nil
}

// Health is Ping, for readiness.
func (s *Store) Health(ctx context.Context) error { return s.Ping(ctx) }

// SetFence makes every later leader write check f (nil: no check).
func (s *Store) SetFence(f *Fence) { s.fence.Store(f) }

// checkLease is the fencing statement; it raises fencedCode when the lease
// is not held.
const checkLease = `SELECT mistral_tap_check_lease($1, $2, $3)`

// queueFence adds the fence check to b when a fence is set.
func (s *Store) queueFence(b *pgx.Batch) bool {
	f := s.fence.Load()
	if f == nil {
		return false
	}
	b.Queue(checkLease, f.Lease, f.Holder, f.Term)
	return true
}

// Commit's statements, as in notifier/store.
const (
	upsertCheckpoint = `INSERT INTO checkpoints (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`
	disableCallback = `INSERT INTO disabled_callbacks (name, reason, url, since) VALUES ($1, $2, $3, $4)
		ON CONFLICT (name) DO UPDATE SET reason = excluded.reason, url = excluded.url, since = excluded.since`
	upsertBreaker = `INSERT INTO breakers (callback, url, state, failures, opened_at, next_probe, backoff_ms, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (callback) DO UPDATE SET url = excluded.url, state = excluded.state,
		failures = excluded.failures, opened_at = excluded.opened_at, next_probe = excluded.next_probe,
		backoff_ms = excluded.backoff_ms, updated_at = excluded.updated_at`
)

// Bulk forms of Commit's statements: one statement per kind of change,
// its rows as arrays, rather than one statement per row (parsing, binding
// and executing each row was what bounded the delivery rate).
const (
	bulkInsert = `INSERT INTO deliveries (id, event_id, callback, root_id, seq, event_type, state,
		attempts, next_attempt_at, created_at, replayed_at, updated_at, last_error, last_status, event)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[],
			$8::int[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::text[], $14::int[], $15::text[])
		ON CONFLICT (id) DO NOTHING RETURNING id`
	bulkHistory = `INSERT INTO history (id, root_id, entity_id, type, seq, created_at, event)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[])
		ON CONFLICT (id) DO NOTHING`
	bulkStates = `INSERT INTO entity_states (id, kind, root_id, state, updated_at, retry_count, last_seq,
		requested_ns, policies, started_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::bigint[],
			$8::bigint[], $9::int[], $10::text[])
		ON CONFLICT (id) DO UPDATE SET kind = excluded.kind,
		root_id = excluded.root_id, state = excluded.state, updated_at = excluded.updated_at,
		retry_count = excluded.retry_count, last_seq = excluded.last_seq, requested_ns = excluded.requested_ns,
		policies = excluded.policies, started_at = excluded.started_at`
	// Only pending rows: a send's outcome committed after its callback
	// was removed must not revive the dead letter Abandon made of it.
	bulkUpdate = `UPDATE deliveries d SET state = u.state, attempts = u.attempts, next_attempt_at = u.next_at,
		last_error = u.last_error, last_status = u.last_status, updated_at = u.updated_at
		FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::text[], $6::int[], $7::bigint[])
			AS u(id, state, attempts, next_at, last_error, last_status, updated_at)
		WHERE d.id = u.id AND d.state = 'pending'`
)

// Commit applies writes in one transaction, durable when it returns nil.
// The whole transaction is one pipelined batch (one round trip): pgx runs a
// batch without explicit transaction control as an implicit transaction, so
// a failing statement, the fence check included, rolls back all of it.
// Within the batch, inserts come first, then states, then attempt
// outcomes: an outcome always refers to a delivery committed earlier, and
// of several states (or outcomes) of one id the last one wins, as if they
// were applied in order.
func (s *Store) Commit(ctx context.Context, writes ...store.Write) error {
	b := &pgx.Batch{}
	fenced := s.queueFence(b)
	ins := queueInserts(b, writes)
	queueHistory(b, writes)
	queueStates(b, writes)
	queueUpdates(b, writes)
	for _, w := range writes {
		for _, d := range w.Disable {
			b.Queue(disableCallback, d.Name, d.Reason, d.URL, store.Millis(d.Since))
		}
		for _, c := range w.Checkpoints {
			b.Queue(upsertCheckpoint, c.Key, c.Value)
		}
		for _, k := range w.Breakers {
			b.Queue(upsertBreaker, k.Callback, k.URL, k.State, int32(k.Failures), store.Millis(k.OpenedAt), store.Millis(k.NextProbe),
				k.Backoff.Milliseconds(), store.Millis(k.UpdatedAt))
		}
	}
	if b.Len() == 0 || (fenced && b.Len() == 1) {
		return nil
	}
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	if fenced {
		if _, err := br.Exec(); err != nil {
			return s.wrap("committing", err)
		}
	}
	if ins != nil {
		rows, err := br.Query()
		if err != nil {
			return s.wrap("committing", err)
		}
		fresh := map[string]bool{}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return s.wrap("committing", err)
			}
			fresh[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return s.wrap("committing", err)
		}
		for wi := range writes {
			w := &writes[wi]
			for i, d := range w.Insert {
				if i < len(w.Inserted) {
					// The first of duplicates in one commit is the new one.
					w.Inserted[i] = fresh[d.ID]
					delete(fresh, d.ID)
				}
			}
		}
	}
	if err := br.Close(); err != nil {
		return s.wrap("committing", err)
	}
	return nil
}

// queueInserts queues every write's inserts as one statement; nil if none.
func queueInserts(b *pgx.Batch, writes []store.Write) []string {
	var id, ev, cb, root, typ, state, lastErr, body []string
	var seq, next, created, replayed, updated []int64
	var attempts, status []int32
	for _, w := range writes {
		for _, d := range w.Insert {
			id, ev, cb, root = append(id, d.ID), append(ev, d.EventID), append(cb, d.Callback), append(root, d.RootID)
			seq, typ, state = append(seq, int64(d.Seq)), append(typ, d.EventType), append(state, string(d.State))
			attempts, next, created = append(attempts, int32(d.Attempts)), append(next, store.Millis(d.NextAt)), append(created, store.Millis(d.CreatedAt))
			replayed, updated = append(replayed, store.Millis(d.ReplayedAt)), append(updated, store.Millis(d.UpdatedAt))
			lastErr, status, body = append(lastErr, d.LastError), append(status, int32(d.LastStatus)), append(body, string(d.Event))
		}
	}
	if len(id) == 0 {
		return nil
	}
	b.Queue(bulkInsert, id, ev, cb, root, seq, typ, state, attempts, next, created, replayed, updated, lastErr, status, body)
	return id
}

// queueHistory queues every write's recorded events as one statement.
func queueHistory(b *pgx.Batch, writes []store.Write) {
	var id, root, entity, typ, body []string
	var seq, created []int64
	for _, w := range writes {
		for _, r := range w.Events {
			id, root, entity, typ = append(id, r.ID), append(root, r.RootID), append(entity, r.EntityID), append(typ, r.Type)
			seq, created, body = append(seq, int64(r.Seq)), append(created, store.Millis(r.CreatedAt)), append(body, string(r.Event))
		}
	}
	if len(id) > 0 {
		b.Queue(bulkHistory, id, root, entity, typ, seq, created, body)
	}
}

// queueStates queues the states, the last of each id.
func queueStates(b *pgx.Batch, writes []store.Write) {
	at := map[string]int{}
	var id, kind, root, state, upd, started []string
	var retry, pol []int32
	var seq, reqNs []int64
	for _, w := range writes {
		for _, st := range w.States {
			if i, ok := at[st.ID]; ok {
				kind[i], root[i], state[i], upd[i], retry[i], seq[i] = string(st.Kind), st.RootID, st.State, st.UpdatedAt, int32(st.RetryCount), int64(st.LastSeq)
				reqNs[i], pol[i], started[i] = store.Nanos(st.RequestedAt), int32(st.Policies), st.StartedAt
				continue
			}
			at[st.ID] = len(id)
			id, kind, root, state = append(id, st.ID), append(kind, string(st.Kind)), append(root, st.RootID), append(state, st.State)
			upd, retry, seq = append(upd, st.UpdatedAt), append(retry, int32(st.RetryCount)), append(seq, int64(st.LastSeq))
			reqNs, pol, started = append(reqNs, store.Nanos(st.RequestedAt)), append(pol, int32(st.Policies)), append(started, st.StartedAt)
		}
	}
	if len(id) > 0 {
		b.Queue(bulkStates, id, kind, root, state, upd, retry, seq, reqNs, pol, started)
	}
}

// queueUpdates queues the attempt outcomes, the last of each id.
func queueUpdates(b *pgx.Batch, writes []store.Write) {
	at := map[string]int{}
	var id, state, lastErr []string
	var attempts, status []int32
	var next, updated []int64
	for _, w := range writes {
		for _, u := range w.Updates {
			if i, ok := at[u.ID]; ok {
				state[i], attempts[i], next[i], lastErr[i], status[i], updated[i] = string(u.State), int32(u.Attempts), store.Millis(u.NextAt), u.LastError, int32(u.LastStatus), store.Millis(u.UpdatedAt)
				continue
			}
			at[u.ID] = len(id)
			id, state, attempts, next = append(id, u.ID), append(state, string(u.State)), append(attempts, int32(u.Attempts)), append(next, store.Millis(u.NextAt))
			lastErr, status, updated = append(lastErr, u.LastError), append(status, int32(u.LastStatus)), append(updated, store.Millis(u.UpdatedAt))
		}
	}
	if len(id) > 0 {
		b.Queue(bulkUpdate, id, state, attempts, next, lastErr, status, updated)
	}
}

// exec runs one statement, fenced when a fence is set and fence is true.
func (s *Store) exec(ctx context.Context, op string, fence bool, q string, args ...any) (int64, error) {
	b := &pgx.Batch{}
	fenced := fence && s.queueFence(b)
	b.Queue(q, args...)
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	if fenced {
		if _, err := br.Exec(); err != nil {
			return 0, s.wrap(op, err)
		}
	}
	tag, err := br.Exec()
	if err != nil {
		return 0, s.wrap(op, err)
	}
	if err := br.Close(); err != nil {
		return 0, s.wrap(op, err)
	}
	return tag.RowsAffected(), nil
}

const deliveryCols = `id, event_id, callback, root_id, seq, event_type, state, attempts, next_attempt_at,
	created_at, replayed_at, updated_at, last_error, last_status`

func scanDelivery(sc pgx.Row, withEvent bool) (store.Delivery, error) {
	var d store.Delivery
	var seq, next, created, replayed, updated int64
	var state, body string
	var attempts, status int32
	dst := []any{&d.ID, &d.EventID, &d.Callback, &d.RootID, &seq, &d.EventType, &state, &attempts,
		&next, &created, &replayed, &updated, &d.LastError, &status}
	if withEvent {
		dst = append(dst, &body)
	}
	if err := sc.Scan(dst...); err != nil {
		return store.Delivery{}, fmt.Errorf("pgstore: reading delivery: %w", err)
	}
	d.Seq, d.State, d.Attempts, d.LastStatus = uint64(seq), store.State(state), int(attempts), int(status)
	d.NextAt, d.CreatedAt, d.ReplayedAt, d.UpdatedAt = store.FromMillis(next), store.FromMillis(created), store.FromMillis(replayed), store.FromMillis(updated)
	if withEvent {
		d.Event = json.RawMessage(body)
	}
	return d, nil
}

func (s *Store) queryDeliveries(ctx context.Context, op string, withEvent bool, q string, args ...any) ([]store.Delivery, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, s.wrap(op, err)
	}
	defer rows.Close()
	out := []store.Delivery{}
	for rows.Next() {
		d, err := scanDelivery(rows, withEvent)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(op, err)
	}
	return out, nil
}

// Pending is store.Store.Pending.
func (s *Store) Pending(ctx context.Context, callback string, limit int) ([]store.Delivery, error) {
	return s.queryDeliveries(ctx, "querying pending deliveries of "+callback, true, `SELECT `+deliveryCols+`, event
		FROM deliveries WHERE callback = $1 AND state = 'pending' ORDER BY created_at, root_id, seq LIMIT $2`, callback, limit)
}

// PendingSummary is store.Store.PendingSummary.
func (s *Store) PendingSummary(ctx context.Context, callback string) (int, time.Time, error) {
	var n int64
	var replayed *int64
	err := s.pool.QueryRow(ctx, `SELECT COUNT(*), MAX(replayed_at) FROM deliveries
		WHERE callback = $1 AND state = 'pending'`, callback).Scan(&n, &replayed)
	if err != nil {
		return 0, time.Time{}, s.wrap("summarising pending deliveries of "+callback, err)
	}
	var r int64
	if replayed != nil {
		r = *replayed
	}
	return int(n), store.FromMillis(r), nil
}

// CountPending is store.Store.CountPending.
func (s *Store) CountPending(ctx context.Context) (map[string]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT callback, COUNT(*) FROM deliveries WHERE state = 'pending' GROUP BY callback`)
	if err != nil {
		return nil, s.wrap("counting pending deliveries", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var cb string
		var n int64
		if err := rows.Scan(&cb, &n); err != nil {
			return nil, s.wrap("counting pending deliveries", err)
		}
		out[cb] = int(n)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("counting pending deliveries", err)
	}
	return out, nil
}

// Abandon is store.Store.Abandon; fenced.
func (s *Store) Abandon(ctx context.Context, callback, reason string, now time.Time) (int, error) {
	n, err := s.exec(ctx, "abandoning deliveries of "+callback, true, `UPDATE deliveries SET state = 'dead',
		last_error = $1, updated_at = $2 WHERE callback = $3 AND state = 'pending'`, reason, store.Millis(now), callback)
	return int(n), err
}

// List is store.Store.List.
func (s *Store) List(ctx context.Context, f store.Filter) ([]store.Delivery, error) {
	q := `SELECT ` + deliveryCols
	if f.WithEvent {
		q += `, event`
	}
	q += ` FROM deliveries WHERE TRUE`
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.ID != "" {
		q += ` AND id = ` + arg(f.ID)
	}
	if f.Callback != "" {
		q += ` AND callback = ` + arg(f.Callback)
	}
	if f.State != "" {
		if !f.State.Valid() {
			return nil, fmt.Errorf("pgstore: unknown delivery state %q", f.State)
		}
		// A literal, so that the partial per-state indexes apply
		// (validated above).
		q += ` AND state = '` + string(f.State) + `'`
	}
	if !f.Since.IsZero() {
		q += ` AND created_at >= ` + arg(store.Millis(f.Since))
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	q += ` ORDER BY updated_at DESC, id LIMIT ` + arg(f.Limit)
	return s.queryDeliveries(ctx, "listing deliveries", f.WithEvent, q, args...)
}

// Replay is store.Store.Replay. It is not fenced: any replica (and the
// CLI) may replay; the leader's dispatcher picks the rows up.
func (s *Store) Replay(ctx context.Context, f store.ReplayFilter, now time.Time) (int, error) {
	if f.ID == "" && f.Callback == "" && f.Since.IsZero() {
		return 0, errors.New("pgstore: replay needs an id, a callback or a since time")
	}
	q := `UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = $1, replayed_at = $1,
		updated_at = $1 WHERE state = 'dead'`
	args := []any{store.Millis(now)}
	if f.ID != "" {
		args = append(args, f.ID)
		q += fmt.Sprintf(` AND id = $%d`, len(args))
	}
	if f.Callback != "" {
		args = append(args, f.Callback)
		q += fmt.Sprintf(` AND callback = $%d`, len(args))
	}
	if !f.Since.IsZero() {
		args = append(args, store.Millis(f.Since))
		q += fmt.Sprintf(` AND created_at >= $%d`, len(args))
	}
	b := &pgx.Batch{}
	b.Queue(q, args...)
	if f.Callback != "" {
		b.Queue(`DELETE FROM disabled_callbacks WHERE name = $1`, f.Callback)
	}
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	tag, err := br.Exec()
	if err != nil {
		return 0, s.wrap("replaying", err)
	}
	if f.Callback != "" {
		if _, err := br.Exec(); err != nil {
			return 0, s.wrap("re-enabling "+f.Callback, err)
		}
	}
	if err := br.Close(); err != nil {
		return 0, s.wrap("replaying", err)
	}
	return int(tag.RowsAffected()), nil
}

// Prune is store.Store.Prune.
func (s *Store) Prune(ctx context.Context, before time.Time) (int, error) {
	n, err := s.exec(ctx, "pruning delivered rows", false,
		`DELETE FROM deliveries WHERE state = 'delivered' AND updated_at < $1`, store.Millis(before))
	return int(n), err
}

// DisabledCallbacks is store.Store.DisabledCallbacks.
func (s *Store) DisabledCallbacks(ctx context.Context) (map[string]store.Disabled, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, reason, url, since FROM disabled_callbacks`)
	if err != nil {
		return nil, s.wrap("reading disabled callbacks", err)
	}
	defer rows.Close()
	out := map[string]store.Disabled{}
	for rows.Next() {
		var d store.Disabled
		var since int64
		if err := rows.Scan(&d.Name, &d.Reason, &d.URL, &since); err != nil {
			return nil, s.wrap("reading disabled callbacks", err)
		}
		d.Since = store.FromMillis(since)
		out[d.Name] = d
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("reading disabled callbacks", err)
	}
	return out, nil
}

// Breaker is store.Store.Breaker.
func (s *Store) Breaker(ctx context.Context, callback string) (store.Breaker, bool, error) {
	var b store.Breaker
	var failures int32
	var opened, next, backoff, updated int64
	err := s.pool.QueryRow(ctx, `SELECT callback, url, state, failures, opened_at, next_probe, backoff_ms, updated_at
		FROM breakers WHERE callback = $1`, callback).Scan(&b.Callback, &b.URL, &b.State, &failures, &opened, &next, &backoff, &updated)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Breaker{}, false, nil
	}
	if err != nil {
		return store.Breaker{}, false, s.wrap("reading breaker of "+callback, err)
	}
	b.Failures = int(failures)
	b.OpenedAt, b.NextProbe, b.UpdatedAt = store.FromMillis(opened), store.FromMillis(next), store.FromMillis(updated)
	b.Backoff = time.Duration(backoff) * time.Millisecond
	return b, true, nil
}

// Enable is store.Store.Enable.
func (s *Store) Enable(ctx context.Context, name string) error {
	_, err := s.exec(ctx, "re-enabling "+name, false, `DELETE FROM disabled_callbacks WHERE name = $1`, name)
	return err
}

// LoadStates is store.Store.LoadStates.
func (s *Store) LoadStates(ctx context.Context) ([]event.EntityState, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, kind, root_id, state, updated_at, retry_count, last_seq,
		requested_ns, policies, started_at FROM entity_states`)
	if err != nil {
		return nil, s.wrap("loading entity states", err)
	}
	defer rows.Close()
	var out []event.EntityState
	for rows.Next() {
		var st event.EntityState
		var kind string
		var seq, reqNs int64
		var retry, pol int32
		if err := rows.Scan(&st.ID, &kind, &st.RootID, &st.State, &st.UpdatedAt, &retry, &seq, &reqNs, &pol, &st.StartedAt); err != nil {
			return nil, s.wrap("loading entity states", err)
		}
		st.Kind, st.LastSeq, st.RetryCount = event.Kind(kind), uint64(seq), int(retry)
		st.RequestedAt, st.Policies = store.FromNanos(reqNs), event.PolicyFlags(pol)
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("loading entity states", err)
	}
	return out, nil
}

// ForgetStates is store.Store.ForgetStates; fenced.
func (s *Store) ForgetStates(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.exec(ctx, "forgetting entity states", true, `DELETE FROM entity_states WHERE id = ANY($1)`, ids)
	return err
}

// Checkpoint is store.Store.Checkpoint.
func (s *Store) Checkpoint(ctx context.Context, key string) (string, error) {
	var v string
	err := s.pool.QueryRow(ctx, `SELECT value FROM checkpoints WHERE key = $1`, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", s.wrap("reading checkpoint "+key, err)
	}
	return v, nil
}

// SetCheckpoint is store.Store.SetCheckpoint; fenced.
func (s *Store) SetCheckpoint(ctx context.Context, key, value string) error {
	_, err := s.exec(ctx, "saving checkpoint "+key, true, upsertCheckpoint, key, value)
	return err
}

// ErrBadDSN is returned by Open for a connection string that does not
// parse.
var ErrBadDSN = errors.New("pgstore: invalid store.dsn")

// IsPermanent reports whether an Open error will not go away by waiting:
// a bad DSN, a too new schema, or the server refusing the credentials or
// the database.
func IsPermanent(err error) bool {
	if errors.Is(err, ErrBadDSN) || errors.Is(err, ErrSchemaTooNew) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "28", "3D", "42": // authentication, no such database, syntax/privilege
			return true
		}
	}
	return false
}
