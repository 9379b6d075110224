package listeners

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/tap/event"
	"github.com/mistral-tap/mistral-tap/testenv/receiver"
)

// historyHook is the dispatcher's store with a hook run once, right after
// the first History read (the backfill's).
type historyHook struct {
	*store.Store
	once  sync.Once
	after func()
}

func (h *historyHook) History(ctx context.Context, roots []string) ([]store.Recorded, error) {
	recs, err := h.Store.History(ctx, roots)
	h.once.Do(h.after)
	return recs, err
}

// beforeAdd runs a hook before the dispatcher adds a route: after the
// registry has done what it does before AddListener.
type beforeAdd struct {
	*notifier.Dispatcher
	before func()
	added  chan struct{}
}

func (b *beforeAdd) AddListenerWith(ctx context.Context, rt notifier.Route, o notifier.ListenerOptions) (int, error) {
	b.before()
	n, err := b.Dispatcher.AddListenerWith(ctx, rt, o)
	if err == nil {
		b.added <- struct{}{}
	}
	return n, err
}

// TestSubExecutionWindow: a listener on sub-execution S of root P, through
// the real dispatcher (SQLite, History on). TS (S's task) is accepted after
// the registry could read the history and before the route is live; SS's
// first event (SS is started by TS) is accepted live, after the backfill
// read the history. SS is in S's subtree: its event must be delivered,
// although it is in neither the backfill's read nor matched by a listener
// that had already learnt TS when it was accepted, unless the subtree is
// learnt before any Accept is matched against the route.
func TestSubExecutionWindow(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	st, rcv, srv, sender := realPieces(t)
	tr := newTree()
	for i := range tr.evs {
		tr.evs[i].Time = time.Now().UTC()
	}
	var disp *notifier.Dispatcher
	accept := func(evs ...*event.Event) {
		for _, ev := range evs {
			if err := disp.Accept(ctx, []event.Event{*ev}, nil); err != nil {
				t.Errorf("accepting %s: %v", ev.ID, err)
			}
		}
	}
	hist := &historyHook{Store: st, after: func() { accept(tr.evs[4]) }} // SS launched, live
	var err error
	disp, err = notifier.New(notifier.Options{Store: hist, Sender: sender, History: true})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, 0)
	e.h.o.Store = st
	e.h.o.Now = time.Now
	base := fastBase()
	var once sync.Once
	bd := &beforeAdd{Dispatcher: disp, added: make(chan struct{}, 1),
		before: func() { once.Do(func() { accept(tr.evs[3]) }) }} // TS launched, in the window
	reg, err := NewRegistry(RegistryOptions{Store: st, Dispatcher: bd, Sealer: e.sealer, Base: base, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	disp.SetListenerMatcher(reg)
	runErr := make(chan error, 1)
	go func() { runErr <- disp.Run(ctx) }()

	accept(tr.evs[:3]...) // P, T1, S launched: history before the registration
	e.auth.res[Scope{ScopeExecution, "S"}] = fakeResource{project: "proj-a", root: "P"}
	w := e.do("POST", "/v2/listeners", `{"execution_id":"S","events":["*"],"format":"envelope","url":"`+srv.URL+`/hook"}`, "X-Auth-Token", "tok-a")
	if w.Code != 201 {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	reg.SetActive(true)
	go func() { _ = reg.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	select {
	case <-bd.added:
	case <-wctx.Done():
		t.Fatal("listener not activated")
	}
	accept(tr.evs[5:13]...) // the rest of S's subtree, up to S's end
	last := tr.evs[12].ID
	got, err := rcv.WaitUntil(wctx, func(rs []receiver.Request) bool { return slices.Contains(deliveredIDs(rs), last) })
	if err != nil {
		t.Fatalf("S's end not delivered: %v (got %v)", err, deliveredIDs(got))
	}
	var want []string
	for _, i := range []int{2, 3, 4, 5, 9, 10, 11, 12} {
		want = append(want, tr.evs[i].ID)
	}
	if ids := deliveredIDs(got); !slices.Equal(ids, want) {
		t.Fatalf("delivered\n %v\nwant S's subtree in order\n %v", ids, want)
	}
	cancel()
	<-runErr
}

func deliveredIDs(rs []receiver.Request) []string {
	var ids []string
	for _, r := range rs {
		var body struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(r.Body, &body)
		ids = append(ids, body.ID)
	}
	return ids
}
