package listeners

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/notifier/sign"
	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/tap/event"
	"github.com/mistral-tap/mistral-tap/testenv/receiver"
)

// realPieces are what a pipeline test delivers through: a SQLite store, a
// receiver behind an httptest server, and a sender allowed to reach it;
// all closed when the test ends.
func realPieces(t *testing.T) (*store.Store, *receiver.Receiver, *httptest.Server, *send.Client) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "tap.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rcv := receiver.New()
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	sender, err := send.New(send.Options{AllowNetworks: []string{"127.0.0.0/8"}})
	if err != nil {
		t.Fatal(err)
	}
	return st, rcv, srv, sender
}

// fastBase is a listener base callback whose retries are quick.
func fastBase() config.Callback {
	return config.Callback{Timeout: 5 * time.Second, Ordering: "root", Concurrency: 2,
		Retry: config.RetryPolicy{InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond, Multiplier: 2, MaxAge: time.Minute}}
}

// TestPipeline runs a listener through the real pieces: the handler
// stores it in SQLite, the registry activates it in a running dispatcher
// (History on), events accepted before the registration arrive through the
// backfill and later ones live, in order, signed with the secret the create
// response showed; after the final event the listener removes itself.
func TestPipeline(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	st, rcv, srv, sender := realPieces(t)
	disp, err := notifier.New(notifier.Options{Store: st, Sender: sender, History: true})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, 0)
	e.h.o.Store = st
	e.h.o.Now = time.Now
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	base := fastBase()
	sd := &signalDispatcher{Dispatcher: disp, added: make(chan struct{}, 1), removed: make(chan string, 1)}
	reg, err := NewRegistry(RegistryOptions{Store: st, Dispatcher: sd, Sealer: e.sealer, Base: base, Now: clock, Interval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	disp.SetListenerMatcher(reg)
	runErr := make(chan error, 1)
	go func() { runErr <- disp.Run(ctx) }()

	tr := newTree() // root P: the listener takes the whole tree
	for i := range tr.evs {
		tr.evs[i].Time = time.Now().UTC()
	}
	accept := func(evs []*event.Event) {
		for _, ev := range evs {
			if err := disp.Accept(ctx, []event.Event{*ev}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	accept(tr.evs[:6])
	e.auth.res[Scope{ScopeExecution, "P"}] = fakeResource{project: "proj-a", root: "P"}
	w := e.do("POST", "/v2/listeners", `{"execution_id":"P","events":["*"],"format":"envelope","url":"`+srv.URL+`/hook"}`, "X-Auth-Token", "tok-a")
	if w.Code != 201 {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	var v view
	_ = json.Unmarshal(w.Body.Bytes(), &v)
	reg.SetActive(true)
	go func() { _ = reg.Run(ctx) }()
	reg.Changed()
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	select {
	case <-sd.added:
	case <-wctx.Done():
		t.Fatal("listener not activated")
	}
	accept(tr.evs[6:])
	got, err := rcv.WaitFor(wctx, len(tr.evs))
	if err != nil {
		t.Fatalf("received %d of %d: %v", len(rcv.Requests()), len(tr.evs), err)
	}
	for i, r := range got {
		var body struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(r.Body, &body)
		if body.ID != tr.evs[i].ID {
			t.Fatalf("delivery %d is %s, want %s (backfill then live, in order)", i, body.ID, tr.evs[i].ID)
		}
		if err := sign.Verify([]string{v.Secret}, r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Body,
			r.Header.Get("webhook-signature"), time.Minute, time.Now()); err != nil {
			t.Fatalf("delivery %d: signature: %v", i, err)
		}
	}
	// P's final event was seen; after Settle and once idle, it goes.
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	select {
	case reason := <-sd.removed:
		if reason != "scope finished" {
			t.Fatalf("removed: %s", reason)
		}
	case <-wctx.Done():
		t.Fatal("listener not removed after its scope finished")
	}
	if _, err := st.Listener(ctx, v.ID); err == nil {
		t.Fatal("finished listener still stored")
	}
	cancel()
	if err := <-runErr; err != nil && !strings.Contains(err.Error(), "context canceled") {
		t.Fatal(err)
	}
}

// signalDispatcher tells the test when a route was added or removed.
type signalDispatcher struct {
	*notifier.Dispatcher
	added   chan struct{}
	removed chan string
}

func (s *signalDispatcher) AddListenerWith(ctx context.Context, rt notifier.Route, o notifier.ListenerOptions) (int, error) {
	n, err := s.Dispatcher.AddListenerWith(ctx, rt, o)
	if err == nil {
		s.added <- struct{}{}
	}
	return n, err
}

func (s *signalDispatcher) RemoveListener(name, reason string) {
	s.Dispatcher.RemoveListener(name, reason)
	s.removed <- reason
}
