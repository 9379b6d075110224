// Package ha makes several mistral-tap replicas on one PostgreSQL store act
// as one (docs/ha.md, docs/design.md "Replicas"):
//
//   - Elector campaigns for a lease row; the replica holding it (the leader)
//     runs the tracker, the watcher and the dispatcher. Its term is the
//     fencing token the store checks on every leader write.
//   - Forwarder is every replica's tap observer: it appends observations
//     to the shared queue asynchronously, never blocking the proxy, and
//     holds a bounded buffer while the database is unreachable.
//   - Feed is the leader's consumer of that queue.
//   - GuardSender refuses to start a send without a trusted lease and
//     cancels sends in flight when the lease is lost.
package ha

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// LeaseStore is the lease row's storage; *pgstore.Store implements it.
type LeaseStore interface {
	// Acquire takes or renews the lease (see pgstore.Store.Acquire): the
	// term held, or 0 when another holder's lease is valid.
	Acquire(ctx context.Context, name, holder string, term int64, ttl time.Duration) (int64, error)
	Resign(ctx context.Context, name, holder string, term int64) error
}

// Lease is one term of leadership as seen by its holder.
type Lease struct {
	Term int64
	lost chan struct{}
	once sync.Once
}

// Lost is closed once the holder can no longer trust the lease (a renewal
// did not land in time, or another replica took it over).
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Valid reports whether the lease is still trusted.
func (l *Lease) Valid() bool {
	select {
	case <-l.lost:
		return false
	default:
		return true
	}
}

func (l *Lease) lose() { l.once.Do(func() { close(l.lost) }) }

// ElectorOptions configure an Elector.
type ElectorOptions struct {
	// Store holds the lease. Required.
	Store LeaseStore
	// Name is the lease row's name. Default "leader".
	Name string
	// Holder identifies this replica; unique per process. Required.
	Holder string
	// TTL is the lease duration. Renewed every TTL/3; the holder stops
	// trusting it TTL/5 before it would expire counting from when the
	// renewal was sent; followers try every TTL/5. Default 15s.
	TTL time.Duration
	// Wake, when set, makes a follower try at once (a leader resigned).
	Wake <-chan struct{}
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Elector campaigns for leadership; see Run.
type Elector struct {
	o   ElectorOptions
	mu  sync.Mutex
	cur *Lease
}

// NewElector returns an Elector.
func NewElector(o ElectorOptions) *Elector {
	if o.Name == "" {
		o.Name = "leader"
	}
	if o.TTL <= 0 {
		o.TTL = 15 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Elector{o: o}
}

// Current returns the lease held now, nil when following.
func (e *Elector) Current() *Lease {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cur != nil && !e.cur.Valid() {
		return nil
	}
	return e.cur
}

func (e *Elector) set(l *Lease) {
	e.mu.Lock()
	e.cur = l
	e.mu.Unlock()
}

// Run campaigns until ctx ends. Each time it wins, it calls lead with a
// context that ends when ctx ends or the lease is lost, and keeps renewing
// the lease until lead returns (so a graceful shutdown's last writes are
// still fenced by a valid term); then it resigns, so that a follower takes
// over at once. A lead error other than after a loss ends Run with it.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context, l *Lease) error) error {
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-retry.C:
		case <-e.o.Wake:
		}
		start := e.o.Now()
		actx, cancel := context.WithTimeout(ctx, e.o.TTL/5)
		term, err := e.o.Store.Acquire(actx, e.o.Name, e.o.Holder, 0, e.o.TTL)
		cancel()
		if err != nil && ctx.Err() == nil {
			e.o.Logger.Warn("leader election: database unreachable", "err", err)
		}
		if err != nil || term == 0 {
			resetTimer(retry, e.o.TTL/5)
			continue
		}
		err = e.hold(ctx, start, term, lead)
		if err != nil || ctx.Err() != nil {
			return err
		}
		resetTimer(retry, e.o.TTL/5)
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}

// hold runs lead for one term and renews the lease meanwhile.
func (e *Elector) hold(ctx context.Context, start time.Time, term int64, lead func(context.Context, *Lease) error) error {
	log := e.o.Logger.With("term", term)
	l := &Lease{Term: term, lost: make(chan struct{})}
	e.set(l)
	defer e.set(nil)
	log.Info("elected leader")
	margin := e.o.TTL / 5
	// Trust ends TTL - margin after the last renewal was sent (start),
	// whatever the renewal's round trip took.
	trustLeft := func() time.Duration { return start.Add(e.o.TTL - margin).Sub(e.o.Now()) }
	trust := time.NewTimer(trustLeft())
	defer trust.Stop()
	renew := time.NewTicker(e.o.TTL / 3)
	defer renew.Stop()
	lctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	done := make(chan error, 1)
	go func() { done <- lead(lctx, l) }()
	parent := ctx.Done()
	for {
		select {
		case <-parent:
			parent = nil
			stop() // lead drains; renewing goes on until it returns
		case err := <-done:
			if l.Valid() {
				rctx, cancel := context.WithTimeout(context.Background(), e.o.TTL/5)
				if rerr := e.o.Store.Resign(rctx, e.o.Name, e.o.Holder, term); rerr != nil {
					log.Warn("resigning the lease failed; a follower takes over when it expires", "err", rerr)
				}
				cancel()
				l.lose()
				log.Info("resigned leadership")
			}
			if err != nil && ctx.Err() == nil && lctx.Err() == nil {
				return err
			}
			return nil
		case <-trust.C:
			log.Error("leader lease could not be renewed in time; stepping down")
			l.lose()
			stop()
		case <-renew.C:
			if !l.Valid() {
				continue
			}
			at := e.o.Now()
			rctx, cancel := context.WithDeadline(context.Background(), start.Add(e.o.TTL-margin))
			got, err := e.o.Store.Acquire(rctx, e.o.Name, e.o.Holder, term, e.o.TTL)
			cancel()
			switch {
			case err != nil:
				log.Warn("renewing the leader lease failed", "err", err)
			case got != term:
				log.Error("leader lease taken over; stepping down", "new_term", got)
				l.lose()
				stop()
			default:
				start = at
				resetTimer(trust, trustLeft())
			}
		}
	}
}
