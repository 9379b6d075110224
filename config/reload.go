package config

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/knadh/koanf/providers/file"
)

// Reloader keeps the configuration current while operators edit the file
// live. Reloads are triggered by
//   - koanf's file.Provider Watch (fsnotify on the parent directory, so it
//     sees in-place writes, tmp+rename and Kubernetes `..data` symlink
//     swaps), re-armed after it dies (rm + recreate, koanf #271),
//   - Trigger (the command wires SIGHUP to it),
//   - a slow poll of the file's checksum, a fallback for file systems
//     without inotify and for whatever the watch misses.
//
// Each trigger is debounced, because an in-place write can be read half
// finished. A reload is a fresh Load (new koanf instance, strict pass,
// Validate); on any problem the previous configuration stays and the
// problems are logged with file, line, callback, field and (redacted)
// value. An effective configuration identical to the current one is not
// applied again.
type Reloader struct {
	// PollInterval is the checksum poll period. Default 5s; set before
	// Run.
	PollInterval time.Duration
	// Debounce is how long a burst of triggers must be quiet before the
	// reload. Default 150ms; set before Run.
	Debounce time.Duration
	// Observe, if set, is called after every reload attempt with its
	// outcome (nil on success or no change), e.g. to export a
	// config_last_reload_success gauge. Set before Run.
	Observe func(err error)

	src     Source
	apply   func(*Config) error
	log     *slog.Logger
	cur     atomic.Pointer[Config]
	trigger chan struct{}

	mu          sync.Mutex // serialises reloads and guards the fields below
	appliedHash [sha256.Size]byte
	seen        [sha256.Size]byte // fingerprint of the inputs last loaded
	secretFiles []string
}

// NewReloader returns a Reloader that loads from src and hands every new
// valid configuration to apply, which must swap it in atomically; an error
// from apply keeps the previous configuration. A nil log discards.
func NewReloader(src Source, apply func(*Config) error, log *slog.Logger) *Reloader {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if apply == nil {
		apply = func(*Config) error { return nil }
	}
	return &Reloader{
		PollInterval: 5 * time.Second,
		Debounce:     150 * time.Millisecond,
		src:          src,
		apply:        apply,
		log:          log,
		trigger:      make(chan struct{}, 1),
	}
}

// Current returns the configuration in force, nil before the first
// successful Reload.
func (r *Reloader) Current() *Config { return r.cur.Load() }

// Trigger asks Run for a reload (debounced); it never blocks.
func (r *Reloader) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// Reload loads the configuration now. On success it calls apply (unless
// the effective configuration is unchanged) and makes the result Current;
// on failure it keeps the current one, logs every problem and returns
// them. The command calls it once before starting the components, so a bad
// file fails the start.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.reloadLocked()
	if r.Observe != nil {
		r.Observe(err)
	}
	return err
}

func (r *Reloader) reloadLocked() error {
	c, info, err := load(r.src)
	r.secretFiles = info.secretFiles
	r.seen = fingerprint(info.fileData, info.secretFiles)
	old := r.cur.Load()
	if err != nil {
		if old != nil {
			r.log.Error("configuration reload failed; keeping the previous configuration", "file", r.src.Path)
		}
		for _, p := range Problems(err) {
			r.log.Error("configuration problem", "file", p.File, "line", p.Line, "column", p.Column,
				"callback", p.Callback, "field", p.Field, "value", p.Value, "problem", p.Msg)
		}
		return err
	}
	h, err := hashConfig(c)
	if err != nil {
		return fmt.Errorf("hashing configuration: %w", err)
	}
	if old != nil && h == r.appliedHash {
		r.log.Debug("configuration unchanged", "file", r.src.Path)
		return nil
	}
	if old != nil {
		if fields := RestartRequired(old, c); len(fields) > 0 {
			r.log.Warn("configuration changes that take effect only after a restart", "fields", fields)
		}
	}
	if err := r.apply(c); err != nil {
		r.log.Error("applying the new configuration failed; keeping the previous one", "err", err)
		return fmt.Errorf("applying configuration: %w", err)
	}
	r.cur.Store(c)
	r.appliedHash = h
	if old != nil {
		r.log.Info("configuration reloaded", "file", r.src.Path, "callbacks", len(c.Callbacks))
	}
	return nil
}

// hashConfig fingerprints an effective configuration (secrets included,
// in memory only) to skip no-op applies.
func hashConfig(c *Config) ([sha256.Size]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return sha256.Sum256(b), nil
}

