package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func cfgYAML(listen string) string {
	return fmt.Sprintf("listen: %s\ncallbacks:\n  - name: a\n    events: [\"*\"]\n    url: http://127.0.0.1:1/\n", listen)
}

const invalidYAML = "callbacks:\n  - name: a\n    events: [\"*\"]\n    url: http://127.0.0.1:1/\n    concurrency: -2\n"

// startReloader runs a Reloader on the file at path (or the symlink) and
// returns a channel of applied configs and one of attempt outcomes.
func startReloader(t *testing.T, path string) (*Reloader, chan *Config, chan error) {
	t.Helper()
	applied := make(chan *Config, 16)
	outcomes := make(chan error, 16)
	r := NewReloader(Source{Path: path, Environ: environ()}, func(c *Config) error { applied <- c; return nil }, nil)
	r.PollInterval = time.Hour // the tests below must pass through the watch or Trigger
	r.Debounce = 20 * time.Millisecond
	r.Observe = func(err error) { outcomes <- err }
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	<-applied
	<-outcomes
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r, applied, outcomes
}

func waitApplied(t *testing.T, applied chan *Config, listen string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case c := <-applied:
			if c.Listen == listen {
				return
			}
		case <-timeout:
			t.Fatalf("config with listen %s not applied within 5s", listen)
		}
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReloadPaths(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, dir, path, content string)
	}{
		{"in-place write", func(t *testing.T, dir, path, content string) { write(t, path, content) }},
		{"write tmp and rename over", func(t *testing.T, dir, path, content string) {
			tmp := filepath.Join(dir, ".tmp")
			write(t, tmp, content)
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}},
		{"delete and recreate", func(t *testing.T, dir, path, content string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			time.Sleep(30 * time.Millisecond) // let the watch see the removal before the file returns
			write(t, path, content)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "c.yaml")
			write(t, path, cfgYAML("127.0.0.1:9001"))
			r, applied, _ := startReloader(t, path)
			tt.change(t, dir, path, cfgYAML("127.0.0.1:9002"))
			waitApplied(t, applied, "127.0.0.1:9002")
			// A second change goes through too (the watch was re-armed).
			tt.change(t, dir, path, cfgYAML("127.0.0.1:9003"))
			waitApplied(t, applied, "127.0.0.1:9003")
			// apply runs before Current is swapped: wait for the swap.
			deadline := time.Now().Add(2 * time.Second)
			for r.Current().Listen != "127.0.0.1:9003" && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if got := r.Current().Listen; got != "127.0.0.1:9003" {
				t.Errorf("Current().Listen = %s", got)
			}
		})
	}
}

// TestReloadConfigMapSwap mimics a Kubernetes ConfigMap volume: c.yaml ->
// ..data/c.yaml, ..data -> ..<timestamp> swapped atomically.
func TestReloadConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	mk := func(gen int, content string) {
		d := filepath.Join(dir, fmt.Sprintf("..gen%d", gen))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(d, "c.yaml"), content)
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(d), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if gen > 1 {
			os.RemoveAll(filepath.Join(dir, fmt.Sprintf("..gen%d", gen-1)))
		}
	}
	mk(1, cfgYAML("127.0.0.1:9001"))
	path := filepath.Join(dir, "c.yaml")
	if err := os.Symlink("..data/c.yaml", path); err != nil {
		t.Fatal(err)
	}
	_, applied, _ := startReloader(t, path)
	mk(2, cfgYAML("127.0.0.1:9002"))
	waitApplied(t, applied, "127.0.0.1:9002")
	mk(3, cfgYAML("127.0.0.1:9003"))
	waitApplied(t, applied, "127.0.0.1:9003")
}

