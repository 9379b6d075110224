package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore"
	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore/pgtest"
	"github.com/mistral-tap/mistral-tap/notifier/store/storetest"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

func open(t *testing.T, dsn string) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(context.Background(), pgstore.Options{DSN: dsn})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	dsn := pgtest.Database(t)
	open(t, dsn) // migrate once
	storetest.Run(t, func(t *testing.T) storetest.Store {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `TRUNCATE deliveries, entity_states, checkpoints, disabled_callbacks, leases, observations, history, listeners, breakers`); err != nil {
			t.Fatal(err)
		}
		return open(t, dsn)
	})
}

func TestConcurrentOpenMigratesOnce(t *testing.T) {
	dsn := pgtest.Database(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := pgstore.Open(context.Background(), pgstore.Options{DSN: dsn})
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}
}

func TestSchemaNewerThanBinaryIsRefused(t *testing.T) {
	dsn := pgtest.Database(t)
	open(t, dsn).Close()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	newer := pgstore.SchemaVersion() + 3
	if _, err := conn.Exec(ctx, `UPDATE mistral_tap_schema SET version = $1`, newer); err != nil {
		t.Fatal(err)
	}
	_, err = pgstore.Open(ctx, pgstore.Options{DSN: dsn})
	if !errors.Is(err, pgstore.ErrSchemaTooNew) {
		t.Fatalf("Open = %v, want ErrSchemaTooNew", err)
	}
	for _, v := range []string{fmt.Sprintf("version %d", newer), fmt.Sprintf("up to %d", pgstore.SchemaVersion())} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("error %q does not name %q", err, v)
		}
	}
}

func TestPasswordNeverInErrors(t *testing.T) {
	for _, dsn := range []string{
		"postgres://mt:s3cr3tpw@127.0.0.1:1/db?sslmode=disable&connect_timeout=1",
		"host=127.0.0.1 port=1 user=mt password=s3cr3tpw dbname=db sslmode=disable connect_timeout=1",
		"postgres://mt:s3cr3tpw@[::1:bad/db",
	} {
		_, err := pgstore.Open(context.Background(), pgstore.Options{DSN: dsn, ConnectTimeout: time.Second})
		if err == nil {
			t.Fatalf("Open(%q) succeeded", dsn)
		}
		if strings.Contains(err.Error(), "s3cr3tpw") {
			t.Errorf("error leaks the password: %v", err)
		}
		if r := pgstore.RedactDSN(dsn); strings.Contains(r, "s3cr3tpw") {
			t.Errorf("RedactDSN(%q) = %q", dsn, r)
		}
	}
}

func TestLeaseAndFence(t *testing.T) {
	dsn := pgtest.Database(t)
	a, b := open(t, dsn), open(t, dsn)
	ctx := context.Background()
	const ttl = 300 * time.Millisecond
	ta, err := a.Acquire(ctx, "leader", "A", 0, ttl)
	if err != nil || ta != 1 {
		t.Fatalf("A acquires = %d, %v; want term 1", ta, err)
	}
	if tb, err := b.Acquire(ctx, "leader", "B", 0, ttl); err != nil || tb != 0 {
		t.Fatalf("B while A holds = %d, %v; want 0", tb, err)
	}
	if r, err := a.Acquire(ctx, "leader", "A", ta, ttl); err != nil || r != ta {
		t.Fatalf("A renews = %d, %v; want %d", r, err, ta)
	}
	a.SetFence(&pgstore.Fence{Lease: "leader", Holder: "A", Term: ta})
	d, _ := store.NewDelivery(&event.Event{ID: "e1", RootExecutionID: "r", Sequence: 1}, "cb", time.Now())
	if err := a.Commit(ctx, store.Write{Insert: []store.Delivery{d}}); err != nil {
		t.Fatalf("fenced commit while holding: %v", err)
	}
	// A stops renewing; B takes over once the lease expired (DB clock).
	deadline := time.Now().Add(5 * time.Second)
	var tb int64
	for tb == 0 && time.Now().Before(deadline) {
		if tb, err = b.Acquire(ctx, "leader", "B", 0, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if tb != ta+1 {
		t.Fatalf("B's takeover term = %d, want %d", tb, ta+1)
	}
	u := store.Update{ID: d.ID, State: store.Delivered, Attempts: 1, UpdatedAt: time.Now()}
	for name, f := range map[string]func() error{
		"Commit":        func() error { return a.Commit(ctx, store.Write{Updates: []store.Update{u}}) },
		"SetCheckpoint": func() error { return a.SetCheckpoint(ctx, "k", "v") },
		"ForgetStates":  func() error { return a.ForgetStates(ctx, []string{"x"}) },
		"Abandon":       func() error { _, err := a.Abandon(ctx, "cb", "gone", time.Now()); return err },
	} {
		if err := f(); !errors.Is(err, pgstore.ErrFenced) {
			t.Errorf("stale %s = %v, want ErrFenced", name, err)
		}
	}
	got, _ := b.List(ctx, store.Filter{ID: d.ID})
	if len(got) != 1 || got[0].State != store.Pending {
		t.Fatalf("after fenced completion the row is %+v, want still pending", got)
	}
	// A cannot renew its old term; it gets nothing while B holds.
	if r, err := a.Acquire(ctx, "leader", "A", ta, ttl); err != nil || r != 0 {
		t.Fatalf("stale renew = %d, %v; want 0", r, err)
	}
	// B resigns: A takes over at once, under a new term.
	if err := b.Resign(ctx, "leader", "B", tb); err != nil {
		t.Fatal(err)
	}
	if r, err := a.Acquire(ctx, "leader", "A", 0, ttl); err != nil || r != tb+1 {
		t.Fatalf("after resign A gets %d, %v; want %d", r, err, tb+1)
	}
}

func TestObservationsQueue(t *testing.T) {
	dsn := pgtest.Database(t)
	s := open(t, dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := s.Listen(ctx, pgstore.ObservationsChannel)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	x := &event.Execution{ID: "x1", State: event.StateRunning, WorkflowName: "wf"}
	at := time.Date(2026, 1, 1, 0, 0, 0, 5, time.UTC)
	batches := [][]event.Observation{
		{{Source: event.SourceTap, Execution: x, RequestedAt: at}},
		{{Source: event.SourceTap, Task: &event.Task{ID: "t1", State: event.StateSuccess}}, {Source: event.SourceTap, Execution: x}},
	}
	if err := s.AppendObservations(ctx, "r1", batches); err != nil {
		t.Fatal(err)
	}
	if ch, err := l.Wait(ctx); err != nil || ch != pgstore.ObservationsChannel {
		t.Fatalf("Wait = %q, %v", ch, err)
	}
	got, err := s.ReadObservations(ctx, 10, 0)
	if err != nil || len(got) != 2 {
		t.Fatalf("ReadObservations = %+v, %v", got, err)
	}
	if got[0].ID >= got[1].ID || len(got[1].Obs) != 2 || got[0].Obs[0].Execution.WorkflowName != "wf" || !got[0].Obs[0].RequestedAt.Equal(at) {
		t.Fatalf("read back %+v", got)
	}
	if err := s.DeleteObservations(ctx, []int64{got[0].ID}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CountObservations(ctx); err != nil || n != 1 {
		t.Fatalf("CountObservations = %d, %v; want 1", n, err)
	}
}
