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
	p, feed, err := n.takeOver(ctx, disp, log)
	if err != nil {
		log.Error("taking over failed; stepping down", "err", err)
		return
	}
	n.cur.Store(p)
	defer n.cur.Store(nil)

	s := newTermStages(ctx)
	defer s.cancel()
	n.startTerm(s, p, feed, disp, log)
	select {
	case <-ctx.Done():
	case err := <-s.errs:
		log.Error("leader component failed; stepping down", "err", err)
	}
	n.stopTerm(s)
	log.Info("leader pipeline stopped")
}

// takeOver builds the term's pipeline from what the store holds, with a
// Feed that hands the tracker the shared observations queue (what every
// replica's tap forwarded); the watcher consumes it before each poll.
func (n *haNode) takeOver(ctx context.Context, disp *notifier.Dispatcher, log *slog.Logger) (*pipeline, *ha.Feed, error) {
	var feed *ha.Feed
	p, err := n.pb.build(ctx, func(tr *track.Tracker) watch.Observer {
		feed = ha.NewFeed(ha.FeedOptions{Queue: n.pg, Observer: n.pb.metrics.CountObservations(tr), Barrier: disp,
			Wake: n.feedWake, Logger: log.With("component", "feed")})
		return feed.Before(n.pb.metrics.CountObservations(tr))
	})
	return p, feed, err
}

// termStages are a term's three stages (front: feed, watcher,
// housekeeping; middle: tracker; back: dispatcher), each with its own
// context detached from the term's, so that stopTerm stops them in order
// rather than all at once when the lease is lost.
type termStages struct {
	front, middle, back             context.Context
	stopFront, stopMiddle, stopBack context.CancelFunc
	fw, mw, bw                      sync.WaitGroup
	// errs has room for every component, so none blocks on reporting.
	errs chan error
}

func newTermStages(ctx context.Context) *termStages {
	s := &termStages{errs: make(chan error, 5)}
	s.front, s.stopFront = context.WithCancel(context.WithoutCancel(ctx))
	s.middle, s.stopMiddle = context.WithCancel(context.WithoutCancel(ctx))
	s.back, s.stopBack = context.WithCancel(context.WithoutCancel(ctx))
	return s
}

// cancel releases the stages' contexts (back, middle, front) whatever
// happened; after stopTerm it changes nothing.
func (s *termStages) cancel() {
	s.stopBack()
	s.stopMiddle()
	s.stopFront()
}

// start runs f on wg; its error, or a panic turned into one, goes to errs,
// which ends the term.
func (s *termStages) start(wg *sync.WaitGroup, name string, f func() error) {
	wg.Go(func() {
		defer func() {
			if r := recover(); r != nil {
				s.errs <- fmt.Errorf("%s panicked: %v", name, r)
			}
		}()
		if err := f(); err != nil {
			s.errs <- fmt.Errorf("%s: %w", name, err)
		}
	})
}

// startTerm starts the term's components back to front, as a single
// instance does, and activates the stored listeners once the dispatcher
// runs. The watcher waits until the feed has drained what replicas tapped
// before this term: those observations are older than what the engine
// shows now, and the tracker would drop them as stale after a poll.
func (n *haNode) startTerm(s *termStages, p *pipeline, feed *ha.Feed, disp *notifier.Dispatcher, log *slog.Logger) {
	s.start(&s.bw, "dispatcher", func() error { return disp.Run(s.back) })
	if n.listeners != nil {
		n.listeners.SetActive(true)
	}
	s.start(&s.mw, "tracker", func() error { return p.tr.Run(s.middle) })
	drained := make(chan struct{})
	s.start(&s.fw, "feed", func() error {
		// What replicas tapped before this term goes first (Feed.Drain).
		n.fwd.WaitFlushed(s.front, 2*time.Second)
		if err := feed.Drain(s.front); err != nil && s.front.Err() == nil {
			log.Warn("draining the observations queue failed; the watcher starts anyway", "err", err)
		}
		close(drained)
		return feed.Run(s.front)
	})
	s.start(&s.fw, "watcher", func() error {
		select {
		case <-drained:
		case <-s.front.Done():
			return nil
		}
		return p.w.Run(s.front)
	})
	s.start(&s.fw, "housekeeping", func() error { return p.tr.Housekeep(s.front, n.pb.st, 0, log.With("component", "track")) })
}

// stopTerm stops the stages front to back, each after the one before has
// returned, so that the tracker records what the front handed it and the
// dispatcher delivers what the tracker queued.
func (n *haNode) stopTerm(s *termStages) {
	s.stopFront()
	s.fw.Wait()
	s.stopMiddle()
	s.mw.Wait()
	if n.listeners != nil {
		// Another replica may lead next: this one stops activating
		// before its dispatcher stops.
		n.listeners.SetActive(false)
	}
	s.stopBack()
	s.bw.Wait()
}
