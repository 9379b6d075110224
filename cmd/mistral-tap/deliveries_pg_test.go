package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore"
	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore/pgtest"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// TestDeliveriesOnPostgres lists and replays through a configuration with
// store.driver postgres, the DSN from the environment.
func TestDeliveriesOnPostgres(t *testing.T) {
	dsn := pgtest.Database(t)
	ctx := context.Background()
	st, err := pgstore.Open(ctx, pgstore.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ev := &event.Event{ID: "evt_pg", Type: event.TaskFailed, Sequence: 1, RootExecutionID: "r1", Time: now,
		Task: &event.Task{ID: "t1", Name: "migrate", State: "ERROR"}}
	d, _ := store.NewDelivery(ev, "ops", now)
	dead := store.Update{ID: d.ID, State: store.Dead, Attempts: 3, LastStatus: 502, LastError: "bad gateway", UpdatedAt: now}
	if err := st.Commit(ctx, store.Write{Insert: []store.Delivery{d}}, store.Write{Updates: []store.Update{dead}}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	t.Setenv("MT_TEST_PG_DSN", dsn)
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("store:\n  driver: postgres\n  dsn: ${MT_TEST_PG_DSN}\nlisteners:\n  key: deliveries-test-key-0123456789abcdef\n"), 0o600)
	var out, errOut bytes.Buffer
	if code := run([]string{"deliveries", "list", "--config", cfg, "--state", "dead", "--json"}, &out, &errOut); code != 0 {
		t.Fatalf("list: %d %s", code, errOut.String())
	}
	var got store.Delivery
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || got.ID != d.ID || got.LastStatus != 502 {
		t.Fatalf("listing: %s (%v)", out.String(), err)
	}
	out.Reset()
	if code := run([]string{"deliveries", "replay", "--config", cfg, d.ID}, &out, &errOut); code != 0 || out.String() != "replayed 1 delivery(ies)\n" {
		t.Fatalf("replay (%d): %q %s", code, out.String(), errOut.String())
	}
	out.Reset()
	run([]string{"deliveries", "list", "--config", cfg, "--state", "pending"}, &out, &errOut)
	if !strings.Contains(out.String(), d.ID) {
		t.Errorf("not pending after replay: %s", out.String())
	}
}
