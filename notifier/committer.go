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
// (err nil) or failed.
type op struct {
	w     store.Write
	after func(err error)
}

// committer group-commits writes: while one transaction (and its fsync) is
// running, the next writes queue up, and the next transaction takes all of
// them. Under load this amortises the fsync over hundreds of writes without
// adding latency when idle.
type committer struct {
	st       Store
	delay    time.Duration
	maxBatch int

	mu      sync.RWMutex // held shared by submitters, exclusively to stop
	stopped bool
	ops     chan op
	done    chan struct{}
}

func newCommitter(st Store, delay time.Duration) *committer {
	c := &committer{st: st, delay: delay, maxBatch: 2048, ops: make(chan op, 4096), done: make(chan struct{})}
	go c.run()
	return c
}

// submit queues w; after is called from the committer goroutine.
func (c *committer) submit(w store.Write, after func(error)) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.stopped {
		return errCommitterStopped
	}
	c.ops <- op{w: w, after: after}
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
		var timer <-chan time.Time
		if c.delay > 0 {
			timer = time.After(c.delay)
		}
	gather:
		for len(batch) < c.maxBatch {
			select {
			case o, ok := <-c.ops:
				if !ok {
					break gather
				}
				batch = append(batch, o)
			default:
				if timer == nil {
					break gather
				}
				select {
				case o, ok := <-c.ops:
					if !ok {
						break gather
					}
					batch = append(batch, o)
				case <-timer:
					break gather
				}
			}
		}
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
