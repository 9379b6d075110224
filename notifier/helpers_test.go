package notifier

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier/payload"
	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// script decides a result for the n-th attempt (from 1) of an event on a
// callback.
type script func(r send.Request, n int) send.Result

func deliver(send.Request, int) send.Result { return send.Result{Outcome: send.Delivered, Status: 200} }

func fail(status int) script {
	return func(send.Request, int) send.Result {
		o := send.Retryable
		switch {
		case status == 410:
			o = send.Gone
		case status >= 400 && status < 500:
			o = send.Permanent
		}
		return send.Result{Outcome: o, Status: status, Err: fmt.Errorf("HTTP %d", status)}
	}
}

// fakeSender records every attempt and answers per callback from a script
// that tests can swap at any time.
type fakeSender struct {
	mu        sync.Mutex
	scripts   map[string]script
	attempts  map[string]int      // callback/event → attempts
	delivered map[string]int      // callback/event → Delivered results
	order     map[string][]string // callback → delivered event ids, in order
	sent      chan send.Request   // optional, every attempt
}

func newFakeSender() *fakeSender {
	return &fakeSender{scripts: map[string]script{}, attempts: map[string]int{},
		delivered: map[string]int{}, order: map[string][]string{}}
}

func (f *fakeSender) set(cb string, s script) {
	f.mu.Lock()
	f.scripts[cb] = s
	f.mu.Unlock()
}

func (f *fakeSender) Send(ctx context.Context, r send.Request) send.Result {
	if f.sent != nil {
		f.sent <- r
	}
	f.mu.Lock()
	key := r.Callback + "/" + r.EventID
	f.attempts[key]++
	n := f.attempts[key]
	s := f.scripts[r.Callback]
	f.mu.Unlock()
	if s == nil {
		s = deliver
	}
	res := s(r, n)
	if res.Outcome == send.Delivered {
		f.mu.Lock()
		f.delivered[key]++
		f.order[r.Callback] = append(f.order[r.Callback], r.EventID)
		f.mu.Unlock()
	}
	return res
}

func (f *fakeSender) snapshot() (attempts, delivered map[string]int, order map[string][]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	attempts, delivered, order = map[string]int{}, map[string]int{}, map[string][]string{}
	for k, v := range f.attempts {
		attempts[k] = v
	}
	for k, v := range f.delivered {
		delivered[k] = v
	}
	for k, v := range f.order {
		order[k] = append([]string(nil), v...)
	}
	return
}

// matchAll routes every event to every listed callback.
type matchAll []string

func (m matchAll) Match(*event.Event) []string { return m }

// idFormat renders the event id as the body.
type idFormat struct{}

func (idFormat) Format(ev *event.Event) (payload.Message, error) {
	return payload.Message{Body: []byte(ev.ID)}, nil
}

// fastRetry retries after a few milliseconds.
var fastRetry = config.RetryPolicy{InitialInterval: 5 * time.Millisecond, MaxInterval: 20 * time.Millisecond, Multiplier: 2, MaxAge: time.Hour}

func routing(cbs ...config.Callback) *Routing {
	r := &Routing{Routes: map[string]Route{}, Delivery: config.Default().Delivery}
	var names matchAll
	for _, cb := range cbs {
		if cb.URL == "" {
			cb.URL = "http://receiver.test/" + cb.Name
		}
		if cb.Retry == (config.RetryPolicy{}) {
			cb.Retry = fastRetry
		}
		r.Routes[cb.Name] = Route{Callback: cb, Format: idFormat{}}
		names = append(names, cb.Name)
	}
	r.Matcher = names
	return r
}

// harnessStore is what a harness reads of its store directly.
type harnessStore interface {
	Store
	LoadStates(ctx context.Context) ([]event.EntityState, error)
	Checkpoint(ctx context.Context, key string) (string, error)
	CreateListener(ctx context.Context, l store.Listener, perProject int) error
	Close() error
}

// harness is a dispatcher over a real store: SQLite in a temp dir
// (newHarness) or another one (newHarnessOn).
type harness struct {
	t      testing.TB
	path   string
	st     harnessStore
	d      *Dispatcher
	sender *fakeSender
	cancel context.CancelFunc
	done   chan error

	// progress gets a token after every commit and whenever a lane
	// waits: waitFor re-checks its condition then, rather than polling.
	progress chan struct{}
	waits    waitWatch
	bench    bool // no hooks: waitFor only for conditions true at once
}

// signalStore tells the harness after every commit.
type signalStore struct {
	Store
	h *harness
}

func (s signalStore) Commit(ctx context.Context, ws ...store.Write) error {
	err := s.Store.Commit(ctx, ws...)
	s.h.signal()
	return err
}

func (h *harness) signal() {
	select {
	case h.progress <- struct{}{}:
	default:
	}
}

// waitWatch records, per lane, its latest wait (see laneDeps.waiting)
// and wakes waiters.
type waitWatch struct {
	mu      sync.Mutex
	last    map[string]laneWait
	changed chan struct{} // closed and replaced at every report
}

type laneWait struct {
	gen  uint64
	busy int
}

func (w *waitWatch) report(name string, gen uint64, busy int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil {
		w.last = map[string]laneWait{}
	}
	if gen >= w.last[name].gen {
		w.last[name] = laneWait{gen, busy}
	}
	if w.changed != nil {
		close(w.changed)
	}
	w.changed = make(chan struct{})
}

