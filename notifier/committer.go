package notifier

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/store"
)

// errCommitterStopped is returned when a write arrives after Run returned;
// callers then commit directly.
var errCommitterStopped = errors.New("notifier: committer stopped")

// op is one write waiting for the committer; after runs once it is durable
// (err nil) or failed. A deferred op is one nobody waits for (tracker
// states that produced no delivery): it may wait up to the committer's
// deferDelay for company, so that a burst of them shares one transaction.
type op struct {
	w        store.Write
	after    func(err error)
	deferred bool
}

// Writer is what the committer needs from the store: one transaction for
// many writes, durable when it returns nil.
type Writer interface {
	Commit(ctx context.Context, writes ...store.Write) error
}

// committer group-commits writes: while one transaction (and its fsync) is
// running, the next writes queue up, and the next transaction takes all of
// them. Under load this amortises the fsync over hundreds of writes without
// adding latency when idle.
//
// Deferred writes (see op) are the exception: a batch made only of them
// waits up to deferDelay, or until a write somebody waits for arrives and
// takes them along. Ops commit in the order they were submitted, whatever
// their batch, so a deferred write is never durable after a later one.
type committer struct {
	st         Writer
	delay      time.Duration
	deferDelay time.Duration
	maxBatch   int
	// observe gets the result of every transaction (storeHealth).
	observe func(error)
	// timer starts a timer of d; stop cancels it. Real time but in tests.
	timer func(d time.Duration) (expired <-chan time.Time, stop func())

	mu      sync.RWMutex // held shared by submitters, exclusively to stop
	stopped bool
	ops     chan op
	done    chan struct{}
}

// newCommitter starts a committer over st; observe (nil: none) gets the
// result of every transaction.
func newCommitter(st Writer, delay, deferDelay time.Duration, observe func(error)) *committer {
	c := makeCommitter(st, delay, deferDelay, observe)
	go c.run()
	return c
}

// makeCommitter returns a committer that is not running yet.
func makeCommitter(st Writer, delay, deferDelay time.Duration, observe func(error)) *committer {
	if observe == nil {
		observe = func(error) {}
	}
	return &committer{st: st, delay: delay, deferDelay: deferDelay, maxBatch: 2048, observe: observe,
		timer: realTimer, ops: make(chan op, 4096), done: make(chan struct{})}
}

func realTimer(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}

// submit queues w; after is called from the committer goroutine.
func (c *committer) submit(w store.Write, after func(error)) error {
	return c.enqueue(op{w: w, after: after})
}

// submitDeferred queues w as a deferred write; after (which may be nil)
// is called from the committer goroutine once it is durable or failed.
func (c *committer) submitDeferred(w store.Write, after func(error)) error {
	return c.enqueue(op{w: w, after: after, deferred: true})
}

func (c *committer) enqueue(o op) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.stopped {
		return errCommitterStopped
	}
	c.ops <- o
	return nil
}

// commit queues w and waits until it is durable.
func (c *committer) commit(ctx context.Context, w store.Write) error {
	res := make(chan error, 1)
	if err := c.submit(w, func(err error) { res <- err }); err != nil {
		if errors.Is(err, errCommitterStopped) {
			err = c.st.Commit(ctx, w)
			c.observe(err)
			return err
		}
		return err
	}
	// Not selecting on ctx: the write is queued and will be committed
	// anyway; returning early would tell the caller it failed when it may
	// well succeed.
	return <-res
}

// stop flushes queued writes and ends the goroutine.
func (c *committer) stop() {
	c.mu.Lock()
	if !c.stopped {
		c.stopped = true
		close(c.ops)
	}
	c.mu.Unlock()
	<-c.done
}

func (c *committer) run() {
	defer close(c.done)
	for first := range c.ops {
		c.flush(c.gather(first))
	}
}

// gather returns the batch that starts with first: every op already
// queued and, while a delay applies, those that arrive before it expires,
// up to maxBatch. A batch of deferred ops waits deferDelay; the first op
// somebody waits for cuts that to delay.
func (c *committer) gather(first op) []op {
	batch := []op{first}
	deferring := first.deferred && c.deferDelay > 0
	var stop func()
	arm := func(d time.Duration) (expired <-chan time.Time) {
		if stop != nil {
			stop()
			stop = nil
		}
		if d > 0 {
			expired, stop = c.timer(d)
		}
		return expired
	}
	defer arm(0)
	wait := c.delay
	if deferring {
		wait = c.deferDelay
	}
	expired := arm(wait)
	for len(batch) < c.maxBatch {
		o, ok := c.next(expired)
		if !ok {
			break
		}
		batch = append(batch, o)
		if deferring && !o.deferred {
			deferring = false // somebody waits for this one
			expired = arm(c.delay)
		}
	}
	return batch
}

// next returns the next queued op. With expired nil it only takes one
// already queued; otherwise it waits for one until expired fires. ok is
// false when there is none, or the queue is closed.
func (c *committer) next(expired <-chan time.Time) (o op, ok bool) {
	select {
	case o, ok = <-c.ops:
		return o, ok
	default:
	}
	if expired == nil {
		return op{}, false
	}
	select {
	case o, ok = <-c.ops:
		return o, ok
	case <-expired:
		return op{}, false
	}
}

func (c *committer) flush(batch []op) {
	ws := make([]store.Write, len(batch))
	for i, o := range batch {
		ws[i] = o.w
	}
	// Background context: a queued write must land even during shutdown.
	err := c.st.Commit(context.Background(), ws...)
	if err != nil && len(batch) > 1 {
		// Isolate the failing write so one bad row cannot fail the others;
		// the store is healthy if any of them commits.
		errs := make([]error, len(batch))
		for i, o := range batch {
			errs[i] = c.st.Commit(context.Background(), o.w)
			if errs[i] == nil {
				err = nil
			}
		}
		c.observe(err) // before the callbacks: they may ask for it
		for i, o := range batch {
			if o.after != nil {
				o.after(errs[i])
			}
		}
		return
	}
	c.observe(err)
	for _, o := range batch {
		if o.after != nil {
			o.after(err)
		}
	}
}
