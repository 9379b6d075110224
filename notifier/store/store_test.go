package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

func openT(t *testing.T, path string, o Options) *Store {
	t.Helper()
	s, err := Open(path, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func ev(id, root string, seq uint64, at time.Time) *event.Event {
	return &event.Event{ID: id, Type: event.WorkflowLaunched, Sequence: seq, RootExecutionID: root, Time: at,
		Execution: &event.Execution{ID: root, State: event.StateRunning}}
}

func TestExclusiveLock(t *testing.T) {
	dir := t.TempDir()
	openT(t, dir, Options{Exclusive: true})
	if _, err := Open(dir, Options{Exclusive: true}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second exclusive Open: err = %v, want ErrLocked", err)
	}
	// The CLI opens without Exclusive while the server runs.
	cli := openT(t, dir, Options{})
	if err := cli.SetCheckpoint(context.Background(), "k", "v"); err != nil {
		t.Fatalf("write from concurrent non-exclusive open: %v", err)
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", FileName)
	s, err := Open(path, Options{Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := NewDelivery(ev("e1", "r1", 1, t0), "cb", t0)
	d2, _ := NewDelivery(ev("e2", "r1", 2, t0.Add(time.Second)), "cb", t0)
	states := []event.EntityState{{Kind: event.KindExecution, ID: "r1", RootID: "r1", State: "RUNNING", UpdatedAt: "2025-01-02 03:04:05", LastSeq: 2}}
	w := Write{Insert: []Delivery{d1, d2}, States: states, Inserted: make([]bool, 2)}
	if err := s.Commit(ctx, w); err != nil {
		t.Fatal(err)
	}
	if !w.Inserted[0] || !w.Inserted[1] {
		t.Fatalf("Inserted = %v, want both true", w.Inserted)
	}
	w2 := Write{Insert: []Delivery{d1}, Inserted: make([]bool, 1)}
	if err := s.Commit(ctx, w2); err != nil || w2.Inserted[0] {
		t.Fatalf("re-insert: err %v inserted %v, want no-op", err, w2.Inserted[0])
	}
	if err := s.SetCheckpoint(ctx, "watch", "2025-01-02 03:04:05"); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, Write{Disable: []Disabled{{Name: "cb", Reason: "gone", URL: "http://x", Since: t0}}}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openT(t, path, Options{Exclusive: true}) // migration must be idempotent
	got, err := s.LoadStates(ctx)
	if err != nil || len(got) != 1 || got[0] != states[0] {
		t.Fatalf("LoadStates = %+v, %v; want %+v", got, err, states)
	}
	if v, _ := s.Checkpoint(ctx, "watch"); v != "2025-01-02 03:04:05" {
		t.Fatalf("Checkpoint = %q", v)
	}
	if v, err := s.Checkpoint(ctx, "none"); v != "" || err != nil {
		t.Fatalf("missing Checkpoint = %q, %v", v, err)
	}
	p, err := s.Pending(ctx, "cb", 10)
	if err != nil || len(p) != 2 || p[0].ID != "e1/cb" || p[1].Seq != 2 || len(p[0].Event) == 0 {
		t.Fatalf("Pending = %+v, %v", p, err)
	}
	if !p[0].CreatedAt.Equal(t0) {
		t.Fatalf("CreatedAt = %v, want %v", p[0].CreatedAt, t0)
	}
	dis, _ := s.DisabledCallbacks(ctx)
	if dis["cb"].Reason != "gone" || !dis["cb"].Since.Equal(t0) {
		t.Fatalf("DisabledCallbacks = %+v", dis)
	}
	if err := s.ForgetStates(ctx, []string{"r1"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.LoadStates(ctx); len(got) != 0 {
		t.Fatalf("after ForgetStates: %+v", got)
	}
}

func TestListReplayPrune(t *testing.T) {
	ctx := context.Background()
	s := openT(t, t.TempDir(), Options{})
	var ins []Delivery
	for i, cb := range []string{"a", "a", "b"} {
		d, _ := NewDelivery(ev("e"+string(rune('1'+i)), "r", uint64(i+1), t0.Add(time.Duration(i)*time.Hour)), cb, t0)
		ins = append(ins, d)
	}
	if err := s.Commit(ctx, Write{Insert: ins}); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(10 * time.Hour)
	if err := s.Commit(ctx, Write{Updates: []Update{
		{ID: "e1/a", State: Dead, Attempts: 3, LastError: "HTTP 400", LastStatus: 400, UpdatedAt: now},
		{ID: "e2/a", State: Dead, Attempts: 1, LastError: "HTTP 404", LastStatus: 404, UpdatedAt: now},
		{ID: "e3/b", State: Delivered, Attempts: 1, LastStatus: 200, UpdatedAt: now},
	}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    Filter
		want int
	}{
		{"all", Filter{}, 3},
		{"dead", Filter{State: Dead}, 2},
		{"callback", Filter{Callback: "b"}, 1},
		{"since", Filter{Since: t0.Add(time.Hour)}, 2},
		{"limit", Filter{Limit: 1}, 1},
		{"id", Filter{ID: "e2/a"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.List(ctx, tc.f)
			if err != nil || len(got) != tc.want {
				t.Fatalf("List(%+v) = %d rows, %v; want %d", tc.f, len(got), err, tc.want)
			}
		})
	}
	if _, err := s.List(ctx, Filter{State: "bogus"}); err == nil {
		t.Fatal("List with unknown state: want error")
	}
	if d, _ := s.List(ctx, Filter{ID: "e1/a"}); d[0].LastStatus != 400 || d[0].LastError != "HTTP 400" || d[0].Event != nil {
		t.Fatalf("dead row = %+v", d[0])
	}

	if _, err := s.Replay(ctx, ReplayFilter{}, now); err == nil {
		t.Fatal("empty replay filter: want error")
	}
	if n, err := s.Replay(ctx, ReplayFilter{Since: t0.Add(time.Hour)}, now); err != nil || n != 1 {
		t.Fatalf("Replay since = %d, %v; want 1 (e2/a)", n, err)
	}
	if n, _ := s.Replay(ctx, ReplayFilter{ID: "e3/b"}, now); n != 0 {
		t.Fatalf("Replay of a delivered row = %d, want 0", n)
	}
	p, _ := s.Pending(ctx, "a", 10)
	if len(p) != 1 || p[0].ID != "e2/a" || p[0].Attempts != 0 || !p[0].ReplayedAt.Equal(now) {
		t.Fatalf("after replay pending = %+v", p)
	}
	if n, err := s.Prune(ctx, now.Add(time.Minute)); err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want 1", n, err)
	}
	if n, _ := s.Abandon(ctx, "a", "callback removed", now); n != 1 {
		t.Fatalf("Abandon = %d, want 1", n)
	}
	c, _ := s.CountPending(ctx)
	if len(c) != 0 {
		t.Fatalf("CountPending = %v, want none", c)
	}
}
