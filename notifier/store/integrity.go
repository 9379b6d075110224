package store

// Integrity of the state directory. The outbox is the only copy of pending
// deliveries and of what the tracker and the watcher already saw, so losing
// it silently loses events: a database that vanished, was truncated or is
// corrupt is reported loudly and never replaced by a fresh one unless the
// operator asks (Reset).

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrStateLost is wrapped by the errors of a database that is gone, empty or
// replaced although the state directory was in use: by Open (refusing to
// start afresh) and by Health (the files vanished while open).
var ErrStateLost = errors.New("store: state lost")

// ErrCorrupt is wrapped by the errors of a database SQLite finds malformed
// (SQLITE_CORRUPT, SQLITE_NOTADB), at Open or later.
var ErrCorrupt = errors.New("store: database is corrupt")

// fileMode is the mode of every file the store creates or opens under the
// state directory: the outbox holds event bodies and receiver URLs.
const fileMode fs.FileMode = 0o600

// DefaultCheckInterval is Options.CheckInterval's default.
const DefaultCheckInterval = 5 * time.Second

// Files next to the database, named by suffix.
const (
	walSuffix  = "-wal"
	shmSuffix  = "-shm"
	lockSuffix = ".lock" // the dispatcher's flock; non-empty once the state was initialised
	lostSuffix = ".lost" // written when the database vanished while open
	initSuffix = ".init" // a new database before it is complete
)

// resetHint tells the operator the way out of a refusal.
func resetHint(path string) string {
	return fmt.Sprintf("restore it from a backup, or run 'mistral-tap store reset --state-dir %s' to move the old files aside and start with an empty state",
		filepath.Dir(path))
}

// preflight decides, before SQLite touches path, whether the database may be
// opened: an existing non-empty file may; a missing one may be created only
// in a state directory never used before (no marker, WAL or loss record).
// It reports whether the database must be created.
func preflight(path string) (create bool, err error) {
	if b, err := os.ReadFile(path + lostSuffix); err == nil {
		return false, fmt.Errorf("%w: %s was lost while mistral-tap was running (%s); %s",
			ErrStateLost, path, strings.TrimSpace(string(b)), resetHint(path))
	}
	fi, err := os.Stat(path)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		return false, fmt.Errorf("store: %s is not a regular file", path)
	case err == nil && fi.Size() == 0:
		return false, fmt.Errorf("%w: %s is empty (0 bytes), which is not a database mistral-tap wrote; %s",
			ErrStateLost, path, resetHint(path))
	case err == nil:
		return false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("store: %w", err)
	}
	for _, sfx := range []string{walSuffix, shmSuffix} {
		if _, err := os.Stat(path + sfx); err == nil {
			return false, fmt.Errorf("%w: %s is missing but its %s file is there; %s", ErrStateLost, path, sfx, resetHint(path))
		}
	}
	if b, err := os.ReadFile(path + lockSuffix); err == nil && len(b) > 0 {
		return false, fmt.Errorf("%w: %s is missing, but %s shows the state directory was in use (%s); %s",
			ErrStateLost, path, path+lockSuffix, strings.TrimSpace(string(b)), resetHint(path))
	}
	return true, nil
}

