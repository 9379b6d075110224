package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestCommandsGolden(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"validate-bad", []string{"validate", "--config", "../../config/testdata/bad/many.yaml"}, 1},
		{"validate-good", []string{"validate", "--config", "../../config/testdata/good/minimal.yaml"}, 0},
		{"explain-task-failed", []string{"explain", "--config", "testdata/explain.yaml", "--type", "TASK_FAILED", "--workflow", "deploy_app", "--task", "migrate_db"}, 0},
		{"explain-event-json", []string{"explain", "--config", "testdata/explain.yaml", "--workbook", "ops.tools",
			"--event", `{"id": "x", "name": "ops.tools.cleanup", "workflow_name": "ops.tools.cleanup", "workflow_namespace": "prod", "state": "RUNNING", "event": "WORKFLOW_LAUNCHED"}`}, 0},
		{"explain-unknown-event", []string{"explain", "--config", "testdata/explain.yaml", "--type", "TASK_EXPLODED"}, 2},
		{"no-command", nil, 2},
		{"unknown-command", []string{"frobnicate"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tt.args, &out, &errOut)
			if code != tt.code {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tt.code, errOut.String())
			}
			golden(t, tt.name, append(out.Bytes(), errOut.Bytes()...))
		})
	}
}

// TestDeliveriesListAndReplay works on a store like the one `run` leaves,
// as an operator would while the server runs.
func TestDeliveriesListAndReplay(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, store.FileName), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var ins []store.Delivery
	for i, cb := range []string{"ops", "audit"} {
		ev := &event.Event{ID: "evt_" + cb, Type: event.TaskFailed, Sequence: uint64(i + 1), RootExecutionID: "r1", Time: now,
			Task: &event.Task{ID: "t1", Name: "migrate", State: "ERROR"}}
		d, err := store.NewDelivery(ev, cb, now)
		if err != nil {
			t.Fatal(err)
		}
		ins = append(ins, d)
	}
	ctx := context.Background()
	if err := st.Commit(ctx, store.Write{Insert: ins}); err != nil {
		t.Fatal(err)
	}
	dead := store.Update{ID: ins[0].ID, State: store.Dead, Attempts: 7, LastStatus: 500, LastError: "receiver answered 500", UpdatedAt: now}
	if err := st.Commit(ctx, store.Write{Updates: []store.Update{dead}}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	var out, errOut bytes.Buffer
	if code := run([]string{"deliveries", "list", "--state-dir", dir, "--state", "dead", "--json"}, &out, &errOut); code != 0 {
		t.Fatalf("list: %d %s", code, errOut.String())
	}
	var d store.Delivery
	if err := json.Unmarshal(out.Bytes(), &d); err != nil || d.ID != ins[0].ID || d.LastStatus != 500 || d.Attempts != 7 {
		t.Fatalf("dead letter listing: %s (%v)", out.String(), err)
	}
	out.Reset()
	if code := run([]string{"deliveries", "list", "--state-dir", dir}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "receiver answered 500") || !strings.Contains(out.String(), "evt_audit/audit") {
		t.Fatalf("table listing (%d): %s", code, out.String())
	}
	out.Reset()
	if code := run([]string{"deliveries", "replay", "--state-dir", dir, "--callback", "ops"}, &out, &errOut); code != 0 || out.String() != "replayed 1 delivery(ies)\n" {
		t.Fatalf("replay (%d): %q %s", code, out.String(), errOut.String())
	}
	out.Reset()
	run([]string{"deliveries", "list", "--state-dir", dir, "--state", "dead"}, &out, &errOut)
	if strings.Contains(out.String(), "evt_ops") {
		t.Errorf("still dead after replay: %s", out.String())
	}
	if code := run([]string{"deliveries", "replay", "--state-dir", dir}, &out, &errOut); code != 2 {
		t.Errorf("replay without a selector: exit %d, want 2", code)
	}
}
