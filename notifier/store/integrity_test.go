package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fill commits n deliveries with sizeable events, so that the database
// spans many pages.
func fill(t *testing.T, s *Store, n int) {
	t.Helper()
	var ins []Delivery
	for i := range n {
		e := ev(fmt.Sprintf("e%05d", i), "r", uint64(i+1), t0)
		info := strings.Repeat("x", 400)
		e.Execution.StateInfo = &info
		d, err := NewDelivery(e, "cb", t0)
		if err != nil {
			t.Fatal(err)
		}
		ins = append(ins, d)
	}
	if err := s.Commit(context.Background(), Write{Insert: ins}); err != nil {
		t.Fatal(err)
	}
}

// newDB creates a closed, used database of n deliveries in a new state
// directory and returns its path.
func newDB(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(path, Options{Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s, n)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// corrupt overwrites the middle half of the file with random bytes (fixed
// seed), as the reproduction did.
func corrupt(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 64<<10 {
		t.Fatalf("database of %d bytes is too small to corrupt its middle only", len(b))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := len(b) / 4; i < 3*len(b)/4; i++ {
		b[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mode(t *testing.T, p string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// Every file under state_dir is 0600, whatever the umask and the mode of a
// pre-existing state directory, and files left by an older version are
// tightened when opened.
func TestFileModes(t *testing.T) {
	old := syscall.Umask(0) // the loosest umask: SQLite alone would create 0644 files
	defer syscall.Umask(old)
	files := []string{"", walSuffix, shmSuffix, lockSuffix}

	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := openT(t, dir, Options{Exclusive: true})
	fill(t, s, 3)
	path := filepath.Join(dir, FileName)
	for _, sfx := range files {
		if m := mode(t, path+sfx); m != fileMode {
			t.Errorf("new %s has mode %v, want %v", path+sfx, m, fileMode)
		}
	}
	s.Close()

	// An older version's files, world-readable.
	for _, sfx := range files {
		if err := os.Chmod(path+sfx, 0o644); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	s = openT(t, dir, Options{Exclusive: true})
	fill(t, s, 1)
	for _, sfx := range files {
		if m := mode(t, path+sfx); m != fileMode {
			t.Errorf("reopened %s has mode %v, want %v", path+sfx, m, fileMode)
		}
	}
}

// A database that is not there, or empty, in a state directory that was
// used is refused (naming the file) and left alone; a new directory is
// initialised.
func TestOpenRefusesLostState(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, path string)
		want   string // in the error; "" means Open must succeed
	}{
		{"new directory", func(t *testing.T, path string) {
			os.RemoveAll(filepath.Dir(path))
		}, ""},
		{"zero-length database", func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}, "is empty (0 bytes)"},
		{"zero-length database, nothing else left", func(t *testing.T, path string) {
			os.Remove(path + lockSuffix)
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}, "is empty (0 bytes)"},
		{"database deleted, marker left", func(t *testing.T, path string) {
			os.Remove(path)
		}, "shows the state directory was in use"},
		{"database deleted, WAL left", func(t *testing.T, path string) {
			os.Remove(path)
			os.Remove(path + lockSuffix)
			if err := os.WriteFile(path+walSuffix, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "its -wal file is there"},
	}
	for _, tt := range tests {
		for _, excl := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/exclusive=%v", tt.name, excl), func(t *testing.T) {
				path := newDB(t, 2)
				tt.break_(t, path)
				before, _ := os.Stat(path)
				s, err := Open(path, Options{Exclusive: excl})
				if tt.want == "" {
					if err != nil {
						t.Fatalf("Open: %v", err)
					}
					s.Close()
					return
				}
				if err == nil {
					s.Close()
					t.Fatal("Open succeeded: a lost state was taken for a fresh one")
				}
				if !errors.Is(err, ErrStateLost) || !strings.Contains(err.Error(), tt.want) ||
					!strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "store reset") {
					t.Fatalf("Open error %q: want ErrStateLost naming %s, saying %q and how to reset", err, path, tt.want)
				}
				after, _ := os.Stat(path)
				if (before == nil) != (after == nil) || (after != nil && after.Size() != before.Size()) {
					t.Errorf("Open changed %s (before %v, after %v)", path, before, after)
				}
			})
		}
	}
}

// A database with random bytes in its middle is refused at Open (the
// dispatcher's) with an error naming it.
func TestOpenRefusesCorruptDatabase(t *testing.T) {
	path := newDB(t, 500)
	corrupt(t, path)
	s, err := Open(path, Options{Exclusive: true})
	if err == nil {
		s.Close()
		t.Fatal("Open accepted a corrupt database")
	}
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open error %q: want ErrCorrupt naming %s", err, path)
	}
}

// Corruption met while running fails Health for good, with one ERROR line
// however often it is met again.
func TestCorruptionAtRuntimeFailsHealth(t *testing.T) {
	path := newDB(t, 500)
	corrupt(t, path)
	var log bytes.Buffer
	// Not Exclusive: no quick_check at Open, so the corruption is met later.
	s := openT(t, path, Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	ctx := context.Background()
	if err := s.Health(ctx); err != nil {
		t.Fatalf("Health before the corruption was met: %v", err)
	}
	for range 3 {
		if _, err := s.Pending(ctx, "cb", 1000); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Pending over corrupt pages: err = %v, want ErrCorrupt", err)
		}
	}
	if err := s.Health(ctx); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Health = %v, want ErrCorrupt naming %s", err, path)
	}
	if n := strings.Count(log.String(), "level=ERROR"); n != 1 {
		t.Fatalf("%d ERROR lines, want 1:\n%s", n, log.String())
	}
}

// Deleting the database files under a running dispatcher is noticed, fails
// Health, is never papered over with a new empty database, and makes the
// next start refuse until the state is reset.
func TestDeletedWhileOpen(t *testing.T) {
	for _, what := range []string{"all files", "database only", "lock only"} {
		t.Run(what, func(t *testing.T) {
			path := newDB(t, 5)
			var log bytes.Buffer
			s, err := Open(path, Options{Exclusive: true, Logger: slog.New(slog.NewTextHandler(&log, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			if err := s.Health(ctx); err != nil {
				t.Fatalf("Health: %v", err)
			}
			switch what {
			case "all files":
				for _, sfx := range []string{"", walSuffix, shmSuffix, lockSuffix} {
					os.Remove(path + sfx)
				}
			case "database only":
				os.Remove(path)
			case "lock only":
				os.Remove(path + lockSuffix)
			}
			// The reader pool opens new connections (forced here by keeping
			// none idle): none may create a file.
			s.r.SetMaxIdleConns(0)
			for range 5 {
				s.List(ctx, Filter{})
				s.Commit(ctx, Write{Checkpoints: []Checkpoint{{"k", "v"}}})
			}
			err = s.Health(ctx)
			if !errors.Is(err, ErrStateLost) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Health = %v, want ErrStateLost naming %s", err, path)
			}
			s.Health(ctx)
			if n := strings.Count(log.String(), "level=ERROR"); n != 1 {
				t.Errorf("%d ERROR lines, want 1:\n%s", n, log.String())
			}
			if what != "lock only" {
				if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s exists again (err %v): the store recreated it", path, err)
				}
			}
			s.Close()

			if s2, err := Open(path, Options{Exclusive: true}); !errors.Is(err, ErrStateLost) {
				if err == nil {
					s2.Close()
				}
				t.Fatalf("reopen after the loss: err = %v, want ErrStateLost", err)
			}
			moved, err := Reset(path, t0)
			if err != nil {
				t.Fatalf("Reset: %v", err)
			}
			for _, m := range moved {
				if !strings.HasSuffix(m, ".reset-20250102T030405Z") {
					t.Errorf("moved to %s", m)
				}
			}
			s3, err := Open(path, Options{Exclusive: true})
			if err != nil {
				t.Fatalf("Open after Reset: %v", err)
			}
			defer s3.Close()
			if err := s3.Health(ctx); err != nil {
				t.Fatalf("Health after Reset: %v", err)
			}
		})
	}
}

// Run notices a deletion by itself, without a Health call.
func TestRunNoticesDeletion(t *testing.T) {
	path := newDB(t, 1)
	var log syncBuffer
	s := openT(t, path, Options{Exclusive: true, CheckInterval: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	os.Remove(path)
	deadline := time.Now().Add(10 * time.Second)
	for s.Failure() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := s.Failure(); !errors.Is(err, ErrStateLost) {
		t.Fatalf("Failure = %v, want ErrStateLost", err)
	}
	if !strings.Contains(log.String(), "level=ERROR") {
		t.Fatalf("no ERROR line:\n%s", log.String())
	}
	if _, err := os.Stat(path + lostSuffix); err != nil {
		t.Fatalf("loss not recorded: %v", err)
	}
}

func TestResetRefusesWhileRunning(t *testing.T) {
	path := newDB(t, 1)
	openT(t, path, Options{Exclusive: true})
	if _, err := Reset(filepath.Dir(path), t0); !errors.Is(err, ErrLocked) {
		t.Fatalf("Reset under a running dispatcher: err = %v, want ErrLocked", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database touched: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger on another goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
