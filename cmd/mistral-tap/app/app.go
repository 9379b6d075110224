// Package app wires mistral-tap's components into one process: the tapping
// proxy, the watcher, the tracker, the durable dispatcher, the admin and ops
// endpoints and the config reloader. build constructs them from a
// configuration; run starts them in stages and stops the stages in
// dependency order. cmd/mistral-tap only maps flags and signals onto Run
// (and sets process-wide runtime settings, which Run never touches), so
// tests can run the whole product in-process.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"golang.org/x/sync/errgroup"

	"github.com/mistral-tap/mistral-tap/config"
)

// Options configure Run.
type Options struct {
	// Config is the configuration to start with. Required.
	Config *config.Config
	// Source, when it names a file, is watched and reloaded live.
	Source config.Source
	// Logger; nil discards. Its level may be LevelVar (see LogLevel).
	Logger *slog.Logger
	// LogLevel, when set, is adjusted on reload (log.level applies live).
	LogLevel *slog.LevelVar
	// Version is reported in User-Agent and `version`.
	Version string
	// Listener, when set, is used for the proxy instead of listening on
	// Config.Listen (tests pass a pre-bound loopback listener).
	Listener net.Listener
	// Ready, when set, is called with the proxy's address once it accepts
	// connections.
	Ready func(proxyAddr string)
	// Reload, when set, delivers manual reload requests (SIGHUP).
	Reload <-chan struct{}
	// Compiler, when set, is the one whose Check was Source.Check when
	// Config was loaded: Run then uses what it compiled instead of
	// compiling the callbacks again. Nil compiles anew.
	Compiler *Compiler
}

// Run builds every component and runs them until ctx ends, then shuts down
// in dependency order: stop accepting proxy traffic and finish in-flight
// requests, stop the watcher, let the tracker record what it has queued,
// give in-flight deliveries a bounded time, close the store. It returns nil
// after a clean shutdown, and the first component's error otherwise.
func Run(ctx context.Context, o Options) error {
	if o.Config == nil {
		return errors.New("app: no configuration")
	}
	a, err := build(ctx, o)
	if err != nil {
		return err
	}
	defer a.close()
	return a.run(ctx, o)
}

// stage is a set of components that stop together. Each stage has its own
// context, detached from Run's, so that stopping is ordered by run rather
// than by the caller's cancellation reaching every component at once.
type stage struct {
	ctx    context.Context
	cancel context.CancelFunc
	g      errgroup.Group
	failed chan<- error
}

func newStage(parent context.Context, failed chan<- error) *stage {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	return &stage{ctx: ctx, cancel: cancel, failed: failed}
}

// start runs f in the stage. Its error, or a panic turned into one, is
// reported on the stage's failed channel, which makes run shut down.
func (s *stage) start(name string, f func(ctx context.Context) error) {
	s.g.Go(func() error {
		err := guard(name, func() error { return f(s.ctx) })
		if err != nil {
			select {
			case s.failed <- err:
			default:
			}
		}
		return err
	})
}

// stop cancels the stage and waits for all its components to return.
func (s *stage) stop() {
	s.cancel()
	_ = s.g.Wait() // every error was already reported on failed
}

// guard runs f and turns a panic into an error naming the component.
func guard(name string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s panicked: %v", name, r)
		}
	}()
	if err := f(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// run starts the components in three stages and blocks until ctx ends or
// one of them fails. The front stage takes input (proxy, watcher, admin,
// reloader), the middle one derives events (tracker), the back one delivers
// and reports (dispatcher, ops endpoints, which keep answering while the
// others drain so that /readyz can say "draining").
func (a *app) run(ctx context.Context, o Options) error {
	failed := make(chan error, 1)
	front, middle, back := newStage(ctx, failed), newStage(ctx, failed), newStage(ctx, failed)
	defer front.cancel()
	defer middle.cancel()
	defer back.cancel()

	if a.opsLn != nil {
		back.start("ops", func(ctx context.Context) error { return serve(ctx, "ops", a.opsLn, a.opsHandler, a.log) })
	}
	if a.single != nil {
		a.startSingle(front, middle, back)
	} else {
		a.startReplica(middle, back)
	}
	if a.registry != nil {
		// Every replica syncs its registry (Match needs the listeners);
		// it stops after the proxy, before the dispatcher.
		sync := a.registry.Run
		if a.node != nil {
			sync = a.node.schema.after(sync)
		}
		middle.start("listeners", sync)
	}
	a.startFront(front, o.Reload)
	a.logRunning()
	if o.Ready != nil {
		o.Ready(a.ln.Addr().String())
	}
	return a.shutdown(ctx, failed, front, middle, back)
}

// startSingle starts a single instance's pipeline: it owns its store, so
// the dispatcher, tracker and watcher always run here.
func (a *app) startSingle(front, middle, back *stage) {
	p := a.single
	back.start("dispatcher", a.disp.Run)
	if r, ok := a.st.(interface{ Run(context.Context) error }); ok {
		back.start("store", r.Run)
	}
	middle.start("tracker", p.tr.Run)
	if a.registry != nil {
		// A single instance's dispatcher always runs: its registry
		// activates listeners from the start (it retries until the
		// dispatcher accepts them).
		a.registry.SetActive(true)
	}
	front.start("watcher", p.w.Run)
	front.start("housekeeping", func(ctx context.Context) error {
		return p.tr.Housekeep(ctx, a.st, 0, a.log.With("component", "track"))
	})
}

// startReplica starts a replica on the shared store. The proxy stops
// first, the forwarder then flushes what it tapped, and the leader (if this
// replica is it) stops its pipeline in a single instance's order and
// resigns. All three wait for the shared schema (schemaGate): a replica
// started while the database is down proxies meanwhile.
func (a *app) startReplica(middle, back *stage) {
	gate := a.node.schema
	back.start("schema", gate.Run)
	middle.start("forwarder", gate.after(a.node.fwd.Run))
	back.start("replica", gate.after(func(ctx context.Context) error { return a.node.run(ctx, a.disp) }))
}

// startFront starts what takes input: the proxy, the workbook cache, the
// admin endpoint and the reloader (with manual reload requests, if any).
func (a *app) startFront(front *stage, reload <-chan struct{}) {
	front.start("proxy", func(ctx context.Context) error { return a.serveProxy(ctx) })
	front.start("workbooks", a.wb.Run)
	if a.adminLn != nil {
		front.start("admin", func(ctx context.Context) error { return serve(ctx, "admin", a.adminLn, a.adminHandler, a.log) })
	}
	if a.reloader != nil {
		front.start("reloader", a.reloader.Run)
		if reload != nil {
			front.start("reload-signal", func(ctx context.Context) error { return forwardReloads(ctx, reload, a.reloader.Trigger) })
		}
	}
}

// shutdown waits for ctx to end or a component to fail, then stops the
// stages in dependency order: input first, then (once in-flight proxy
// requests have finished) the tracker, then delivery and reporting. It
// returns the failure, if any.
func (a *app) shutdown(ctx context.Context, failed <-chan error, front, middle, back *stage) error {
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-failed:
		a.log.Error("component failed; shutting down", "err", runErr)
	}
	a.log.Info("shutting down")
	a.draining.Store(true)
	front.stop()
	a.px.Wait()
	middle.stop()
	back.stop()
	a.log.Info("stopped")
	return runErr
}

// forwardReloads turns manual reload requests into reloader triggers until
// ctx ends.
func forwardReloads(ctx context.Context, reqs <-chan struct{}, trigger func()) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reqs:
			trigger()
		}
	}
}
