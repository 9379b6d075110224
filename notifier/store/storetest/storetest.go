// Package storetest is the contract every durable store of mistral-tap
// satisfies (notifier/store on SQLite, notifier/store/pgstore on
// PostgreSQL): one suite, run by each store's tests against a fresh, empty
// store.
package storetest

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// Store is the method set under contract.
type Store interface {
	Commit(ctx context.Context, writes ...store.Write) error
	Pending(ctx context.Context, callback string, limit int) ([]store.Delivery, error)
	CountPending(ctx context.Context) (map[string]int, error)
	PendingSummary(ctx context.Context, callback string) (int, time.Time, error)
	Abandon(ctx context.Context, callback, reason string, now time.Time) (int, error)
	DisabledCallbacks(ctx context.Context) (map[string]store.Disabled, error)
	Enable(ctx context.Context, name string) error
	List(ctx context.Context, f store.Filter) ([]store.Delivery, error)
	Replay(ctx context.Context, f store.ReplayFilter, now time.Time) (int, error)
	Prune(ctx context.Context, before time.Time) (int, error)
	LoadStates(ctx context.Context) ([]event.EntityState, error)
	ForgetStates(ctx context.Context, ids []string) error
	Checkpoint(ctx context.Context, key string) (string, error)
	SetCheckpoint(ctx context.Context, key, value string) error
	History(ctx context.Context, roots []string) ([]store.Recorded, error)
	OpenRoots(ctx context.Context, since time.Time) ([]string, error)
	RootsSince(ctx context.Context, since time.Time) ([]string, error)
	PruneHistory(ctx context.Context, before time.Time) (int, error)
	CreateListener(ctx context.Context, l store.Listener, perProject int) error
	Listeners(ctx context.Context) ([]store.Listener, error)
	Listener(ctx context.Context, id string) (store.Listener, error)
	DeleteListener(ctx context.Context, id string) (bool, error)
	Breaker(ctx context.Context, callback string) (store.Breaker, bool, error)
}

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func delivery(t *testing.T, id, root string, seq uint64, at time.Time, cb string) store.Delivery {
	t.Helper()
	ev := &event.Event{ID: id, Type: event.WorkflowLaunched, Sequence: seq, RootExecutionID: root, Time: at,
		Execution: &event.Execution{ID: root, State: event.StateRunning}}
	d, err := store.NewDelivery(ev, cb, t0)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func ids(ds []store.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

// Run runs the contract; open returns a fresh, empty store that the
// caller closes.
func Run(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name string
		f    func(t *testing.T, s Store)
	}{
		{"CommitIsIdempotentAndStoresStates", commitIdempotent},
		{"PendingOrderAndSummary", pendingOrder},
		{"UpdatesListReplayPrune", updatesListReplayPrune},
		{"DisableEnableAndReplayReenables", disableEnable},
		{"CheckpointsAndForget", checkpointsAndForget},
		{"Abandon", abandon},
		{"HistoryOrderAndIdempotence", historyOrder},
		{"OpenRootsAndPruneHistory", openRoots},
		{"ListenersCRUD", listenersCRUD},
		{"ListenerCapUnderConcurrency", listenerCap},
		{"BreakersUpsertByCallback", breakers},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, open(t)) })
	}
}

