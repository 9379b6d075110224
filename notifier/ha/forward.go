package ha

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// Appender appends observations to the shared queue; *pgstore.Store
// implements it.
type Appender interface {
	AppendObservations(ctx context.Context, replica string, batches [][]event.Observation) error
}

// Completer fetches an execution and, with tasks, its tasks as
// observations; track.FetchFrom's Fetcher is one.
type Completer interface {
	Fetch(ctx context.Context, executionID string, tasks bool) ([]event.Observation, error)
}

// ForwarderOptions configure a Forwarder.
type ForwarderOptions struct {
	// Store is the queue. Required.
	Store Appender
	// Replica names this replica in the queue's rows. Required.
	Replica string
	// MaxBuffered bounds the observations held while the database is
	// unreachable; beyond it the oldest are dropped and counted (the
	// leader's watcher derives what they showed from its checkpoint once
	// the database is back). Default 100000.
	MaxBuffered int
	// Completer, when set, completes a tapped response that shows one
	// execution ended (a POST, PUT or GET of that execution) with its
	// tasks, fetched when the batch is forwarded rather than when the
	// leader consumes it: a single instance's tracker fetches them within
	// milliseconds, and the leader's ~100 ms later may find a task already
	// rerun and miss the failure the client saw. Default nil: the leader
	// fetches, as before.
	Completer Completer
	// Logger; nil discards.
	Logger *slog.Logger
}

// ForwarderStats are counters for metrics.
type ForwarderStats struct {
	Forwarded uint64 // observations appended to the queue
	Dropped   uint64 // observations dropped because the buffer was full
	Buffered  int    // observations waiting
	Failures  uint64 // failed appends (retried)
}

// Forwarder is a replica's tap observer (tap/proxy's Observer and
// BatchObserver): Observe and ObserveAll only append to memory and signal;
// Run appends to the database in batches, so the proxy's responses never
// wait for it.
type Forwarder struct {
	o    ForwarderOptions
	wake chan struct{}

	mu      sync.Mutex
	batches [][]event.Observation
	n       int
	stats   ForwarderStats

	// completed remembers the completions made (Run's goroutine only), so
	// that a retried append or a client polling a finished execution does
	// not fetch again; bounded, oldest forgotten first.
	completed map[string][]event.Observation
	order     []string
}

// NewForwarder returns a Forwarder; call Run.
func NewForwarder(o ForwarderOptions) *Forwarder {
	if o.MaxBuffered <= 0 {
		o.MaxBuffered = 100000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Forwarder{o: o, wake: make(chan struct{}, 1)}
}

// Observe queues one observation; it never blocks.
func (f *Forwarder) Observe(o event.Observation) { f.ObserveAll([]event.Observation{o}) }

// ObserveAll queues the observations of one response; it never blocks.
func (f *Forwarder) ObserveAll(obs []event.Observation) {
	if len(obs) == 0 {
		return
	}
	f.mu.Lock()
	f.batches = append(f.batches, obs)
	f.n += len(obs)
	for f.n > f.o.MaxBuffered && len(f.batches) > 1 {
		f.n -= len(f.batches[0])
		f.stats.Dropped += uint64(len(f.batches[0]))
		f.batches[0] = nil
		f.batches = f.batches[1:]
	}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// WaitFlushed waits until nothing is buffered, up to max or ctx's end.
func (f *Forwarder) WaitFlushed(ctx context.Context, max time.Duration) {
	t := time.NewTimer(max)
	defer t.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for f.Stats().Buffered > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case <-tick.C:
		}
	}
}

// Stats returns a snapshot of the counters.
func (f *Forwarder) Stats() ForwarderStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.stats
	s.Buffered = f.n
	return s
}

// maxAppend bounds the rows of one append.
const maxAppend = 512

