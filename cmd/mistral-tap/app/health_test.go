package app

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier/store"
)

// The store's readiness check fails while the dispatcher cannot commit
// (issue 11 defect 7: a full disk left /readyz "ok").
func TestReadinessStoreCheckFailsWhileCommitsFail(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := config.Default()
	cfg.Watch.Interval = 0 // no watcher: the engine check probes instead
	up, _ := url.Parse("http://127.0.0.1:1")
	var draining, full atomic.Bool
	commits := func() error {
		if full.Load() {
			return errors.New("store cannot commit: database or disk is full")
		}
		return nil
	}
	var check func(context.Context) error
	for _, c := range readiness(&cfg, up, st.Health, commits, nil, &atomic.Pointer[pipeline]{}, false, &draining) {
		if c.Name == "store" {
			check = c.Run
		}
	}
	if check == nil {
		t.Fatal("no store check")
	}
	if err := check(context.Background()); err != nil {
		t.Fatalf("store check with commits working = %v", err)
	}
	full.Store(true)
	if err := check(context.Background()); err == nil || !strings.Contains(err.Error(), "cannot commit") {
		t.Fatalf("store check while commits fail = %v, want the commit error", err)
	}
}