func commitIdempotent(t *testing.T, s Store) {
	ctx := context.Background()
	d1 := delivery(t, "e1", "r1", 1, t0, "cb")
	d2 := delivery(t, "e2", "r1", 2, t0.Add(time.Second), "cb")
	// The request time keeps its nanoseconds: it orders sightings within
	// one second of updated_at.
	st := event.EntityState{Kind: event.KindExecution, ID: "r1", RootID: "r1", State: "RUNNING",
		UpdatedAt: "2025-01-02 03:04:05", RetryCount: 2, LastSeq: 2,
		RequestedAt: time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.UTC), Policies: event.WaitBeforeFired,
		StartedAt: "2025-01-02 03:04:01"}
	w := store.Write{Insert: []store.Delivery{d1, d2}, States: []event.EntityState{st}, Inserted: make([]bool, 2)}
	if err := s.Commit(ctx, w); err != nil {
		t.Fatal(err)
	}
	if !w.Inserted[0] || !w.Inserted[1] {
		t.Fatalf("Inserted = %v, want both new", w.Inserted)
	}
	// The same delivery again, in a batch of two writes: not new, untouched.
	d1b := d1
	d1b.Attempts = 7
	w2 := store.Write{Insert: []store.Delivery{d1b}, Inserted: make([]bool, 1)}
	st.State, st.LastSeq = "SUCCESS", 3
	st.RequestedAt, st.Policies = st.RequestedAt.Add(time.Nanosecond), event.WaitBeforeFired|event.WaitAfterFired|event.WaitAfterPending
	if err := s.Commit(ctx, w2, store.Write{States: []event.EntityState{st}}); err != nil {
		t.Fatal(err)
	}
	if w2.Inserted[0] {
		t.Fatal("re-inserted delivery reported as new")
	}
	got, err := s.List(ctx, store.Filter{ID: d1.ID, WithEvent: true})
	if err != nil || len(got) != 1 {
		t.Fatalf("List by id = %v, %v", got, err)
	}
	if got[0].Attempts != 0 || got[0].Seq != 1 || got[0].RootID != "r1" || got[0].EventType != string(event.WorkflowLaunched) {
		t.Fatalf("stored delivery = %+v", got[0])
	}
	var ev event.Event
	if err := json.Unmarshal(got[0].Event, &ev); err != nil || ev.ID != "e1" {
		t.Fatalf("stored event %s: %v", got[0].Event, err)
	}
	if !got[0].CreatedAt.Equal(t0) || !got[0].NextAt.Equal(t0) {
		t.Fatalf("times = created %v next %v, want %v", got[0].CreatedAt, got[0].NextAt, t0)
	}
	states, err := s.LoadStates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []event.EntityState{st}; !reflect.DeepEqual(states, want) {
		t.Fatalf("LoadStates = %+v, want %+v", states, want)
	}
}

func pendingOrder(t *testing.T, s Store) {
	ctx := context.Background()
	ds := []store.Delivery{
		delivery(t, "b2", "rb", 2, t0.Add(time.Second), "cb"),
		delivery(t, "a1", "ra", 1, t0, "cb"),
		delivery(t, "b1", "rb", 1, t0, "cb"),
		delivery(t, "x1", "rx", 1, t0, "other"),
	}
	if err := s.Commit(ctx, store.Write{Insert: ds}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Pending(ctx, "cb", 10)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a1/cb", "b1/cb", "b2/cb"}; !slices.Equal(ids(got), want) {
		t.Fatalf("Pending = %v, want %v", ids(got), want)
	}
	if len(got[0].Event) == 0 {
		t.Fatal("Pending returned no event JSON")
	}
	if got, _ := s.Pending(ctx, "cb", 2); len(got) != 2 {
		t.Fatalf("Pending limit 2 returned %d", len(got))
	}
	n, replayed, err := s.PendingSummary(ctx, "cb")
	if err != nil || n != 3 || !replayed.IsZero() {
		t.Fatalf("PendingSummary = %d, %v, %v; want 3, zero", n, replayed, err)
	}
	counts, err := s.CountPending(ctx)
	if err != nil || !reflect.DeepEqual(counts, map[string]int{"cb": 3, "other": 1}) {
		t.Fatalf("CountPending = %v, %v", counts, err)
	}
}