// create makes a new, migrated database at path atomically: it is built
// under a temporary name and renamed into place, so that a crash never
// leaves an empty file that a later start would have to refuse.
func create(path string, dsn func(string, bool) string) error {
	tmp := path + initSuffix
	for _, sfx := range []string{"", walSuffix, shmSuffix, "-journal"} {
		if err := os.Remove(tmp + sfx); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("store: removing a leftover %s: %w", tmp+sfx, err)
		}
	}
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_RDWR, fileMode)
	if err != nil {
		return fmt.Errorf("store: creating %s: %w", tmp, err)
	}
	f.Close()
	// The umask may have narrowed the mode only; SQLite gives the WAL and
	// shared-memory files the database's mode.
	if err := os.Chmod(tmp, fileMode); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	db, err := sql.Open("sqlite", dsn(tmp, true))
	if err != nil {
		return fmt.Errorf("store: creating %s: %w", path, err)
	}
	s := &Store{w: db}
	err = s.migrate(context.Background())
	// Closing the last connection checkpoints the WAL into the file and
	// removes it, so the rename below moves the whole database.
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("store: closing new database %s: %w", tmp, cerr)
	}
	if err == nil {
		err = syncFile(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncFile(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("store: creating %s: %w", path, err)
	}
	return nil
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// tighten gives the database's files fileMode: files left by an older
// version or created under a loose umask must not stay world-readable. A
// filesystem without modes is only warned about.
func (s *Store) tighten(path string) {
	for _, p := range []string{path, path + walSuffix, path + shmSuffix, path + lockSuffix} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() == fileMode {
			continue
		}
		if err := os.Chmod(p, fileMode); err != nil {
			s.log.Warn("cannot restrict a state file to its owner", "file", p, "mode", fi.Mode().Perm().String(), "err", err)
		}
	}
}

// markInitialised writes the marker of previous use into the lock file, once:
// from then on a missing database is a loss, not a first start.
func (s *Store) markInitialised(now time.Time) error {
	fi, err := s.lock.Stat()
	if err != nil || fi.Size() > 0 {
		return err
	}
	if _, err := fmt.Fprintf(s.lock, "state initialised %s; do not delete while the database is kept\n", now.UTC().Format(time.RFC3339)); err != nil {
		return fmt.Errorf("store: writing %s: %w", s.lock.Name(), err)
	}
	return s.lock.Sync()
}

// QuickCheck runs SQLite's PRAGMA quick_check (every page and record is
// well-formed; indexes are not compared with their tables) and returns an
// error wrapping ErrCorrupt naming the file and SQLite's first findings.
// It reads the whole database: Open runs it for the dispatcher (Exclusive).
func (s *Store) QuickCheck(ctx context.Context) error {
	rows, err := s.w.QueryContext(ctx, `PRAGMA quick_check(10)`)
	if err != nil {
		return s.classify(fmt.Errorf("store: checking %s: %w", s.path, err))
	}
	defer rows.Close()
	var found []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return s.classify(fmt.Errorf("store: checking %s: %w", s.path, err))
		}
		if line != "ok" {
			found = append(found, line)
		}
	}
	if err := rows.Err(); err != nil {
		return s.classify(fmt.Errorf("store: checking %s: %w", s.path, err))
	}
	if len(found) > 0 {
		return fmt.Errorf("%w: %s fails SQLite's quick_check: %s; %s", ErrCorrupt, s.path, strings.Join(found, "; "), resetHint(s.path))
	}
	return nil
}

// isCorrupt reports whether err is SQLite saying the file is malformed.
func isCorrupt(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	c := se.Code() & 0xff // extended codes keep the primary code in the low byte
	return c == sqlite3.SQLITE_CORRUPT || c == sqlite3.SQLITE_NOTADB
}

// classify turns a corruption error into one wrapping ErrCorrupt that names
// the file; other errors pass unchanged.
func (s *Store) classify(err error) error {
	if err == nil || errors.Is(err, ErrCorrupt) || !isCorrupt(err) {
		return err
	}
	return fmt.Errorf("%w: %s: %w", ErrCorrupt, s.path, err)
}

// note records a corruption met at run time (see fail) and returns err,
// classified. The methods on the hot paths pass their errors through it.
func (s *Store) note(err error) error {
	err = s.classify(err)
	if errors.Is(err, ErrCorrupt) {
		s.fail(err)
	}
	return err
}

// fail makes err the store's permanent health failure. The first one is
// logged at ERROR, once; a loss is also recorded next to the database, so
// that the next start refuses instead of beginning afresh.
func (s *Store) fail(err error) {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	if s.failure != nil {
		return
	}
	s.failure = err
	if errors.Is(err, ErrStateLost) {
		s.log.Error("the state database is gone; mistral-tap keeps running from memory, but everything it records from now on is lost at the next restart, which will refuse to start until the state is restored or reset",
			"file", s.path, "err", err)
		note := fmt.Sprintf("detected %s: %v\n", time.Now().UTC().Format(time.RFC3339), err)
		if werr := os.WriteFile(s.path+lostSuffix, []byte(note), fileMode); werr != nil {
			s.log.Error("cannot record the loss next to the database", "file", s.path+lostSuffix, "err", werr)
		}
		return
	}
	s.log.Error("the state database is corrupt; restore it from a backup or reset it (mistral-tap store reset), then restart", "file", s.path, "err", err)
}

