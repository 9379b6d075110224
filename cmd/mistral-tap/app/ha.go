package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mistral-tap/mistral-tap/cmd/mistral-tap/ops"
	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/notifier/ha"
	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore"
	"github.com/mistral-tap/mistral-tap/tap/track"
	"github.com/mistral-tap/mistral-tap/tap/watch"
)

// leaseName is the leader lease's row.
const leaseName = "leader"

// haNode is one replica on a shared PostgreSQL store (docs/ha.md): its tap
// forwards every observation to the shared queue; while it holds the
// leader lease it also runs the pipeline (watcher, tracker) and the
// dispatcher, fenced by the lease's term.
type haNode struct {
	pg      *pgstore.Store
	id      string
	log     *slog.Logger
	elector *ha.Elector
	fwd     *ha.Forwarder
	pb      pipelineBuilder
	cur     *atomic.Pointer[pipeline]
	// listeners, when the API is on, activates the stored listeners in
	// the dispatcher while this replica leads (its dispatcher runs).
	listeners interface{ SetActive(bool) }
	// schema gates everything above that uses the store (schemaGate).
	schema *schemaGate

	electWake, feedWake chan struct{}
}

func newHANode(cfg *config.Config, pg *pgstore.Store, completer ha.Completer, log *slog.Logger) *haNode {
	id := replicaID()
	log = log.With("replica", id)
	n := &haNode{pg: pg, id: id, log: log, electWake: make(chan struct{}, 1), feedWake: make(chan struct{}, 1)}
	n.elector = ha.NewElector(ha.ElectorOptions{Store: pg, Name: leaseName, Holder: id, TTL: cfg.Store.LeaseTTL,
		Wake: n.electWake, Logger: log.With("component", "elector")})
	n.fwd = ha.NewForwarder(ha.ForwarderOptions{Store: pg, Replica: id, Completer: completer, Logger: log.With("component", "forward")})
	return n
}

// replicaID is unique per process: the host name (the pod's) and a random
// suffix, so that a restarted pod never mistakes its predecessor's lease
// for its own.
func replicaID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "mistral-tap"
	}
	var b [4]byte
	rand.Read(b[:])
	return h + "-" + hex.EncodeToString(b[:])
}

func (n *haNode) stats() ops.ReplicaStats {
	s := n.fwd.Stats()
	r := ops.ReplicaStats{Forwarded: s.Forwarded, Dropped: s.Dropped, Buffered: s.Buffered}
	if l := n.elector.Current(); l != nil {
		r.Leader, r.Term = true, l.Term
	}
	return r
}

// run listens for notifications and campaigns until ctx ends.
func (n *haNode) run(ctx context.Context, disp *notifier.Dispatcher) error {
	var wg sync.WaitGroup
	wg.Go(func() { n.listen(ctx) })
	defer wg.Wait()
	return n.elector.Run(ctx, func(lctx context.Context, l *ha.Lease) error {
		n.lead(lctx, l, disp)
		return nil
	})
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// listen turns NOTIFYs into wake-ups; after a reconnect (notifications may
// have been missed meanwhile) it wakes both consumers once.
func (n *haNode) listen(ctx context.Context) {
	for ctx.Err() == nil {
		l, err := n.pg.Listen(ctx, pgstore.ObservationsChannel, pgstore.LeaderChannel)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		signal(n.feedWake)
		signal(n.electWake)
		for {
			ch, err := l.Wait(ctx)
			if err != nil {
				break
			}
			if ch == pgstore.LeaderChannel {
				signal(n.electWake)
			} else {
				signal(n.feedWake)
			}
		}
		l.Close()
	}
}

// lead runs one term: the store fences every write with the term, the
// pipeline is rebuilt from what the store holds, and the stages stop in
// the single instance's order when the term ends (ctx: lease lost or
// shutdown). Failures step down; the elector campaigns again.
func (n *haNode) lead(ctx context.Context, l *ha.Lease, disp *notifier.Dispatcher) {
	n.pg.SetFence(&pgstore.Fence{Lease: leaseName, Holder: n.id, Term: l.Term})
	log := n.log.With("term", l.Term)
	var feed *ha.Feed
	p, err := n.pb.build(ctx, func(tr *track.Tracker) watch.Observer {
		feed = ha.NewFeed(ha.FeedOptions{Queue: n.pg, Observer: n.pb.metrics.CountObservations(tr), Barrier: disp,
			Wake: n.feedWake, Logger: log.With("component", "feed")})
		return feed.Before(n.pb.metrics.CountObservations(tr))
	})
	if err != nil {
		log.Error("taking over failed; stepping down", "err", err)
		return
	}
	n.cur.Store(p)
	defer n.cur.Store(nil)

	front, stopFront := context.WithCancel(context.WithoutCancel(ctx))
	middle, stopMiddle := context.WithCancel(context.WithoutCancel(ctx))
	back, stopBack := context.WithCancel(context.WithoutCancel(ctx))
	defer stopFront()
	defer stopMiddle()
	defer stopBack()
	errs := make(chan error, 5)
	var fw, mw, bw sync.WaitGroup
	start := func(wg *sync.WaitGroup, name string, f func() error) {
		wg.Go(func() {
			defer func() {
				if r := recover(); r != nil {
					errs <- fmt.Errorf("%s panicked: %v", name, r)
				}
			}()
			if err := f(); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}
	start(&bw, "dispatcher", func() error { return disp.Run(back) })
	if n.listeners != nil {
		n.listeners.SetActive(true)
	}
	start(&mw, "tracker", func() error { return p.tr.Run(middle) })
	drained := make(chan struct{})
	start(&fw, "feed", func() error {
		// What replicas tapped before this term goes first (Feed.Drain).
		n.fwd.WaitFlushed(front, 2*time.Second)
		if err := feed.Drain(front); err != nil && front.Err() == nil {
			log.Warn("draining the observations queue failed; the watcher starts anyway", "err", err)
		}
		close(drained)
		return feed.Run(front)
	})
	start(&fw, "watcher", func() error {
		select {
		case <-drained:
		case <-front.Done():
			return nil
		}
		return p.w.Run(front)
	})
	start(&fw, "housekeeping", func() error { return p.tr.Housekeep(front, n.pb.st, 0, log.With("component", "track")) })
	select {
	case <-ctx.Done():
	case err := <-errs:
		log.Error("leader component failed; stepping down", "err", err)
	}
	stopFront()
	fw.Wait()
	stopMiddle()
	mw.Wait()
	if n.listeners != nil {
		// Another replica may lead next: this one stops activating
		// before its dispatcher stops.
		n.listeners.SetActive(false)
	}
	stopBack()
	bw.Wait()
	log.Info("leader pipeline stopped")
}