func updatesListReplayPrune(t *testing.T, s Store) {
	ctx := context.Background()
	a, b, c := delivery(t, "a", "r", 1, t0, "cb"), delivery(t, "b", "r", 2, t0.Add(time.Hour), "cb"),
		delivery(t, "c", "q", 1, t0, "cb2")
	if err := s.Commit(ctx, store.Write{Insert: []store.Delivery{a, b, c}}); err != nil {
		t.Fatal(err)
	}
	t1 := t0.Add(time.Minute)
	err := s.Commit(ctx, store.Write{Updates: []store.Update{
		{ID: a.ID, State: store.Delivered, Attempts: 1, NextAt: t1, LastStatus: 200, UpdatedAt: t1},
		{ID: b.ID, State: store.Dead, Attempts: 5, NextAt: t1, LastError: "HTTP 500", LastStatus: 500, UpdatedAt: t1.Add(time.Second)},
		{ID: c.ID, State: store.Dead, Attempts: 3, NextAt: t1, LastError: "refused", UpdatedAt: t1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	dead, err := s.List(ctx, store.Filter{State: store.Dead})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{b.ID, c.ID}; !slices.Equal(ids(dead), want) {
		t.Fatalf("List dead = %v, want %v (most recently updated first)", ids(dead), want)
	}
	if dead[0].LastError != "HTTP 500" || dead[0].LastStatus != 500 || dead[0].Attempts != 5 || len(dead[0].Event) != 0 {
		t.Fatalf("dead row = %+v", dead[0])
	}
	for _, tc := range []struct {
		f    store.Filter
		want []string
	}{
		{store.Filter{Callback: "cb"}, []string{b.ID, a.ID}},
		{store.Filter{Since: t0.Add(time.Minute)}, []string{b.ID}},
		{store.Filter{State: store.Delivered}, []string{a.ID}},
		{store.Filter{Limit: 1}, []string{b.ID}},
	} {
		got, err := s.List(ctx, tc.f)
		if err != nil || !slices.Equal(ids(got), tc.want) {
			t.Errorf("List(%+v) = %v, %v; want %v", tc.f, ids(got), err, tc.want)
		}
	}
	if _, err := s.List(ctx, store.Filter{State: "bogus"}); err == nil {
		t.Error("List with an unknown state: no error")
	}
	if _, err := s.Replay(ctx, store.ReplayFilter{}, t1); err == nil {
		t.Error("Replay with an empty filter: no error")
	}
	now := t0.Add(2 * time.Hour)
	n, err := s.Replay(ctx, store.ReplayFilter{Callback: "cb"}, now)
	if err != nil || n != 1 {
		t.Fatalf("Replay callback cb = %d, %v; want 1", n, err)
	}
	p, err := s.Pending(ctx, "cb", 10)
	if err != nil || len(p) != 1 || p[0].ID != b.ID || p[0].Attempts != 0 || !p[0].ReplayedAt.Equal(now) || !p[0].NextAt.Equal(now) {
		t.Fatalf("after replay Pending = %+v, %v", p, err)
	}
	if _, replayed, _ := s.PendingSummary(ctx, "cb"); !replayed.Equal(now) {
		t.Fatalf("PendingSummary replayed = %v, want %v", replayed, now)
	}
	if n, err := s.Replay(ctx, store.ReplayFilter{ID: c.ID, Since: t0.Add(time.Minute)}, now); err != nil || n != 0 {
		t.Fatalf("Replay id+since (since excludes it) = %d, %v; want 0", n, err)
	}
	if n, err := s.Replay(ctx, store.ReplayFilter{ID: c.ID}, now); err != nil || n != 1 {
		t.Fatalf("Replay id = %d, %v; want 1", n, err)
	}
	if n, err := s.Prune(ctx, t1); err != nil || n != 0 {
		t.Fatalf("Prune before the update = %d, %v; want 0", n, err)
	}
	if n, err := s.Prune(ctx, t1.Add(time.Millisecond)); err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want 1", n, err)
	}
	if got, _ := s.List(ctx, store.Filter{ID: a.ID}); len(got) != 0 {
		t.Fatal("pruned row still listed")
	}
}

func disableEnable(t *testing.T, s Store) {
	ctx := context.Background()
	since := t0.Add(time.Minute)
	d := delivery(t, "a", "r", 1, t0, "gone")
	err := s.Commit(ctx, store.Write{
		Insert:  []store.Delivery{d},
		Disable: []store.Disabled{{Name: "gone", Reason: "endpoint answered 410 Gone", URL: "http://x/?token=s", Since: since}},
	})
	if err != nil {
		t.Fatal(err)
	}
	dis, err := s.DisabledCallbacks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]store.Disabled{"gone": {Name: "gone", Reason: "endpoint answered 410 Gone", URL: "http://x/?token=s", Since: since}}
	if !reflect.DeepEqual(dis, want) {
		t.Fatalf("DisabledCallbacks = %+v, want %+v", dis, want)
	}
	if err := s.Enable(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if dis, _ := s.DisabledCallbacks(ctx); len(dis) != 0 {
		t.Fatalf("after Enable: %v", dis)
	}
	// Disabled again; a replay of the callback re-enables it even with no
	// dead letter to replay.
	if err := s.Commit(ctx, store.Write{Disable: []store.Disabled{{Name: "gone", Reason: "410", Since: since}}}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Replay(ctx, store.ReplayFilter{Callback: "gone"}, since); err != nil || n != 0 {
		t.Fatalf("Replay = %d, %v; want 0", n, err)
	}
	if dis, _ := s.DisabledCallbacks(ctx); len(dis) != 0 {
		t.Fatalf("after replay of the callback: still disabled %v", dis)
	}
}

func checkpointsAndForget(t *testing.T, s Store) {
	ctx := context.Background()
	if v, err := s.Checkpoint(ctx, "watch"); err != nil || v != "" {
		t.Fatalf("missing checkpoint = %q, %v", v, err)
	}
	if err := s.SetCheckpoint(ctx, "watch", "2025-01-01 00:00:00"); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, store.Write{Checkpoints: []store.Checkpoint{{Key: "watch", Value: "2025-01-01 00:00:09"}}}); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Checkpoint(ctx, "watch"); err != nil || v != "2025-01-01 00:00:09" {
		t.Fatalf("checkpoint = %q, %v", v, err)
	}
	states := []event.EntityState{
		{Kind: event.KindExecution, ID: "x1", RootID: "x1", State: "SUCCESS", UpdatedAt: "u", LastSeq: 4},
		{Kind: event.KindTask, ID: "t1", RootID: "x1", State: "SUCCESS", UpdatedAt: "u"},
		{Kind: event.KindExecution, ID: "x2", RootID: "x2", State: "RUNNING", UpdatedAt: "u", LastSeq: 1},
	}
	if err := s.Commit(ctx, store.Write{States: states}); err != nil {
		t.Fatal(err)
	}
	if err := s.ForgetStates(ctx, []string{"x1", "t1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.ForgetStates(ctx, nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.LoadStates(ctx)
	if err != nil || len(got) != 1 || got[0].ID != "x2" {
		t.Fatalf("LoadStates after forget = %+v, %v", got, err)
	}
}

func abandon(t *testing.T, s Store) {
	ctx := context.Background()
	a, b := delivery(t, "a", "r", 1, t0, "gone"), delivery(t, "b", "r", 1, t0, "kept")
	if err := s.Commit(ctx, store.Write{Insert: []store.Delivery{a, b}}); err != nil {
		t.Fatal(err)
	}
	n, err := s.Abandon(ctx, "gone", "callback removed", t0.Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("Abandon = %d, %v; want 1", n, err)
	}
	dead, err := s.List(ctx, store.Filter{State: store.Dead})
	if err != nil || len(dead) != 1 || dead[0].ID != a.ID || dead[0].LastError != "callback removed" {
		t.Fatalf("dead after Abandon = %+v, %v", dead, err)
	}
	if c, _ := s.CountPending(ctx); !reflect.DeepEqual(c, map[string]int{"kept": 1}) {
		t.Fatalf("CountPending after Abandon = %v", c)
	}
	// The outcome of a send under way at the removal, decided as a retry
	// and committed after the abandonment, leaves the dead letter alone.
	late := store.Update{ID: a.ID, State: store.Pending, Attempts: 1, LastError: "HTTP 503",
		NextAt: t0.Add(2 * time.Minute), UpdatedAt: t0.Add(2 * time.Minute)}
	if err := s.Commit(ctx, store.Write{Updates: []store.Update{late}}); err != nil {
		t.Fatal(err)
	}
	dead, err = s.List(ctx, store.Filter{Callback: "gone"})
	if err != nil || len(dead) != 1 || dead[0].State != store.Dead || dead[0].LastError != "callback removed" {
		t.Fatalf("a late update revived the dead letter: %+v, %v", dead, err)
	}
}

func breakers(t *testing.T, s Store) {
	ctx := context.Background()
	if b, ok, err := s.Breaker(ctx, "a"); err != nil || ok {
		t.Fatalf("Breaker of a callback never recorded = %+v, %v, %v; want none", b, ok, err)
	}
	open := store.Breaker{Callback: "a", URL: "https://hooks.example/a?token=REDACTED", State: "open", Failures: 5, OpenedAt: t0, NextProbe: t0.Add(2 * time.Second),
		Backoff: 2 * time.Second, UpdatedAt: t0.Add(time.Second)}
	other := store.Breaker{Callback: "b", State: "closed", Failures: 2, UpdatedAt: t0}
	if err := s.Commit(ctx, store.Write{Breakers: []store.Breaker{open, other}}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []store.Breaker{open, other} {
		got, ok, err := s.Breaker(ctx, want.Callback)
		if err != nil || !ok || !reflect.DeepEqual(got, want) {
			t.Fatalf("Breaker(%s) = %+v, %v, %v; want %+v", want.Callback, got, ok, err, want)
		}
	}
	// Later transitions of one callback in one commit: the last one wins.
	half := open
	half.State, half.UpdatedAt = "half-open", t0.Add(3*time.Second)
	closed := store.Breaker{Callback: "a", URL: "https://hooks.example/new", State: "closed", UpdatedAt: t0.Add(4 * time.Second)}
	if err := s.Commit(ctx, store.Write{Breakers: []store.Breaker{half}}, store.Write{Breakers: []store.Breaker{closed}}); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := s.Breaker(ctx, "a"); err != nil || !ok || !reflect.DeepEqual(got, closed) {
		t.Fatalf("Breaker(a) after closing = %+v, %v, %v; want %+v", got, ok, err, closed)
	}
	if got, _, _ := s.Breaker(ctx, "b"); !reflect.DeepEqual(got, other) {
		t.Fatalf("Breaker(b) changed by a's writes: %+v", got)
	}
}
