package ha_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/notifier/payload"
	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore/pgtest"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// counter counts sends per event and signals each.
type counter struct {
	mu    sync.Mutex
	n     map[string]int
	order []string
	sent  chan struct{}
}

func (c *counter) Send(_ context.Context, r send.Request) send.Result {
	c.mu.Lock()
	c.n[r.EventID]++
	c.order = append(c.order, r.EventID)
	c.mu.Unlock()
	select {
	case c.sent <- struct{}{}:
	default:
	}
	return send.Result{Outcome: send.Delivered, Status: 204}
}

func (c *counter) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.n)
}

type idBody struct{}

func (idBody) Format(ev *event.Event) (payload.Message, error) {
	return payload.Message{Body: []byte(ev.ID)}, nil
}

type everyListener string

func (l everyListener) Match(*event.Event) []string { return []string{string(l)} }

func rootEvents(root string, from, to int) []event.Event {
	var out []event.Event
	for seq := from; seq <= to; seq++ {
		out = append(out, event.Event{ID: fmt.Sprintf("evt_%s_%03d", root, seq), Type: event.TaskSucceeded,
			Sequence: uint64(seq), RootExecutionID: root, Time: time.Now(),
			Task: &event.Task{ID: fmt.Sprintf("%s-t%d", root, seq), WorkflowExecutionID: root, State: event.StateSuccess}})
	}
	return out
}

// A listener on the shared PostgreSQL store, through a fail-over: leader A
// backfills it and delivers live events; A stops; events accepted by B
// before B's registry adds the listener again are backfilled, and nothing
// A already delivered is sent again.
func TestListenerAcrossFailOverOnPostgres(t *testing.T) {
	dsn := pgtest.Database(t)
	name := notifier.ListenerPrefix + "L"
	route := notifier.Route{Callback: config.Callback{Name: name, URL: "http://receiver.test/l",
		Retry: config.RetryPolicy{InitialInterval: 5 * time.Millisecond, MaxInterval: 20 * time.Millisecond, Multiplier: 2, MaxAge: time.Hour}},
		Format: idBody{}}
	rec := &counter{n: map[string]int{}, sent: make(chan struct{}, 1)}
	waitSent := func(n int) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for rec.distinct() < n {
			select {
			case <-rec.sent:
			case <-timeout:
				t.Fatalf("%d of %d events sent", rec.distinct(), n)
			}
		}
	}
	replica := func() (*notifier.Dispatcher, func()) {
		d, err := notifier.New(notifier.Options{Store: openPG(t, dsn), Sender: rec, History: true,
			Routing: &notifier.Routing{Delivery: config.Default().Delivery}})
		if err != nil {
			t.Fatal(err)
		}
		d.SetListenerMatcher(everyListener(name))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		return d, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	ctx := context.Background()
	add := func(d *notifier.Dispatcher) int {
		t.Helper()
		for {
			n, err := d.AddListener(ctx, route, notifier.RootsOf("r1"), nil)
			if err == nil {
				return n
			}
			if err != notifier.ErrNotRunning {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond) // Run is starting
		}
	}

	a, stopA := replica()
	if err := a.Accept(ctx, rootEvents("r1", 1, 5), nil); err != nil {
		t.Fatal(err)
	}
	if n := add(a); n != 5 {
		t.Fatalf("A backfilled %d, want 5", n)
	}
	if err := a.Accept(ctx, rootEvents("r1", 6, 10), nil); err != nil {
		t.Fatal(err)
	}
	waitSent(10)
	stopA()

	b, stopB := replica()
	defer stopB()
	if err := b.Accept(ctx, rootEvents("r1", 11, 12), nil); err != nil {
		t.Fatal(err)
	}
	if n := add(b); n != 2 {
		t.Fatalf("B backfilled %d, want the 2 accepted before it added the listener", n)
	}
	waitSent(12)
	if !waitIdle(b, name) {
		t.Fatal("listener not idle on B")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for id, n := range rec.n {
		if n != 1 {
			t.Errorf("%s sent %d times, want 1", id, n)
		}
	}
	for i := 1; i < len(rec.order); i++ {
		if rec.order[i] < rec.order[i-1] {
			t.Errorf("out of order: %s after %s", rec.order[i], rec.order[i-1])
		}
	}
	rows, err := openPG(t, dsn).List(ctx, store.Filter{Callback: name, State: store.Delivered, Limit: 100})
	if err != nil || len(rows) != 12 {
		t.Fatalf("delivered rows = %d, %v; want 12", len(rows), err)
	}
}

// waitIdle waits for the listener's outcomes to be saved.
func waitIdle(d *notifier.Dispatcher, name string) bool {
	for range 200 {
		if d.ListenerIdle(name) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}
