package amqp

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/notifier/payload"
	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// The outbox tests run the real dispatcher and store over this transport:
// what the issue calls "nothing lost, everything delivered once the broker
// is back" is a property of the two together.

type matchAll []string

func (m matchAll) Match(*event.Event) []string { return m }

type outbox struct {
	t    testing.TB
	st   *store.Store
	d    *notifier.Dispatcher
	stop func()
}

func newOutbox(t testing.TB, p *Publisher, cb config.Callback) *outbox {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	f, err := payload.New(payload.Spec{Format: cb.Format, RoutingKey: cb.AMQPSettings().RoutingKey})
	if err != nil {
		t.Fatal(err)
	}
	del := config.Default().Delivery
	del.BreakerProbeMax = 100 * time.Millisecond
	r := &notifier.Routing{Matcher: matchAll{cb.Name}, Delivery: del,
		Routes: map[string]notifier.Route{cb.Name: {Callback: cb, Format: f}}}
	d, err := notifier.New(notifier.Options{Store: st, Sender: notifier.Transports{config.TypeAMQP: p}, Routing: r, BreakerProbeMin: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	o := &outbox{t: t, st: st, d: d}
	var once sync.Once
	o.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			st.Close()
		})
	}
	t.Cleanup(o.stop)
	return o
}

func (o *outbox) count(s store.State) int {
	rows, err := o.st.List(context.Background(), store.Filter{State: s, Limit: 1 << 20})
	if err != nil {
		o.t.Fatal(err)
	}
	return len(rows)
}

func (o *outbox) waitDelivered(n int) {
	o.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for o.count(store.Delivered) < n {
		if time.Now().After(deadline) {
			o.t.Fatalf("%d of %d delivered after 30s (%d dead)", o.count(store.Delivered), n, o.count(store.Dead))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// events makes n events for each of roots root executions.
func events(prefix string, roots, n int) []event.Event {
	var out []event.Event
	for r := range roots {
		root := fmt.Sprintf("%s-root-%d", prefix, r)
		for i := 1; i <= n; i++ {
			out = append(out, event.Event{
				ID: fmt.Sprintf("evt_%s_%d_%d", prefix, r, i), Type: event.TaskSucceeded, Sequence: uint64(i),
				RootExecutionID: root, Time: time.Now().UTC(), Source: event.SourceWatch,
				Task: &event.Task{ID: fmt.Sprintf("%s-t%d", root, i), Name: "t", State: event.StateSuccess,
					WorkflowExecutionID: root, WorkflowName: "wb.wf", ProjectID: "<default-project>", Type: "ACTION"},
			})
		}
	}
	return out
}

func amqpCallback(name string) config.Callback {
	cb := config.Callback{Name: name, Type: config.TypeAMQP, Events: []string{"*"}, Format: "oslo",
		Ordering: "root", Concurrency: 8, Timeout: 5 * time.Second,
		Retry: config.RetryPolicy{InitialInterval: 20 * time.Millisecond, MaxInterval: 200 * time.Millisecond, Multiplier: 2, MaxAge: time.Hour}}
	return cb
}

// TestOutboxThroughOutages: the broker is down when the first events are
// accepted, comes back, and is cut again in the middle of a burst. Every
// event reaches the queue, in order per root execution (first copies;
// a message whose confirm was lost in the cut may arrive twice, with the
// same message_id).
func TestOutboxThroughOutages(t *testing.T) {
	raw := brokerURL(t)
	a := newAdmin(t, raw)
	ex := unique("outbox")
	q := a.exchangeWithQueue(ex)
	px := newProxy(t, target(raw))
	px.cut()
	p := newPublisher(t, map[string]Endpoint{"tap": {URL: px.url(raw), Exchange: ex, Mandatory: true, Persistent: true, ConfirmTimeout: time.Second}})
	o := newOutbox(t, p, amqpCallback("tap"))

	first := events("a", 10, 10)
	if err := o.d.Accept(context.Background(), first, nil); err != nil {
		t.Fatal(err)
	}
	// Wait until attempts have failed against the dead broker.
	deadline := time.Now().Add(10 * time.Second)
	for st := o.d.Status(); len(st) == 0 || st[0].ConsecutiveFailures < 3; st = o.d.Status() {
		if time.Now().After(deadline) {
			t.Fatal("no failed attempts while the broker was down")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := o.count(store.Delivered); n != 0 {
		t.Fatalf("%d delivered while the broker was down", n)
	}
	px.restore()
	o.waitDelivered(len(first))
	// Mid-run: cut the broker while the second burst is being delivered.
	second := events("b", 10, 50)
	if err := o.d.Accept(context.Background(), second, nil); err != nil {
		t.Fatal(err)
	}
	o.waitDelivered(len(first) + 20)
	px.cut()
	deadline = time.Now().Add(10 * time.Second)
	for st := o.d.Status(); st[0].ConsecutiveFailures < 2; st = o.d.Status() {
		if time.Now().After(deadline) {
			t.Fatal("no failed attempts after the cut")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := o.count(store.Delivered); n >= len(first)+len(second) {
		t.Fatalf("everything delivered before the cut (%d); the test proves nothing", n)
	}
	px.restore()
	o.waitDelivered(len(first) + len(second))
	if n := o.count(store.Dead); n != 0 {
		t.Errorf("%d dead letters", n)
	}

	seen := map[string]bool{}
	lastSeq := map[string]int{}
	for {
		d, ok, err := a.ch.Get(q, true)
		a.must(err)
		if !ok {
			break
		}
		if seen[d.MessageId] {
			continue
		}
		seen[d.MessageId] = true
		var prefix string
		var root, seq int
		if _, err := fmt.Sscanf(d.MessageId, "evt_%1s_%d_%d", &prefix, &root, &seq); err != nil {
			t.Fatalf("message id %q: %v", d.MessageId, err)
		}
		key := fmt.Sprintf("%s%d", prefix, root)
		if seq != lastSeq[key]+1 {
			t.Errorf("root %s: event %d arrived after %d", key, seq, lastSeq[key])
		}
		lastSeq[key] = seq
	}
	for _, ev := range append(first, second...) {
		if !seen[ev.ID] {
			t.Errorf("%s never reached the queue", ev.ID)
		}
	}
}
