package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore"
)

// scriptedMigrator answers Migrate with its errors in turn, then nil.
type scriptedMigrator struct {
	errs  []error
	calls chan int
	n     int
}

func (m *scriptedMigrator) Migrate(context.Context) error {
	m.n++
	m.calls <- m.n
	if m.n <= len(m.errs) {
		return m.errs[m.n-1]
	}
	return nil
}

// TestSchemaGate: the gate opens after the first successful migration,
// holds what waits on it until then, reports the last failure on /readyz,
// and ends Run with an error that waiting will not fix.
func TestSchemaGate(t *testing.T) {
	down := errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")
	tooNew := fmt.Errorf("%w: database x has schema version 9, this binary knows up to 4", pgstore.ErrSchemaTooNew)
	for _, tc := range []struct {
		name     string
		errs     []error
		wantErr  error // of Run
		wantRuns bool  // whether the gated function runs
	}{
		{"up at once", nil, nil, true},
		{"down, then up", []error{down, down}, nil, true},
		{"down, then too new", []error{down, tooNew}, pgstore.ErrSchemaTooNew, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &scriptedMigrator{errs: tc.errs, calls: make(chan int, 10)}
			g := newSchemaGate(m, slog.New(slog.DiscardHandler))
			g.wait = time.Millisecond
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			first := g.try(ctx)
			if first != nil {
				err := g.health(ctx, func(context.Context) error { return nil })
				if err == nil || !strings.Contains(err.Error(), "not migrated yet") || !strings.Contains(err.Error(), "connection refused") {
					t.Errorf("health before the migration: %v", err)
				}
			}
			ran := make(chan struct{})
			gated := g.after(func(context.Context) error { close(ran); return nil })
			returned := make(chan error, 1)
			go func() { returned <- gated(ctx) }()
			if first != nil {
				select {
				case <-ran:
					t.Fatal("the gated function ran before the migration")
				default:
				}
			}
			err := g.Run(ctx)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("Run: %v, want %v", err, tc.wantErr)
			}
			if tc.wantRuns {
				<-ran // never returns if the gate stays shut: the test times out
				if err := g.health(ctx, func(context.Context) error { return nil }); err != nil {
					t.Errorf("health after the migration: %v", err)
				}
			} else {
				cancel()
				<-returned
				select {
				case <-ran:
					t.Error("the gated function ran although the schema was refused")
				default:
				}
			}
			if want := len(tc.errs) + 1; tc.wantRuns && m.n != want {
				t.Errorf("%d migrations, want %d", m.n, want)
			}
		})
	}
}
