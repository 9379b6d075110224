package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A database created by the first schema (full indexes) is upgraded in
// place: its rows stay and the queries find them through the partial
// indexes.
func TestMigrateFromVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range append(strings.Split(migrations[0], ";"),
		`CREATE TABLE schema_version (version INTEGER NOT NULL)`, `INSERT INTO schema_version (version) VALUES (1)`,
		`INSERT INTO deliveries (id, event_id, callback, root_id, seq, event_type, state, next_attempt_at, created_at, updated_at, event)
			VALUES ('e1/a', 'e1', 'a', 'r', 1, 'WORKFLOW_LAUNCHED', 'pending', 1, 1, 1, '{"id":"e1"}'),
			       ('e2/a', 'e2', 'a', 'r', 2, 'WORKFLOW_LAUNCHED', 'delivered', 1, 1, 1, '{"id":"e2"}')`,
		`INSERT INTO entity_states (id, kind, root_id, state, updated_at, retry_count, last_seq)
			VALUES ('r', 'execution', 'r', 'RUNNING', '2025-01-02 03:04:05', 0, 2)`) {
		if strings.TrimSpace(q) == "" {
			continue
		}
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	s := openT(t, path, Options{})
	ctx := context.Background()
	p, err := s.Pending(ctx, "a", 10)
	if err != nil || len(p) != 1 || p[0].ID != "e1/a" {
		t.Fatalf("Pending = %v, %v", p, err)
	}
	if n, _, err := s.PendingSummary(ctx, "a"); err != nil || n != 1 {
		t.Fatalf("PendingSummary = %d, %v", n, err)
	}
	if l, err := s.List(ctx, Filter{State: Delivered}); err != nil || len(l) != 1 || l[0].ID != "e2/a" {
		t.Fatalf("List(delivered) = %v, %v", l, err)
	}
	// A state saved before the request time was stored loads without one
	// (the tracker then treats any same-second change as newer, as before).
	if st, err := s.LoadStates(ctx); err != nil || len(st) != 1 || st[0].LastSeq != 2 || !st[0].RequestedAt.IsZero() || st[0].Policies != 0 {
		t.Fatalf("LoadStates = %+v, %v", st, err)
	}
	if n, err := s.Prune(ctx, time.UnixMilli(2)); err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v", n, err)
	}
	var idx []string
	rows, err := s.r.Query(`SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'deliveries_%' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		rows.Scan(&n)
		idx = append(idx, n)
	}
	rows.Close()
	if got := strings.Join(idx, ","); got != "deliveries_dead,deliveries_delivered,deliveries_pending" {
		t.Fatalf("indexes %s", got)
	}
}
