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
	st         Store
	delay      time.Duration
	deferDelay time.Duration
	maxBatch   int

	mu      sync.RWMutex // held shared by submitters, exclusively to stop
	stopped bool
	ops     chan op
	done    chan struct{}
}

func newCommitter(st Store, delay, deferDelay time.Duration) *committer {
	c := &committer{st: st, delay: delay, deferDelay: deferDelay, maxBatch: 2048,
		ops: make(chan op, 4096), done: make(chan struct{})}
	go c.run()
	return c
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
			return c.st.Commit(ctx, w)
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
		batch := []op{first}
		deferredOnly := first.deferred && c.deferDelay > 0
		var timer *time.Timer
		var expired <-chan time.Time
		setTimer := func(d time.Duration) {
			if timer != nil {
				timer.Stop()
				timer, expired = nil, nil
			}
			if d > 0 {
				timer = time.NewTimer(d)
				expired = timer.C
			}
		}
		if deferredOnly {
			setTimer(c.deferDelay)
		} else {
			setTimer(c.delay)
		}
		add := func(o op) {
			batch = append(batch, o)
			if deferredOnly && !o.deferred {
				// Somebody waits for this one: stop deferring.
				deferredOnly = false
				setTimer(c.delay)
			}
		}
	gather:
		for len(batch) < c.maxBatch {
			select {
			case o, ok := <-c.ops:
				if !ok {
					break gather
				}
				add(o)
			default:
				if expired == nil {
					break gather
				}
				select {
				case o, ok := <-c.ops:
					if !ok {
						break gather
					}
					add(o)
				case <-expired:
					timer, expired = nil, nil
					break gather
				}
			}
		}
		setTimer(0)
		c.flush(batch)
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
		// Isolate the failing write so one bad row cannot fail the others.
		for _, o := range batch {
			e := c.st.Commit(context.Background(), o.w)
			if o.after != nil {
				o.after(e)
			}
		}
		return
	}
	for _, o := range batch {
		if o.after != nil {
			o.after(err)
		}
	}
}
