package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// migrations are applied in order; schema_version records how many ran.
// Never edit a released entry: append a new one. The deliveries, states,
// checkpoints and disabled_callbacks tables mirror notifier/store's so that
// rows move between the two unchanged (times are Unix milliseconds).
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
	CREATE INDEX deliveries_pending ON deliveries (callback, created_at, root_id, seq) WHERE state = 'pending';
	CREATE INDEX deliveries_delivered ON deliveries (updated_at) WHERE state = 'delivered';
	CREATE INDEX deliveries_dead ON deliveries (callback, created_at) WHERE state = 'dead';
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
	);
	CREATE TABLE leases (
		name       TEXT PRIMARY KEY,
		holder     TEXT NOT NULL,
		term       BIGINT NOT NULL,
		expires_at TIMESTAMPTZ NOT NULL
	);
	CREATE TABLE observations (
		id          BIGSERIAL PRIMARY KEY,
		replica     TEXT NOT NULL,
		received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
		body        TEXT NOT NULL
	);
	CREATE FUNCTION mistral_tap_check_lease(lname TEXT, lholder TEXT, lterm BIGINT) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM 1 FROM leases WHERE name = lname AND holder = lholder AND term = lterm
			AND expires_at > clock_timestamp() FOR SHARE;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'mistral-tap lease % term % is no longer held by %', lname, lterm, lholder
				USING ERRCODE = 'MTAP1';
		END IF;
	END $$`,
	// 2 (issue 13): runtime listeners and the event history their
	// backfill reads, as in notifier/store's migration 3.
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
		spec        BYTEA NOT NULL,
		created_at  BIGINT NOT NULL,
		updated_at  BIGINT NOT NULL,
		expires_at  BIGINT NOT NULL
	);
	CREATE INDEX listeners_project ON listeners (project_id)`,
	// 3 (issue 12): the leader's circuit breakers, so that a new leader
	// carries on from them.
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
	// 4 (issue 12): the tracker's tie-break and task policies (see
	// notifier/store's migration of the same columns).
	`ALTER TABLE entity_states ADD COLUMN requested_ns BIGINT NOT NULL DEFAULT 0;
	ALTER TABLE entity_states ADD COLUMN policies INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE entity_states ADD COLUMN started_at TEXT NOT NULL DEFAULT ''`,
}

// SchemaVersion is the schema version this binary migrates to.
func SchemaVersion() int { return len(migrations) }

// ErrSchemaTooNew is returned by Open and Migrate when the database was migrated by a
// newer binary.
var ErrSchemaTooNew = errors.New("pgstore: database schema is newer than this binary")

// migrateLock is the advisory lock key taken around migrations
// (transaction-scoped, so it also works behind a transaction pooler).
const migrateLock = 0x6d74617001 // "mtap" 1

// Migrate brings the schema up to SchemaVersion under the migration lock
// (Open does it). It fails with ErrSchemaTooNew, never touching the
// schema, when a newer binary migrated the database; any other error
// (the database not answering) may go away with a retry.
func (s *Store) Migrate(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return s.wrap("starting migration", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
		return s.wrap("locking for migration", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS mistral_tap_schema (version INTEGER NOT NULL)`); err != nil {
		return s.wrap("creating mistral_tap_schema", err)
	}
	var v int
	err = tx.QueryRow(ctx, `SELECT version FROM mistral_tap_schema`).Scan(&v)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := tx.Exec(ctx, `INSERT INTO mistral_tap_schema (version) VALUES (0)`); err != nil {
			return s.wrap("initialising mistral_tap_schema", err)
		}
	case err != nil:
		return s.wrap("reading mistral_tap_schema", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("%w: database %s has schema version %d, this binary knows up to %d; upgrade mistral-tap",
			ErrSchemaTooNew, s.where, v, len(migrations))
	}
	if v == len(migrations) {
		return nil
	}
	for i := v; i < len(migrations); i++ {
		// One Exec of the whole migration: the simple protocol runs
		// several statements, and the function body's semicolons stay
		// intact.
		if _, err := tx.Exec(ctx, migrations[i], pgx.QueryExecModeSimpleProtocol); err != nil {
			return s.wrap(fmt.Sprintf("migration %d", i+1), err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE mistral_tap_schema SET version = $1`, len(migrations)); err != nil {
		return s.wrap("updating mistral_tap_schema", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return s.wrap("committing migration", err)
	}
	s.log.Info("database schema migrated", "from", v, "to", len(migrations))
	return nil
}
