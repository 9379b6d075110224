package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// historyChunk bounds the roots of one History query (SQLite's limit on
// parameters is far above it; PostgreSQL takes an array).
const historyChunk = 500

// RecordedOf is the history row of ev; now stands for a missing event time.
func RecordedOf(ev *event.Event, body []byte, now time.Time) Recorded {
	at := ev.Time
	if at.IsZero() {
		at = now
	}
	return Recorded{ID: ev.ID, RootID: ev.RootExecutionID, EntityID: ev.EntityID(), Type: string(ev.Type),
		Seq: ev.Sequence, CreatedAt: at, Event: body}
}

// OpenRootsQuery selects the roots with an event at or after $since whose
// root execution has not ended: its latest event in the history (highest
// sequence) is not a terminal one, so a failed workflow that was re-run is
// open again. A root whose own events were pruned counts as open. Shared by
// pgstore (placeholders rewritten).
const OpenRootsQuery = `SELECT DISTINCT root_id FROM history WHERE created_at >= ? AND root_id NOT IN (
	SELECT t.root_id FROM history t WHERE t.entity_id = t.root_id
	AND t.type IN ('WORKFLOW_SUCCEEDED', 'WORKFLOW_FAILED', 'WORKFLOW_CANCELLED')
	AND t.seq = (SELECT MAX(m.seq) FROM history m WHERE m.root_id = t.root_id AND m.entity_id = m.root_id)
) ORDER BY root_id`

// History returns every recorded event of the given roots, by root then
// sequence: the order in which a listener's backfill delivers them.
func (s *Store) History(ctx context.Context, roots []string) ([]Recorded, error) {
	out := []Recorded{}
	for len(roots) > 0 {
		chunk := roots[:min(len(roots), historyChunk)]
		roots = roots[len(chunk):]
		args := make([]any, len(chunk))
		for i, r := range chunk {
			args[i] = r
		}
		q := `SELECT id, root_id, entity_id, type, seq, created_at, event FROM history WHERE root_id IN (?` +
			strings.Repeat(", ?", len(chunk)-1) + `) ORDER BY root_id, seq`
		rows, err := s.r.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, s.note(fmt.Errorf("store: reading history: %w", err))
		}
		for rows.Next() {
			var r Recorded
			var seq, created int64
			var body string
			if err := rows.Scan(&r.ID, &r.RootID, &r.EntityID, &r.Type, &seq, &created, &body); err != nil {
				rows.Close()
				return nil, fmt.Errorf("store: reading history: %w", err)
			}
			r.Seq, r.CreatedAt, r.Event = uint64(seq), FromMillis(created), []byte(body)
			out = append(out, r)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, s.note(fmt.Errorf("store: reading history: %w", err))
		}
	}
	SortRecorded(out)
	return out, nil
}

// SortRecorded orders rs by root, then sequence (chunks are read in the
// caller's root order, not sorted).
func SortRecorded(rs []Recorded) {
	slices.SortStableFunc(rs, func(a, b Recorded) int {
		if c := cmp.Compare(a.RootID, b.RootID); c != 0 {
			return c
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
}

// OpenRoots returns, sorted, the roots with an event at or after since
// whose root execution has not ended (see OpenRootsQuery).
func (s *Store) OpenRoots(ctx context.Context, since time.Time) ([]string, error) {
	return s.roots(ctx, "reading open roots", OpenRootsQuery, since)
}

// RootsSinceQuery selects every root with an event at or after $since,
// ended or not. Shared by pgstore (placeholders rewritten).
const RootsSinceQuery = `SELECT DISTINCT root_id FROM history WHERE created_at >= ? ORDER BY root_id`

// RootsSince returns, sorted, every root with an event at or after since:
// a workflow listener activated late (registered on a replica that does not
// lead, or across a fail-over) also needs the executions that started and
// ended in between, which OpenRoots leaves out.
func (s *Store) RootsSince(ctx context.Context, since time.Time) ([]string, error) {
	return s.roots(ctx, "reading roots since", RootsSinceQuery, since)
}

func (s *Store) roots(ctx context.Context, what, query string, since time.Time) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, query, Millis(since))
	if err != nil {
		return nil, s.note(fmt.Errorf("store: %s: %w", what, err))
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, fmt.Errorf("store: %s: %w", what, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.note(fmt.Errorf("store: %s: %w", what, err))
	}
	return out, nil
}

// PruneHistory deletes recorded events older than before (event time) and
// returns how many it deleted.
func (s *Store) PruneHistory(ctx context.Context, before time.Time) (int, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM history WHERE created_at < ?`, Millis(before))
	if err != nil {
		return 0, s.note(fmt.Errorf("store: pruning history: %w", err))
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
