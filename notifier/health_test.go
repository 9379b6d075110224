package notifier

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier/store"
)

// fullDisk fails every commit that records an outcome while full is set,
// as SQLite does when the disk is full.
type fullDisk struct {
	Store
	full   atomic.Bool
	failed atomic.Int64
}

var errDiskFull = errors.New("store: committing: database or disk is full (13)")

func (f *fullDisk) Commit(ctx context.Context, ws ...store.Write) error {
	if f.full.Load() {
		for _, w := range ws {
			if len(w.Updates) > 0 {
				f.failed.Add(1)
				return errDiskFull
			}
		}
	}
	return f.Store.Commit(ctx, ws...)
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// count returns how many lines contain every one of subs.
func (s *syncBuffer) count(subs ...string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for line := range strings.Lines(s.b.String()) {
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(line, sub)
		}
		if all {
			n++
		}
	}
	return n
}

// Issue 11, defect 7: a delivery sent while the disk is full, whose
// outcome cannot be saved, is not sent again: its outcome is committed
// again with back-off. The condition is logged once, and once more on
// recovery, and StoreHealthy reports it meanwhile.
func TestDiskFullNeitherFloodsReceiverNorLog(t *testing.T) {
	clk := newFakeClock()
	s := newFakeSender()
	logs := &syncBuffer{}
	disk := &fullDisk{}
	disk.full.Store(true)
	h := newHarness(t, "", s, routing(config.Callback{Name: "a"}), func(o *Options) {
		disk.Store = o.Store
		o.Store, o.Now = disk, clk.Now
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	h.start()
	all := append(evs("r1", 2), evs("r2", 2)...)
	h.accept(all...)
	h.settle("a")
	if err := h.d.StoreHealthy(); err == nil || !strings.Contains(err.Error(), "disk is full") {
		t.Fatalf("StoreHealthy with the disk full = %v, want the commit error\n%s", err, logs.b.String())
	}
	for range 120 { // two minutes of a full disk
		h.advance(clk, "a", time.Second)
	}
	attempts, _, _ := s.snapshot()
	want := map[string]int{"a/evt_r1_1": 1, "a/evt_r2_1": 1} // the heads; their successors wait
	for _, e := range all {
		if got := attempts["a/"+e.ID]; got != want["a/"+e.ID] {
			t.Errorf("%s sent %d times while its outcome could not be saved, want %d", e.ID, got, want["a/"+e.ID])
		}
	}
	// Back-off 1, 2, 4, 8, 16, 30, 30… s: a handful of commits per
	// outcome in two minutes, not one a second.
	if n := disk.failed.Load(); n > 2*2*10 {
		t.Errorf("%d failed commits in two minutes for 2 outcomes; want back-off", n)
	}
	if n := logs.count("level=ERROR"); n != 1 {
		t.Errorf("%d ERROR lines while the disk was full, want 1:\n%s", n, logs.b.String())
	}

	disk.full.Store(false)
	h.advance(clk, "a", saveRetryMax)
	h.waitFor("all delivered", func() bool { return h.count(store.Delivered) == len(all) })
	if err := h.d.StoreHealthy(); err != nil {
		t.Fatalf("StoreHealthy after recovery = %v", err)
	}
	if n := logs.count("level=INFO", "store commits again"); n != 1 {
		t.Errorf("%d recovery lines, want 1", n)
	}
	attempts, delivered, _ := s.snapshot()
	for _, e := range all {
		if attempts["a/"+e.ID] != 1 || delivered["a/"+e.ID] != 1 {
			t.Errorf("%s: %d attempts, %d delivered; want each sent once", e.ID, attempts["a/"+e.ID], delivered["a/"+e.ID])
		}
	}
}
