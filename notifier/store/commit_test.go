package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// TestCommitErrorNamesTheFailingWrite: a write the database refuses (here
// a trigger) fails the whole commit with an error naming what was being
// written, and nothing of the commit is kept.
func TestCommitErrorNamesTheFailingWrite(t *testing.T) {
	ctx := context.Background()
	d, _ := NewDelivery(ev("e1", "r1", 1, t0), "cb", t0)
	tests := []struct {
		name    string
		trigger string // the operation refused, as in CREATE TRIGGER
		w       Write
		want    string
	}{
		{"insert", "INSERT ON deliveries", Write{Insert: []Delivery{d}, Inserted: make([]bool, 1)},
			"store: inserting delivery " + d.ID + ": "},
		{"history", "INSERT ON history", Write{Events: []Recorded{{ID: "e1", RootID: "r1", EntityID: "r1", Type: "WORKFLOW_LAUNCHED",
			Seq: 1, CreatedAt: t0, Event: []byte(`{}`)}}}, "store: recording event e1: "},
		{"state", "INSERT ON entity_states", Write{States: []event.EntityState{{Kind: event.KindExecution, ID: "r1", RootID: "r1",
			State: "RUNNING", UpdatedAt: "2025-01-02 03:04:05", LastSeq: 1}}}, "store: saving state of r1: "},
		{"update", "UPDATE ON deliveries", Write{Updates: []Update{{ID: d.ID, State: Delivered, Attempts: 1, UpdatedAt: t0}}},
			"store: updating delivery " + d.ID + ": "},
		{"disable", "INSERT ON disabled_callbacks", Write{Disable: []Disabled{{Name: "cb", Reason: "410", URL: "http://u:secret@x/", Since: t0}}},
			"store: disabling callback cb: "},
		{"checkpoint", "INSERT ON checkpoints WHEN NEW.key = 'k2'", Write{Checkpoints: []Checkpoint{{Key: "k2", Value: "v"}}}, "store: saving checkpoint k2: "},
		{"breaker", "INSERT ON breakers", Write{Breakers: []Breaker{{Callback: "cb", URL: "http://x/", State: "open", OpenedAt: t0,
			NextProbe: t0, Backoff: time.Second, UpdatedAt: t0}}}, "store: saving breaker of cb: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openT(t, t.TempDir(), Options{Exclusive: true})
			// The update needs a pending row to refuse.
			if err := s.commit(ctx, Write{Insert: []Delivery{d}}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.w.ExecContext(ctx, `CREATE TRIGGER refuse BEFORE `+tc.trigger+
				` BEGIN SELECT RAISE(ABORT, 'refused by test'); END`); err != nil {
				t.Fatal(err)
			}
			// A first write in the same commit must be rolled back with it.
			err := s.commit(ctx, Write{Checkpoints: []Checkpoint{{Key: "k1", Value: "v"}}}, tc.w)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) || !strings.Contains(err.Error(), "refused by test") {
				t.Fatalf("commit: err = %v, want %q then the database's refusal", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("commit: error %q shows the URL's password", err)
			}
			if v, err := s.Checkpoint(ctx, "k1"); err != nil || v != "" {
				t.Errorf("checkpoint k1 after failed commit = %q, %v; want rolled back", v, err)
			}
		})
	}
	t.Run("begin", func(t *testing.T) {
		s := openT(t, t.TempDir(), Options{Exclusive: true})
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		err := s.commit(cctx, Write{Checkpoints: []Checkpoint{{Key: "k1", Value: "v"}}})
		if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "store: beginning commit: ") {
			t.Fatalf("commit with cancelled context: err = %v, want store: beginning commit: ...canceled", err)
		}
	})
}
