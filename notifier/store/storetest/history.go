package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// recorded is the history row of an event of type typ about entity in root.
func recorded(t *testing.T, root, entity string, typ event.Type, seq uint64, at time.Time) store.Recorded {
	t.Helper()
	ev := &event.Event{ID: fmt.Sprintf("%s-%d", root, seq), Type: typ, Sequence: seq, RootExecutionID: root, Time: at}
	if typ.Kind() == event.KindTask {
		ev.Task = &event.Task{ID: entity, WorkflowExecutionID: root}
	} else {
		ev.Execution = &event.Execution{ID: entity}
	}
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return store.RecordedOf(ev, body, t0)
}

func recIDs(rs []store.Recorded) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func historyOrder(t *testing.T, s Store) {
	ctx := context.Background()
	// Out of order across writes and roots; committed with the states
	// that produced them, one event also with a delivery.
	b2 := recorded(t, "rb", "rb", event.WorkflowSucceeded, 2, t0.Add(2*time.Second))
	a1 := recorded(t, "ra", "ra", event.WorkflowLaunched, 1, t0)
	b1 := recorded(t, "rb", "rb", event.WorkflowLaunched, 1, t0)
	a2 := recorded(t, "ra", "ta", event.TaskLaunched, 2, t0.Add(time.Second))
	c1 := recorded(t, "rc", "rc", event.WorkflowLaunched, 1, t0)
	st := event.EntityState{Kind: event.KindExecution, ID: "rb", RootID: "rb", State: "SUCCESS", UpdatedAt: "u", LastSeq: 2}
	if err := s.Commit(ctx, store.Write{Events: []store.Recorded{b2, a2}, States: []event.EntityState{st}},
		store.Write{Events: []store.Recorded{a1, b1, c1}, Insert: []store.Delivery{delivery(t, "ra-1", "ra", 1, t0, "cb")}}); err != nil {
		t.Fatal(err)
	}
	// The same id again with another body: left alone.
	a1b := a1
	a1b.Event, a1b.Type = json.RawMessage(`{"changed":true}`), "X"
	if err := s.Commit(ctx, store.Write{Events: []store.Recorded{a1b}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.History(ctx, []string{"rb", "ra", "missing"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ra-1", "ra-2", "rb-1", "rb-2"}; !slices.Equal(recIDs(got), want) {
		t.Fatalf("History = %v, want %v (by root, then sequence)", recIDs(got), want)
	}
	if g := got[0]; g.Type != string(event.WorkflowLaunched) || g.EntityID != "ra" || g.RootID != "ra" || g.Seq != 1 ||
		!g.CreatedAt.Equal(t0) {
		t.Fatalf("History[0] = %+v", g)
	}
	if got[1].EntityID != "ta" || !got[1].CreatedAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("History[1] = %+v", got[1])
	}
	var ev event.Event
	if err := json.Unmarshal(got[0].Event, &ev); err != nil || ev.ID != "ra-1" || ev.Type != event.WorkflowLaunched {
		t.Fatalf("History[0].Event = %s, %v", got[0].Event, err)
	}
	if got, err := s.History(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("History(nil) = %v, %v", got, err)
	}
	// More roots than one query's chunk.
	many := make([]string, 1200)
	for i := range many {
		many[i] = fmt.Sprintf("z%04d", i)
	}
	many[1100] = "rc"
	if got, err := s.History(ctx, many); err != nil || !slices.Equal(recIDs(got), []string{"rc-1"}) {
		t.Fatalf("History(1200 roots) = %v, %v", recIDs(got), err)
	}
}

func openRoots(t *testing.T, s Store) {
	ctx := context.Background()
	evs := []store.Recorded{
		// done: ended.
		recorded(t, "done", "done", event.WorkflowLaunched, 1, t0),
		recorded(t, "done", "done", event.WorkflowSucceeded, 2, t0.Add(time.Minute)),
		// running: only a sub-workflow ended.
		recorded(t, "running", "running", event.WorkflowLaunched, 1, t0),
		recorded(t, "running", "sub", event.WorkflowFailed, 2, t0.Add(time.Minute)),
		// rerun: failed, then re-run: open again.
		recorded(t, "rerun", "rerun", event.WorkflowFailed, 1, t0),
		recorded(t, "rerun", "rerun", event.WorkflowRerun, 2, t0.Add(time.Minute)),
		// old: open, but nothing since the cut-off.
		recorded(t, "old", "old", event.WorkflowLaunched, 1, t0.Add(-time.Hour)),
		// tasks: no event of the root itself (pruned): open.
		recorded(t, "tasks", "t1", event.TaskLaunched, 5, t0),
	}
	if err := s.Commit(ctx, store.Write{Events: evs}); err != nil {
		t.Fatal(err)
	}
	got, err := s.OpenRoots(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"rerun", "running", "tasks"}; !slices.Equal(got, want) {
		t.Fatalf("OpenRoots(t0) = %v, want %v", got, want)
	}
	if got, _ := s.OpenRoots(ctx, t0.Add(-2*time.Hour)); !slices.Equal(got, []string{"old", "rerun", "running", "tasks"}) {
		t.Fatalf("OpenRoots(t0-2h) = %v", got)
	}
	// RootsSince also lists the ended ones ("done"), not the older "old".
	if got, err := s.RootsSince(ctx, t0); err != nil || !slices.Equal(got, []string{"done", "rerun", "running", "tasks"}) {
		t.Fatalf("RootsSince(t0) = %v, %v", got, err)
	}
	if got, _ := s.RootsSince(ctx, t0.Add(2*time.Minute)); len(got) != 0 {
		t.Fatalf("RootsSince(t0+2m) = %v, want none", got)
	}
	n, err := s.PruneHistory(ctx, t0)
	if err != nil || n != 1 {
		t.Fatalf("PruneHistory(t0) = %d, %v; want 1 (only old)", n, err)
	}
	if n, err := s.PruneHistory(ctx, t0.Add(time.Minute)); err != nil || n != 4 {
		t.Fatalf("PruneHistory(t0+1m) = %d, %v; want 4", n, err)
	}
	hist, err := s.History(ctx, []string{"done", "running", "rerun", "old", "tasks"})
	if want := []string{"done-2", "rerun-2", "running-2"}; err != nil || !slices.Equal(recIDs(hist), want) {
		t.Fatalf("History after prune = %v, %v; want %v", recIDs(hist), err, want)
	}
	// running's own launch was pruned: it still counts as open.
	if got, _ := s.OpenRoots(ctx, t0); !slices.Equal(got, []string{"rerun", "running"}) {
		t.Fatalf("OpenRoots after prune = %v", got)
	}
}