func TestReloadInvalidKeepsOld(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	write(t, path, cfgYAML("127.0.0.1:9001"))
	r, applied, outcomes := startReloader(t, path)
	write(t, path, invalidYAML)
	select {
	case err := <-outcomes:
		if err == nil || len(Problems(err)) != 1 {
			t.Fatalf("reload of an invalid file: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reload attempt within 5s")
	}
	if got := r.Current().Listen; got != "127.0.0.1:9001" {
		t.Errorf("Current().Listen = %s after an invalid file", got)
	}
	select {
	case c := <-applied:
		t.Fatalf("invalid config applied: %+v", c)
	default:
	}
	write(t, path, cfgYAML("127.0.0.1:9004"))
	waitApplied(t, applied, "127.0.0.1:9004")
}

func TestReloadTriggerAndUnchanged(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	secret := filepath.Join(dir, "s.txt")
	write(t, secret, "one\n")
	content := cfgYAML("127.0.0.1:9001") + "    secret_file: s.txt\n"
	write(t, path, content)
	r, applied, outcomes := startReloader(t, path)

	// Trigger with nothing changed: an attempt, no apply.
	r.Trigger()
	select {
	case err := <-outcomes:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Trigger caused no reload attempt")
	}
	select {
	case c := <-applied:
		t.Fatalf("unchanged config applied again: %+v", c.Listen)
	default:
	}
	// A rotated secret file is a change although c.yaml is not.
	write(t, secret, "two\n")
	r.Trigger()
	timeout := time.After(5 * time.Second)
	select {
	case c := <-applied:
		if c.Callbacks[0].Secret != "two" {
			t.Errorf("secret = %q, want two", c.Callbacks[0].Secret)
		}
	case <-timeout:
		t.Fatal("rotated secret not applied")
	}
}

func TestReloadPoll(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	write(t, path, cfgYAML("127.0.0.1:9001"))
	applied := make(chan *Config, 4)
	r := NewReloader(Source{Path: path, Environ: environ()}, func(c *Config) error { applied <- c; return nil }, nil)
	r.PollInterval = 20 * time.Millisecond
	r.Debounce = 10 * time.Millisecond
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	<-applied
	// Without Run nothing watches; the poll notices a change once running.
	write(t, path, cfgYAML("127.0.0.1:9005"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	waitApplied(t, applied, "127.0.0.1:9005")
}

func TestRunInitialLoadError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	write(t, path, invalidYAML)
	r := NewReloader(Source{Path: path, Environ: environ()}, nil, nil)
	if err := r.Run(context.Background()); err == nil {
		t.Fatal("Run started with an invalid file")
	}
	if r.Current() != nil {
		t.Error("Current() set after a failed initial load")
	}
}

// TestRunNoticesChanges covers the changes only Run's fallbacks see: the
// watch follows the configuration file alone, so a secret file elsewhere
// is left to the poll; a file missing when Run starts cannot be watched, so
// Run re-arms until it returns. Each case first waits for a Trigger's
// attempt, so the change happens while Run is in its loop (the check at
// its start would otherwise see it).
func TestRunNoticesChanges(t *testing.T) {
	for _, tt := range []struct {
		name   string
		poll   time.Duration
		before func(t *testing.T, path, secret string) // after the first Reload, before Run
		change func(t *testing.T, path, secret string)
		want   func(c *Config) bool
	}{
		{"secret rotated, seen by the poll", 20 * time.Millisecond,
			func(*testing.T, string, string) {},
			func(t *testing.T, _, secret string) { write(t, secret, "two\n") },
			func(c *Config) bool { return c.Callbacks[0].Secret == "two" }},
		{"file missing at start, watch re-armed", time.Hour,
			func(t *testing.T, path, _ string) {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			},
			func(t *testing.T, path, secret string) {
				// Long enough for re-arms (every 50ms here) to fail first:
				// no signal says they did, and a shorter wait only skips
				// the retry, it cannot fail the test.
				time.Sleep(200 * time.Millisecond)
				write(t, path, cfgYAML("127.0.0.1:9006")+"    secret_file: "+secret+"\n")
			},
			func(c *Config) bool { return c.Listen == "127.0.0.1:9006" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir, secretDir := t.TempDir(), t.TempDir()
			path, secret := filepath.Join(dir, "c.yaml"), filepath.Join(secretDir, "s.txt")
			write(t, secret, "one\n")
			write(t, path, cfgYAML("127.0.0.1:9001")+"    secret_file: "+secret+"\n")
			applied, outcomes := make(chan *Config, 16), make(chan error, 16)
			r := NewReloader(Source{Path: path, Environ: environ()}, func(c *Config) error { applied <- c; return nil }, nil)
			r.PollInterval, r.Debounce = tt.poll, 10*time.Millisecond
			r.Observe = func(err error) { outcomes <- err }
			if err := r.Reload(); err != nil {
				t.Fatal(err)
			}
			<-applied
			<-outcomes
			tt.before(t, path, secret)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- r.Run(ctx) }()
			defer func() { cancel(); <-done }()
			r.Trigger()
			select {
			case <-outcomes:
			case <-time.After(5 * time.Second):
				t.Fatal("Trigger caused no reload attempt")
			}
			tt.change(t, path, secret)
			timeout := time.After(5 * time.Second)
			for {
				select {
				case c := <-applied:
					if tt.want(c) {
						return
					}
				case <-timeout:
					t.Fatal("change not applied within 5s")
				}
			}
		})
	}
}