// Run appends queued observations until ctx ends, then tries for a few
// seconds to append what is left.
func (f *Forwarder) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	for {
		if backoff > 0 {
			select {
			case <-ctx.Done():
				return f.flush()
			case <-time.After(backoff):
			}
		} else {
			select {
			case <-ctx.Done():
				return f.flush()
			case <-f.wake:
			}
		}
		if f.appendAll(ctx) {
			backoff = 0
		} else {
			// Short: a new leader waits for this buffer before its first
			// poll (see Feed.Drain).
			backoff = min(max(2*backoff, 100*time.Millisecond), time.Second)
		}
	}
}

func (f *Forwarder) flush() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if !f.appendAll(ctx) {
		if s := f.Stats(); s.Buffered > 0 {
			f.o.Logger.Warn("observations not forwarded at shutdown; the leader's watcher derives them", "observations", s.Buffered)
		}
	}
	return nil
}

// appendAll appends everything queued; false after a failure (what failed
// stays queued, in order).
func (f *Forwarder) appendAll(ctx context.Context) bool {
	for {
		f.mu.Lock()
		k := min(len(f.batches), maxAppend)
		take := f.batches[:k:k]
		f.mu.Unlock()
		if k == 0 {
			return true
		}
		send := take
		if f.o.Completer != nil {
			send = make([][]event.Observation, len(take))
			for i, b := range take {
				send[i] = f.complete(ctx, b)
			}
		}
		err := f.o.Store.AppendObservations(ctx, f.o.Replica, send)
		f.mu.Lock()
		if err != nil {
			f.stats.Failures++
			f.mu.Unlock()
			if ctx.Err() == nil {
				f.o.Logger.Warn("forwarding observations failed; buffering", "err", err)
			}
			return false
		}
		// Drop what was appended, unless overflow already dropped some of
		// it meanwhile (then the head moved: drop only what remains).
		for _, b := range take {
			if len(f.batches) > 0 && sameBatch(f.batches[0], b) {
				f.n -= len(b)
				f.stats.Forwarded += uint64(len(b))
				f.batches[0] = nil
				f.batches = f.batches[1:]
			}
		}
		f.mu.Unlock()
	}
}

func sameBatch(a, b []event.Observation) bool {
	return len(a) == len(b) && len(a) > 0 && &a[0] == &b[0]
}

// maxCompleted bounds the completions remembered.
const maxCompleted = 1024

// complete returns b with the tasks of the ended execution it shows, and
// the execution marked TasksFetched, when b is one tapped execution in a
// completed state (see ForwarderOptions.Completer); b itself otherwise, or
// when the fetch fails (the leader's tracker then fetches, as without a
// Completer).
func (f *Forwarder) complete(ctx context.Context, b []event.Observation) []event.Observation {
	if len(b) != 1 || b[0].Source != event.SourceTap || b[0].Execution == nil || !event.Completed(b[0].Execution.State) {
		return b
	}
	x := b[0].Execution
	key := x.ID + "\x00" + x.State + "\x00" + deref(x.UpdatedAt)
	if more, ok := f.completed[key]; ok {
		return withTasks(b[0], more)
	}
	fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	more, err := f.o.Completer.Fetch(fctx, x.ID, true)
	cancel()
	if err != nil {
		f.o.Logger.Debug("completing a tapped execution failed; the leader fetches its tasks", "execution", x.ID, "err", err)
		return b
	}
	if f.completed == nil {
		f.completed = map[string][]event.Observation{}
	}
	if len(f.order) >= maxCompleted {
		delete(f.completed, f.order[0])
		f.order = f.order[1:]
	}
	f.completed[key], f.order = more, append(f.order, key)
	return withTasks(b[0], more)
}

// withTasks is the tapped execution, marked, then what was fetched with it (the
// fetched copy of the execution itself is left out: the tap's sighting is
// the one the client saw, and one batch names an entity once).
func withTasks(tapped event.Observation, fetched []event.Observation) []event.Observation {
	tapped.TasksFetched = true
	out := make([]event.Observation, 0, len(fetched)+1)
	out = append(out, tapped)
	for _, o := range fetched {
		if o.Execution != nil {
			if o.Execution.ID == tapped.Execution.ID {
				continue
			}
			o.TasksFetched = true // a sub-execution: its tasks came too
		}
		out = append(out, o)
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
