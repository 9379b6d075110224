package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mistral-tap/mistral-tap/notifier/store"
)

const listenerCols = `id, project_id, scope, scope_value, root_id, events, spec, created_at, updated_at, expires_at`

// CreateListener is store.Store.CreateListener. Any replica may register,
// so it is not fenced; the cap holds across replicas because the count and
// the insert run under a transaction-level advisory lock on the project.
func (s *Store) CreateListener(ctx context.Context, l store.Listener, perProject int) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return s.wrap("creating listener "+l.ID, err)
	}
	defer tx.Rollback(ctx)
	if perProject > 0 {
		// hashtext's key space is shared with migrateLock's; a collision
		// only serialises two unrelated transactions briefly.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('mistral-tap listeners ' || $1))`, l.ProjectID); err != nil {
			return s.wrap("locking listeners of project "+l.ProjectID, err)
		}
		var n int64
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM listeners WHERE project_id = $1`, l.ProjectID).Scan(&n); err != nil {
			return s.wrap("counting listeners", err)
		}
		if n >= int64(perProject) {
			return fmt.Errorf("%w (project %q has %d, cap %d)", store.ErrListenerLimit, l.ProjectID, n, perProject)
		}
	}
	spec := l.Spec
	if spec == nil {
		spec = []byte{} // NOT NULL
	}
	_, err = tx.Exec(ctx, `INSERT INTO listeners (`+listenerCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		l.ID, l.ProjectID, l.Scope, l.ScopeValue, l.RootID, store.EncodeEvents(l.Events), spec,
		store.Millis(l.CreatedAt), store.Millis(l.UpdatedAt), store.Millis(l.ExpiresAt))
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return fmt.Errorf("pgstore: listener %s already exists", l.ID)
	}
	if err != nil {
		return s.wrap("creating listener "+l.ID, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return s.wrap("committing listener "+l.ID, err)
	}
	return nil
}

func scanListener(sc pgx.Row) (store.Listener, error) {
	var l store.Listener
	var events string
	var created, updated, expires int64
	if err := sc.Scan(&l.ID, &l.ProjectID, &l.Scope, &l.ScopeValue, &l.RootID, &events, &l.Spec,
		&created, &updated, &expires); err != nil {
		return store.Listener{}, err
	}
	ev, err := store.DecodeEvents(events)
	if err != nil {
		return store.Listener{}, err
	}
	l.Events = ev
	l.CreatedAt, l.UpdatedAt, l.ExpiresAt = store.FromMillis(created), store.FromMillis(updated), store.FromMillis(expires)
	return l, nil
}

// Listeners is store.Store.Listeners.
func (s *Store) Listeners(ctx context.Context) ([]store.Listener, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+listenerCols+` FROM listeners ORDER BY created_at, id`)
	if err != nil {
		return nil, s.wrap("listing listeners", err)
	}
	defer rows.Close()
	out := []store.Listener{}
	for rows.Next() {
		l, err := scanListener(rows)
		if err != nil {
			return nil, s.wrap("listing listeners", err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("listing listeners", err)
	}
	return out, nil
}

// Listener is store.Store.Listener.
func (s *Store) Listener(ctx context.Context, id string) (store.Listener, error) {
	l, err := scanListener(s.pool.QueryRow(ctx, `SELECT `+listenerCols+` FROM listeners WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Listener{}, fmt.Errorf("%w: listener %s", store.ErrNotFound, id)
	}
	if err != nil {
		return store.Listener{}, s.wrap("reading listener "+id, err)
	}
	return l, nil
}

// DeleteListener is store.Store.DeleteListener; not fenced (any replica
// serves the API).
func (s *Store) DeleteListener(ctx context.Context, id string) (bool, error) {
	n, err := s.exec(ctx, "deleting listener "+id, false, `DELETE FROM listeners WHERE id = $1`, id)
	return n > 0, err
}

// History is store.Store.History.
func (s *Store) History(ctx context.Context, roots []string) ([]store.Recorded, error) {
	out := []store.Recorded{}
	if len(roots) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT id, root_id, entity_id, type, seq, created_at, event FROM history
		WHERE root_id = ANY($1) ORDER BY root_id, seq`, roots)
	if err != nil {
		return nil, s.wrap("reading history", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r store.Recorded
		var seq, created int64
		var body string
		if err := rows.Scan(&r.ID, &r.RootID, &r.EntityID, &r.Type, &seq, &created, &body); err != nil {
			return nil, s.wrap("reading history", err)
		}
		r.Seq, r.CreatedAt, r.Event = uint64(seq), store.FromMillis(created), []byte(body)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("reading history", err)
	}
	// The database's collation may order ids differently from Go; the
	// contract is Go's byte order, as SQLite's.
	store.SortRecorded(out)
	return out, nil
}

// OpenRoots is store.Store.OpenRoots.
func (s *Store) OpenRoots(ctx context.Context, since time.Time) ([]string, error) {
	return s.roots(ctx, "reading open roots", store.OpenRootsQuery, since)
}

// RootsSince is store.Store.RootsSince.
func (s *Store) RootsSince(ctx context.Context, since time.Time) ([]string, error) {
	return s.roots(ctx, "reading roots since", store.RootsSinceQuery, since)
}

func (s *Store) roots(ctx context.Context, what, query string, since time.Time) ([]string, error) {
	rows, err := s.pool.Query(ctx, strings.Replace(query, "?", "$1", 1), store.Millis(since))
	if err != nil {
		return nil, s.wrap(what, err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, s.wrap(what, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(what, err)
	}
	slices.Sort(out) // Go's byte order whatever the collation
	return out, nil
}

// PruneHistory is store.Store.PruneHistory.
func (s *Store) PruneHistory(ctx context.Context, before time.Time) (int, error) {
	n, err := s.exec(ctx, "pruning history", false, `DELETE FROM history WHERE created_at < $1`, store.Millis(before))
	return int(n), err
}