// fingerprint hashes the file's bytes and the secret files' bytes: a
// rotated secret file is a change although the config file is not.
func fingerprint(data []byte, secretFiles []string) [sha256.Size]byte {
	h := sha256.New()
	h.Write(data)
	for _, f := range secretFiles {
		b, _ := os.ReadFile(f)
		h.Write([]byte{0})
		h.Write(b)
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// changedOnDisk reports whether the inputs differ from what was last
// loaded.
func (r *Reloader) changedOnDisk() bool {
	r.mu.Lock()
	files, seen := r.secretFiles, r.seen
	r.mu.Unlock()
	data, _ := os.ReadFile(r.src.Path)
	return fingerprint(data, files) != seen
}

// Run loads the configuration if Reload has not succeeded yet (returning
// its error if it fails), then watches for changes until ctx is done.
func (r *Reloader) Run(ctx context.Context) error {
	if r.Current() == nil {
		if err := r.Reload(); err != nil {
			return fmt.Errorf("initial configuration: %w", err)
		}
	}
	t := newReloadTimers(r.PollInterval)
	defer t.stop()
	w := newFileWatch(r.src.Path)
	defer w.unwatch()
	r.startWatch(w, t)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.events:
			t.debounce.Reset(r.Debounce)
		case <-r.trigger:
			t.debounce.Reset(r.Debounce)
		case err := <-w.ended:
			// The watch goroutine has exited (the file was removed or
			// replaced by a non-atomic editor); re-arm once the file
			// is back and reload, since the write may precede the arm.
			r.log.Debug("configuration watch ended; re-arming", "file", r.src.Path, "err", err)
			w.unwatch()
			t.rearm.Reset(r.rearmDelay())
		case <-t.rearm.C:
			if err := w.arm(); err != nil {
				t.rearm.Reset(r.rearmDelay())
				continue
			}
			t.debounce.Reset(r.Debounce)
		case <-t.poll.C:
			if r.src.Path != "" && r.changedOnDisk() {
				t.debounce.Reset(r.Debounce)
			}
		case <-t.debounce.C:
			if err := r.Reload(); err != nil && !errors.Is(err, context.Canceled) {
				continue // logged by Reload
			}
		}
	}
}

// startWatch arms w for Run's loop. A file that cannot be watched yet is
// left to the poll and to re-arming; a change made since the last Reload,
// which the new watch cannot have seen, is reloaded.
func (r *Reloader) startWatch(w *fileWatch, t *reloadTimers) {
	if err := w.arm(); err != nil {
		r.log.Warn("cannot watch the configuration file; relying on polling", "file", r.src.Path, "err", err)
		t.rearm.Reset(r.rearmDelay())
	} else if r.src.Path != "" && r.changedOnDisk() {
		t.debounce.Reset(r.Debounce)
	}
}

// reloadTimers are Run's clocks: the checksum poll, the debounce every
// trigger restarts, and the re-arm of a watch that failed or ended. The two
// timers start stopped.
type reloadTimers struct {
	poll     *time.Ticker
	debounce *time.Timer
	rearm    *time.Timer
}

func newReloadTimers(poll time.Duration) *reloadTimers {
	return &reloadTimers{poll: time.NewTicker(poll), debounce: stoppedTimer(), rearm: stoppedTimer()}
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

func (t *reloadTimers) stop() {
	t.poll.Stop()
	t.debounce.Stop()
	t.rearm.Stop()
}

// fileWatch is the koanf file watch Run keeps armed on the configuration
// file. Its callback runs on koanf's goroutine, so it only signals Run,
// through channels of one slot: a pending signal already says it all.
type fileWatch struct {
	path    string
	events  chan struct{} // the file changed
	ended   chan error    // the watch goroutine exited
	watched *file.File    // nil when not armed
}

func newFileWatch(path string) *fileWatch {
	return &fileWatch{path: path, events: make(chan struct{}, 1), ended: make(chan error, 1)}
}

// arm starts watching; with no path (no file to watch) it does nothing.
func (w *fileWatch) arm() error {
	if w.path == "" {
		return nil
	}
	// A fresh provider every time: after a failed Watch (e.g. the
	// file does not exist) file.Provider v1.2.1 still holds its mutex,
	// so the old one must never be touched again.
	fp := file.Provider(w.path)
	if err := fp.Watch(w.notify); err != nil {
		return err
	}
	w.watched = fp
	return nil
}

// notify is the watch's callback: an error means koanf's goroutine ended.
func (w *fileWatch) notify(_ any, err error) {
	if err != nil {
		select {
		case w.ended <- err:
		default:
		}
		return
	}
	select {
	case w.events <- struct{}{}:
	default:
	}
}

func (w *fileWatch) unwatch() {
	if w.watched != nil {
		_ = w.watched.Unwatch()
		w.watched = nil
	}
}

func (r *Reloader) rearmDelay() time.Duration { return max(r.Debounce, 50*time.Millisecond) }