// waitLane wakes lane name and waits until it has looked at its queue
// since and waits, with busy sends and commits under way (busy < 0: any
// number); it returns that number.
func (h *harness) waitLane(name string, busy int) int {
	h.t.Helper()
	l := h.lane(name)
	l.notify()
	want := l.gen.Load()
	timeout := time.After(10 * time.Second)
	w := &h.waits
	for {
		w.mu.Lock()
		got := w.last[name]
		if w.changed == nil {
			w.changed = make(chan struct{})
		}
		ch := w.changed
		w.mu.Unlock()
		if got.gen >= want && (busy < 0 || got.busy == busy) {
			return got.busy
		}
		select {
		case <-ch:
		case <-timeout:
			h.t.Fatalf("lane %s: last wait %+v, want one after notification %d with %d busy", name, got, want, busy)
		}
	}
}

// settle wakes lane name and waits until it has done everything that
// became possible (sends, commits, retries due by the clock) and sits
// idle.
func (h *harness) settle(name string) {
	h.t.Helper()
	h.waitLane(name, 0)
}

// fakeClock is a clock that only moves when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: base} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// advance moves the clock by d and settles lane name.
func (h *harness) advance(c *fakeClock, name string, d time.Duration) {
	h.t.Helper()
	h.setClock(c, name, c.Now().Add(d))
}

// setClock sets the clock to t and settles lane name.
func (h *harness) setClock(c *fakeClock, name string, t time.Time) {
	h.t.Helper()
	c.set(t)
	h.settle(name)
}

func newHarness(t testing.TB, path string, sender *fakeSender, r *Routing, tune func(*Options)) *harness {
	t.Helper()
	if path == "" {
		path = t.TempDir()
	}
	st, err := store.Open(path, store.Options{Exclusive: true})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	h := newHarnessOn(t, st, sender, r, tune)
	h.path = path
	return h
}

// newHarnessOn is newHarness over st, which the harness closes.
func newHarnessOn(t testing.TB, st harnessStore, sender *fakeSender, r *Routing, tune func(*Options)) *harness {
	t.Helper()
	o := Options{Store: st, Sender: sender, Routing: r, BreakerProbeMin: 10 * time.Millisecond}
	if tune != nil {
		tune(&o)
	}
	h := &harness{t: t, st: st, sender: sender, progress: make(chan struct{}, 1)}
	// Benchmarks measure the dispatcher as it runs in production: no
	// test hooks.
	_, h.bench = t.(*testing.B)
	if !h.bench {
		o.Store = signalStore{Store: o.Store, h: h}
	}
	d, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if !h.bench {
		d.laneWaiting = func(name string, gen uint64, busy int) {
			h.waits.report(name, gen, busy)
			h.signal()
		}
	}
	h.d = d
	t.Cleanup(h.stop)
	return h
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.d.Run(ctx) }()
	// Run starts lanes asynchronously; wait until they exist so Accept
	// hands work to them directly (a benchmark, without hooks, spins).
	for h.bench && len(h.d.Status()) != len(h.d.routing.Load().Routes) {
		runtime.Gosched()
	}
	h.waitFor("lanes started", func() bool {
		return len(h.d.Status()) == len(h.d.routing.Load().Routes)
	})
}

// stop ends Run (if started) and closes the store; idempotent.
func (h *harness) stop() {
	if h.cancel != nil {
		h.cancel()
		select {
		case err := <-h.done:
			if err != nil {
				h.t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			h.t.Errorf("Run did not return")
		}
		h.cancel = nil
	}
	if h.st != nil {
		h.st.Close()
		h.st = nil
	}
}

func (h *harness) accept(evs ...event.Event) {
	h.t.Helper()
	if err := h.d.Accept(context.Background(), evs, nil); err != nil {
		h.t.Fatalf("Accept: %v", err)
	}
}

// waitFor waits until cond holds, re-checking it after every commit and
// whenever a lane waits (h.progress).
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	timeout := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-h.progress:
		case <-timeout:
			h.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (h *harness) rows(f store.Filter) []store.Delivery {
	h.t.Helper()
	f.Limit = 100000
	got, err := h.st.List(context.Background(), f)
	if err != nil {
		h.t.Fatalf("List: %v", err)
	}
	return got
}

func (h *harness) count(state store.State) int { return len(h.rows(store.Filter{State: state})) }

func (h *harness) status(cb string) CallbackStatus {
	for _, s := range h.d.Status() {
		if s.Name == cb {
			return s
		}
	}
	h.t.Fatalf("no status for %s", cb)
	return CallbackStatus{}
}

var base = time.Now().UTC().Truncate(time.Millisecond)

// evs makes n events of root, sequences 1..n.
func evs(root string, n int) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		seq := uint64(i + 1)
		out[i] = event.Event{
			ID: fmt.Sprintf("evt_%s_%d", root, seq), Type: event.TaskSucceeded, Sequence: seq,
			RootExecutionID: root, Time: base.Add(time.Duration(seq) * time.Millisecond),
			Task: &event.Task{ID: fmt.Sprintf("%s-t%d", root, seq), State: event.StateSuccess, WorkflowExecutionID: root},
		}
	}
	return out
}
