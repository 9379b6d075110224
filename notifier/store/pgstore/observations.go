package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// ObservationsChannel is notified when observations are appended.
const ObservationsChannel = "mistral_tap_observations"

// ObservationBatch is one appended row: what one tapped response revealed.
type ObservationBatch struct {
	ID  int64
	Obs []event.Observation
}

// AppendObservations appends one row per batch, as replica, and notifies
// ObservationsChannel, in one transaction.
func (s *Store) AppendObservations(ctx context.Context, replica string, batches [][]event.Observation) error {
	bodies := make([]string, 0, len(batches))
	for _, obs := range batches {
		b, err := json.Marshal(obs)
		if err != nil {
			return fmt.Errorf("pgstore: encoding observations: %w", err)
		}
		bodies = append(bodies, string(b))
	}
	if len(bodies) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO observations (replica, body) SELECT $1, unnest($2::text[])`, replica, bodies)
	b.Queue(`SELECT pg_notify($1, '')`, ObservationsChannel)
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return s.wrap("appending observations", err)
	}
	return nil
}

// ReadObservations returns up to limit rows appended at least olderThan
// ago (by the database's clock, at the appending transaction's start),
// oldest id first. A row whose body does not decode is returned with no
// observations (and logged), so that it is deleted rather than read
// forever.
func (s *Store) ReadObservations(ctx context.Context, limit int, olderThan time.Duration) ([]ObservationBatch, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, body FROM observations
		WHERE received_at <= now() - $2 * interval '1 millisecond' ORDER BY id LIMIT $1`, limit, olderThan.Milliseconds())
	if err != nil {
		return nil, s.wrap("reading observations", err)
	}
	defer rows.Close()
	var out []ObservationBatch
	for rows.Next() {
		var b ObservationBatch
		var body string
		if err := rows.Scan(&b.ID, &body); err != nil {
			return nil, s.wrap("reading observations", err)
		}
		if err := json.Unmarshal([]byte(body), &b.Obs); err != nil {
			s.log.Error("undecodable observations row; dropping it", "id", b.ID, "err", err)
			b.Obs = nil
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("reading observations", err)
	}
	return out, nil
}

// DeleteObservations deletes the rows with the given ids.
func (s *Store) DeleteObservations(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.exec(ctx, "deleting observations", false, `DELETE FROM observations WHERE id = ANY($1)`, ids)
	return err
}

// CountObservations returns how many rows wait to be consumed.
func (s *Store) CountObservations(ctx context.Context) (int, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT COUNT(*) FROM observations`).Scan(&n); err != nil {
		return 0, s.wrap("counting observations", err)
	}
	return int(n), nil
}

// Listener holds one pooled connection that LISTENs on channels.
type Listener struct {
	s    *Store
	conn *pgxpool.Conn
}

// Listen acquires a connection and LISTENs on channels. Close it to give
// the connection back.
func (s *Store) Listen(ctx context.Context, channels ...string) (*Listener, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, s.wrap("acquiring a connection to listen", err)
	}
	for _, ch := range channels {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			conn.Release()
			return nil, s.wrap("listening on "+ch, err)
		}
	}
	return &Listener{s: s, conn: conn}, nil
}

// Wait blocks until a notification arrives on any channel (returning its
// channel) or ctx ends. After an error other than ctx's, the listener is
// unusable: close it and listen again.
func (l *Listener) Wait(ctx context.Context) (string, error) {
	n, err := l.conn.Conn().WaitForNotification(ctx)
	if err != nil {
		return "", l.s.wrap("waiting for a notification", err)
	}
	return n.Channel, nil
}

// Close releases the connection; one whose wait was interrupted is
// destroyed rather than reused, since its state is unknown.
func (l *Listener) Close() {
	l.conn.Hijack().Close(context.Background())
}
