package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrListenerLimit is returned by CreateListener when the listener's
// project already has as many listeners as the cap allows.
var ErrListenerLimit = errors.New("store: listener limit of the project reached")

// ErrNotFound is returned by Listener for an unknown id.
var ErrNotFound = errors.New("store: not found")

// Listener is one listener registered through the API, as stored. The store
// never interprets Spec: notifier/listeners seals it (AES-GCM) before it gets
// here, because it holds the callback's URL, headers and signing secret,
// which must never be stored in clear.
type Listener struct {
	ID        string
	ProjectID string
	// Scope is execution_id, task_execution_id, workflow_name or
	// workbook_name; ScopeValue is the id, name or glob it names.
	Scope, ScopeValue string
	// RootID is the root execution of an execution or task scope, when
	// known at registration; "" otherwise.
	RootID string
	Events []string
	Spec   []byte
	// ExpiresAt zero means the listener does not expire.
	CreatedAt, UpdatedAt, ExpiresAt time.Time
}

// Listener statements, shared in spirit with pgstore (which numbers its
// placeholders).
const (
	listenerCols   = `id, project_id, scope, scope_value, root_id, events, spec, created_at, updated_at, expires_at`
	insertListener = `INSERT INTO listeners (` + listenerCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
)

// EncodeEvents is the stored form of a listener's event list (a JSON
// array), shared with pgstore.
func EncodeEvents(events []string) string {
	if events == nil {
		events = []string{}
	}
	b, _ := json.Marshal(events) // a []string always encodes
	return string(b)
}

// DecodeEvents reads EncodeEvents' form.
func DecodeEvents(s string) ([]string, error) {
	var out []string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, fmt.Errorf("store: reading listener events: %w", err)
	}
	return out, nil
}

// CreateListener stores l. With perProject > 0 it refuses, with
// ErrListenerLimit, when l's project already has perProject listeners; the
// count and the insert are one transaction (SQLite has one writer), so
// concurrent registrations cannot overshoot the cap. An existing id is an
// error.
func (s *Store) CreateListener(ctx context.Context, l Listener, perProject int) error {
	return s.note(s.createListener(ctx, l, perProject))
}

func (s *Store) createListener(ctx context.Context, l Listener, perProject int) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: beginning listener creation: %w", err)
	}
	defer tx.Rollback()
	if perProject > 0 {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM listeners WHERE project_id = ?`, l.ProjectID).Scan(&n); err != nil {
			return fmt.Errorf("store: counting listeners of project %q: %w", l.ProjectID, err)
		}
		if n >= perProject {
			return fmt.Errorf("%w (project %q has %d, cap %d)", ErrListenerLimit, l.ProjectID, n, perProject)
		}
	}
	var dup int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM listeners WHERE id = ?`, l.ID).Scan(&dup); err != nil {
		return fmt.Errorf("store: creating listener %s: %w", l.ID, err)
	}
	if dup > 0 {
		return fmt.Errorf("store: listener %s already exists", l.ID)
	}
	spec := l.Spec
	if spec == nil {
		spec = []byte{} // NOT NULL
	}
	if _, err := tx.ExecContext(ctx, insertListener, l.ID, l.ProjectID, l.Scope, l.ScopeValue, l.RootID,
		EncodeEvents(l.Events), spec, Millis(l.CreatedAt), Millis(l.UpdatedAt), Millis(l.ExpiresAt)); err != nil {
		return fmt.Errorf("store: creating listener %s: %w", l.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: committing listener %s: %w", l.ID, err)
	}
	return nil
}

func scanListener(sc interface{ Scan(...any) error }) (Listener, error) {
	var l Listener
	var events string
	var created, updated, expires int64
	if err := sc.Scan(&l.ID, &l.ProjectID, &l.Scope, &l.ScopeValue, &l.RootID, &events, &l.Spec,
		&created, &updated, &expires); err != nil {
		return Listener{}, err
	}
	ev, err := DecodeEvents(events)
	if err != nil {
		return Listener{}, err
	}
	l.Events = ev
	l.CreatedAt, l.UpdatedAt, l.ExpiresAt = FromMillis(created), FromMillis(updated), FromMillis(expires)
	return l, nil
}

// Listeners returns every stored listener, oldest first.
func (s *Store) Listeners(ctx context.Context) ([]Listener, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+listenerCols+` FROM listeners ORDER BY created_at, id`)
	if err != nil {
		return nil, s.note(fmt.Errorf("store: listing listeners: %w", err))
	}
	defer rows.Close()
	out := []Listener{}
	for rows.Next() {
		l, err := scanListener(rows)
		if err != nil {
			return nil, fmt.Errorf("store: listing listeners: %w", err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, s.note(fmt.Errorf("store: listing listeners: %w", err))
	}
	return out, nil
}

// Listener returns the listener id, or ErrNotFound.
func (s *Store) Listener(ctx context.Context, id string) (Listener, error) {
	l, err := scanListener(s.r.QueryRowContext(ctx, `SELECT `+listenerCols+` FROM listeners WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Listener{}, fmt.Errorf("%w: listener %s", ErrNotFound, id)
	}
	if err != nil {
		return Listener{}, s.note(fmt.Errorf("store: reading listener %s: %w", id, err))
	}
	return l, nil
}

// DeleteListener deletes the listener id and reports whether it existed.
// Its deliveries stay: the dispatcher dead-letters the pending ones when it
// removes the listener's route.
func (s *Store) DeleteListener(ctx context.Context, id string) (bool, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM listeners WHERE id = ?`, id)
	if err != nil {
		return false, s.note(fmt.Errorf("store: deleting listener %s: %w", id, err))
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}