// Failure returns the store's permanent failure (ErrStateLost, ErrCorrupt),
// or nil.
func (s *Store) Failure() error {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	return s.failure
}

// fileID identifies a file across renames and re-creations.
type fileID struct{ dev, ino uint64 }

func idOf(fi os.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{uint64(st.Dev), st.Ino}, true
}

// remember records which files the store opened, for verify.
func (s *Store) remember() error {
	fi, err := os.Stat(s.path)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	s.dbID, _ = idOf(fi)
	if s.lock != nil {
		if fi, err := s.lock.Stat(); err == nil {
			s.lockID, _ = idOf(fi)
		}
	}
	return nil
}

// verify checks that the database file (and the dispatcher's lock file) at
// their paths are still the ones the store opened and that the database is
// not empty; if not, the store fails with ErrStateLost. SQLite keeps
// working on the open, now unlinked, files, so without this a deleted
// state goes unnoticed until the next start.
func (s *Store) verify() error {
	if err := s.Failure(); err != nil {
		return err
	}
	var why string
	switch fi, err := os.Stat(s.path); {
	case errors.Is(err, fs.ErrNotExist):
		why = "the file was deleted"
	case err != nil:
		return fmt.Errorf("store: %w", err)
	case fi.Size() == 0:
		why = "the file was truncated to 0 bytes"
	default:
		if id, ok := idOf(fi); ok && s.dbID != (fileID{}) && id != s.dbID {
			why = "the file was replaced by another one"
		}
	}
	if why == "" && s.lock != nil && s.lockID != (fileID{}) {
		switch fi, err := os.Stat(s.lock.Name()); {
		case errors.Is(err, fs.ErrNotExist):
			why = "its lock file was deleted"
		case err == nil:
			if id, ok := idOf(fi); ok && id != s.lockID {
				why = "its lock file was replaced"
			}
		}
	}
	if why == "" {
		return nil
	}
	s.fail(fmt.Errorf("%w: %s: %s while mistral-tap was running", ErrStateLost, s.path, why))
	return s.Failure()
}

// Health reports whether the store is usable: it has not failed (lost,
// corrupt), its files are still in place, and it answers a read. /readyz
// calls it; its error names the file and the cause, never a secret.
func (s *Store) Health(ctx context.Context) error {
	if err := s.verify(); err != nil {
		return err
	}
	var v int
	if err := s.r.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); err != nil {
		return s.note(fmt.Errorf("store: %s not readable: %w", s.path, err))
	}
	return nil
}

// Run checks every Options.CheckInterval that the database is still in
// place (see Health), so that a deleted or replaced state is logged at once
// even when nothing probes /readyz. It returns nil when ctx ends.
func (s *Store) Run(ctx context.Context) error {
	t := time.NewTicker(s.checkEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			_ = s.verify()
		}
	}
}

// Reset moves the database at path (a file or the state directory) aside
// with its WAL, shared-memory and loss-record files, each renamed with the
// suffix ".reset-<UTC time>", and clears the marker of previous use, so that
// the next Open starts with an empty state. It fails with ErrLocked while
// a dispatcher has the store open. It returns the new names.
func Reset(path string, now time.Time) ([]string, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, FileName)
	}
	lock, err := takeLock(path)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	sfx := ".reset-" + now.UTC().Format("20060102T150405Z")
	var moved []string
	for _, p := range []string{path, path + walSuffix, path + shmSuffix, path + lostSuffix} {
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := os.Rename(p, p+sfx); err != nil {
			return moved, fmt.Errorf("store: moving %s aside: %w", p, err)
		}
		moved = append(moved, p+sfx)
	}
	if err := lock.Truncate(0); err != nil {
		return moved, fmt.Errorf("store: clearing %s: %w", lock.Name(), err)
	}
	if err := errors.Join(lock.Sync(), syncFile(filepath.Dir(path))); err != nil {
		return moved, fmt.Errorf("store: %w", err)
	}
	return moved, nil
}

// takeLock opens and flocks path's lock file (ErrLocked if another process
// holds it).
func takeLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path+lockSuffix, os.O_CREATE|os.O_RDWR, fileMode)
	if err != nil {
		return nil, fmt.Errorf("store: opening lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (%s)", ErrLocked, path)
		}
		return nil, fmt.Errorf("store: locking %s: %w", path, err)
	}
	return f, nil
}
