package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/store"
)

func listener(id, project string, created time.Time) store.Listener {
	return store.Listener{ID: id, ProjectID: project, Scope: "execution_id", ScopeValue: "x-" + id, RootID: "x-" + id,
		Events: []string{"WORKFLOW_SUCCEEDED", "on-task-complete"},
		// Sealed bytes: not text.
		Spec:      []byte{0, 0xff, 0xfe, 'n', 0x80, byte(len(id))},
		CreatedAt: created, UpdatedAt: created.Add(time.Second)}
}

func listenersCRUD(t *testing.T, s Store) {
	ctx := context.Background()
	a := listener("a", "p1", t0.Add(time.Minute))
	a.ExpiresAt = t0.Add(time.Hour)
	b := listener("b", "p2", t0)
	b.Scope, b.ScopeValue, b.RootID, b.Events = "workflow_name", "deploy_*", "", []string{}
	for _, l := range []store.Listener{a, b} {
		if err := s.CreateListener(ctx, l, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateListener(ctx, listener("a", "p9", t0), 0); err == nil {
		t.Fatal("CreateListener with an existing id: no error")
	}
	got, err := s.Listener(ctx, "a")
	if err != nil || !reflect.DeepEqual(got, a) {
		t.Fatalf("Listener(a) = %+v, %v; want %+v", got, err, a)
	}
	all, err := s.Listeners(ctx)
	if err != nil || !reflect.DeepEqual(all, []store.Listener{b, a}) {
		t.Fatalf("Listeners = %+v, %v; want b, a (by creation)", all, err)
	}
	if _, err := s.Listener(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Listener(nope) = %v, want ErrNotFound", err)
	}
	if ok, err := s.DeleteListener(ctx, "a"); err != nil || !ok {
		t.Fatalf("DeleteListener(a) = %v, %v", ok, err)
	}
	if ok, err := s.DeleteListener(ctx, "a"); err != nil || ok {
		t.Fatalf("DeleteListener(a) again = %v, %v; want false", ok, err)
	}
	if _, err := s.Listener(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted Listener(a) = %v, want ErrNotFound", err)
	}
	if all, _ := s.Listeners(ctx); len(all) != 1 || all[0].ID != "b" {
		t.Fatalf("Listeners after delete = %+v", all)
	}
}

// Concurrent registrations never overshoot the cap; other projects are
// counted apart; a deletion frees a place.
func listenerCap(t *testing.T, s Store) {
	ctx := context.Background()
	const cap, tries = 3, 12
	var wg sync.WaitGroup
	errs := make(chan error, tries)
	for i := range tries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.CreateListener(ctx, listener(fmt.Sprintf("l%02d", i), "p1", t0.Add(time.Duration(i)*time.Second)), cap)
		}()
	}
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrListenerLimit):
			t.Fatalf("CreateListener: %v, want nil or ErrListenerLimit", err)
		}
	}
	if ok != cap {
		t.Fatalf("%d of %d registrations accepted under a cap of %d", ok, tries, cap)
	}
	if err := s.CreateListener(ctx, listener("other", "p2", t0), cap); err != nil {
		t.Fatalf("another project under its own cap: %v", err)
	}
	all, _ := s.Listeners(ctx)
	if len(all) != cap+1 {
		t.Fatalf("%d listeners stored, want %d", len(all), cap+1)
	}
	var victim string
	for _, l := range all {
		if l.ProjectID == "p1" {
			victim = l.ID
		}
	}
	if _, err := s.DeleteListener(ctx, victim); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateListener(ctx, listener("again", "p1", t0), cap); err != nil {
		t.Fatalf("after a deletion: %v", err)
	}
	if err := s.CreateListener(ctx, listener("uncapped", "p1", t0), 0); err != nil {
		t.Fatalf("cap 0: %v", err)
	}
}
