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
	poll := time.NewTicker(r.PollInterval)
	defer poll.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	rearm := time.NewTimer(time.Hour)
	rearm.Stop()
	defer rearm.Stop()

	events := make(chan struct{}, 1)
	watchErr := make(chan error, 1)
	var watched *file.File
	arm := func() error {
		if r.src.Path == "" {
			return nil
		}
		// A fresh provider every time: after a failed Watch (e.g. the
		// file does not exist) file.Provider v1.2.1 still holds its mutex,
		// so the old one must never be touched again.
		fp := file.Provider(r.src.Path)
		err := fp.Watch(func(_ any, err error) {
			if err != nil {
				select {
				case watchErr <- err:
				default:
				}
				return
			}
			select {
			case events <- struct{}{}:
			default:
			}
		})
		if err != nil {
			return err
		}
		watched = fp
		return nil
	}
	unwatch := func() {
		if watched != nil {
			_ = watched.Unwatch()
			watched = nil
		}
	}
	defer unwatch()
	if err := arm(); err != nil {
		r.log.Warn("cannot watch the configuration file; relying on polling", "file", r.src.Path, "err", err)
		rearm.Reset(r.rearmDelay())
	} else if r.src.Path != "" && r.changedOnDisk() {
		// Changed between the last Reload and the watch's start.
		debounce.Reset(r.Debounce)
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-events:
			debounce.Reset(r.Debounce)
		case <-r.trigger:
			debounce.Reset(r.Debounce)
		case err := <-watchErr:
			// The watch goroutine has exited (the file was removed or
			// replaced by a non-atomic editor); re-arm once the file
			// is back and reload, since the write may precede the arm.
			r.log.Debug("configuration watch ended; re-arming", "file", r.src.Path, "err", err)
			unwatch()
			rearm.Reset(r.rearmDelay())
		case <-rearm.C:
			if err := arm(); err != nil {
				rearm.Reset(r.rearmDelay())
				continue
			}
			debounce.Reset(r.Debounce)
		case <-poll.C:
			if r.src.Path != "" && r.changedOnDisk() {
				debounce.Reset(r.Debounce)
			}
		case <-debounce.C:
			if err := r.Reload(); err != nil && !errors.Is(err, context.Canceled) {
				continue // logged by Reload
			}
		}
	}
}

func (r *Reloader) rearmDelay() time.Duration { return max(r.Debounce, 50*time.Millisecond) }
