package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// durable is what the app needs from either store.
type durable interface {
	notifier.Store
	LoadStates(ctx context.Context) ([]event.EntityState, error)
	// Health reports whether the store answers (and, for SQLite, whether
	// its files are in place and sound).
	Health(ctx context.Context) error
	ForgetStates(ctx context.Context, ids []string) error
	Checkpoint(ctx context.Context, key string) (string, error)
	SetCheckpoint(ctx context.Context, key, value string) error
	Close() error
}

var (
	_ durable = (*store.Store)(nil)
	_ durable = (*pgstore.Store)(nil)
)

// openStore opens the configured store; pg is set for PostgreSQL, whose
// pool connects on first use: its schema is the schemaGate's job. Only a
// DSN that does not parse fails here.
func openStore(cfg *config.Config, log *slog.Logger) (st durable, pg *pgstore.Store, err error) {
	if cfg.Store.Driver != config.DriverPostgres {
		if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("app: creating state_dir: %w", err)
		}
		s, err := store.Open(filepath.Join(cfg.StateDir, store.FileName), store.Options{Exclusive: true, Logger: log.With("component", "store")})
		if err != nil {
			return nil, nil, fmt.Errorf("app: opening state in %s: %w", cfg.StateDir, err)
		}
		return s, nil, nil
	}
	pg, err = pgstore.New(pgstore.Options{DSN: cfg.Store.DSN, MaxConns: int32(cfg.Store.MaxConns), MinConns: int32(cfg.Store.MinConns),
		ConnectTimeout: cfg.Store.ConnectTimeout, Logger: log.With("component", "store")})
	if err != nil {
		return nil, nil, fmt.Errorf("app: opening the PostgreSQL store: %w", err)
	}
	return pg, pg, nil
}

// migrator is what the schema gate needs of the store.
type migrator interface {
	Migrate(ctx context.Context) error
}

// schemaGate holds a replica's use of the shared store until the schema
// is this binary's. build tries once: a database that answers is migrated
// (or refused, schema too new) before anything starts, as a single
// instance's SQLite is. A database that does not answer yet does not hold
// the start: the proxy serves, the tap buffers (the forwarder's bound),
// and Run retries with backoff; the forwarder, the replica (election,
// leadership) and the listeners' sync start once it succeeded.
type schemaGate struct {
	m    migrator
	log  *slog.Logger
	wait time.Duration // the first retry's delay, doubling to 30s
	done chan struct{}
	mu   sync.Mutex
	last error // the last failed attempt, for /readyz
}

func newSchemaGate(m migrator, log *slog.Logger) *schemaGate {
	return &schemaGate{m: m, log: log, wait: time.Second, done: make(chan struct{})}
}

// try migrates once; nil closes the gate.
func (g *schemaGate) try(ctx context.Context) error {
	err := g.m.Migrate(ctx)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.last = err; err == nil && !g.ready() {
		close(g.done)
	}
	return err
}

func (g *schemaGate) ready() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// Run retries until the schema is migrated; a permanent error (a schema
// newer than the binary, credentials or database refused) ends it, and
// with it the process, as at a start with the database up.
func (g *schemaGate) Run(ctx context.Context) error {
	wait := g.wait
	for !g.ready() {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		err := g.try(ctx)
		switch {
		case err == nil:
			g.log.Info("PostgreSQL store reachable and migrated; the replica joins")
		case ctx.Err() != nil:
			return nil
		case !retryable(err):
			return fmt.Errorf("app: the PostgreSQL store: %w", err)
		default:
			wait = min(2*wait, 30*time.Second)
			g.log.Warn("PostgreSQL store not reachable yet; proxying meanwhile", "retry_in", wait, "err", err)
		}
	}
	return nil
}

// after runs f once the gate is open (nothing if ctx ends first).
func (g *schemaGate) after(f func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		select {
		case <-g.done:
			return f(ctx)
		case <-ctx.Done():
			return nil
		}
	}
}

// health is the store's readiness check until the gate is open.
func (g *schemaGate) health(ctx context.Context, next func(context.Context) error) error {
	if g.ready() {
		return next(ctx)
	}
	g.mu.Lock()
	last := g.last
	g.mu.Unlock()
	return fmt.Errorf("store not migrated yet: %w", last)
}

// retryable tells a database that does not answer (yet) from a
// configuration or schema problem that waiting will not fix.
func retryable(err error) bool {
	return !pgstore.IsPermanent(err)
}

func storeLabel(cfg *config.Config) string {
	if cfg.Store.Driver == config.DriverPostgres {
		return "postgres " + pgstore.RedactDSN(cfg.Store.DSN)
	}
	return "sqlite " + cfg.StateDir
}
