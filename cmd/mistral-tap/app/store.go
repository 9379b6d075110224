package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
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

// openStore opens the configured store; pg is set for PostgreSQL. A
// PostgreSQL server that does not answer yet is waited for (logging every
// attempt) until ctx ends, so that replicas started during a database
// outage do not crash-loop; an invalid DSN or a too new schema fails at
// once.
func openStore(ctx context.Context, cfg *config.Config, log *slog.Logger) (st durable, pg *pgstore.Store, err error) {
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
	o := pgstore.Options{DSN: cfg.Store.DSN, MaxConns: int32(cfg.Store.MaxConns), MinConns: int32(cfg.Store.MinConns),
		ConnectTimeout: cfg.Store.ConnectTimeout, Logger: log.With("component", "store")}
	wait := time.Second
	for {
		pg, err = pgstore.Open(ctx, o)
		if err == nil {
			return pg, pg, nil
		}
		if !retryable(err) || ctx.Err() != nil {
			return nil, nil, fmt.Errorf("app: opening the PostgreSQL store: %w", err)
		}
		log.Warn("PostgreSQL store not reachable yet; waiting", "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("app: opening the PostgreSQL store: %w", err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
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
