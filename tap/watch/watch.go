// Package watch polls Mistral's API for executions and tasks that changed
// since a checkpoint, so that events fire even when no client looks.
//
// Each poll costs a constant number of requests when nothing changes: lists
// of executions and of tasks, filtered by updated_at >= checkpoint minus a
// small overlap (and by created_at, for rows never updated), sorted by
// (updated_at, id) and paged by the Engine (tap/mistral). The checkpoint
// advances only after the Observer (the tracker) has durably recorded what
// the poll revealed, so a crash repeats a poll rather than skipping one;
// repeats are harmless because the tracker ignores what it already knows.
// While the engine fails, Run backs off (mistral.Backoff) and logs the
// outage once and its end once (mistral.Outage).
//
// With Mistral's auth on and AllProjects, executions are listed across
// projects but tasks cannot be (Mistral 15 has no all_projects for tasks,
// and a task list holds the token's project's only): with Options.Projects
// the watcher lists tasks per project (up to 8 at once), only for the
// projects with unfinished or recently changed executions, so an idle
// deployment costs four requests per poll however many projects it has
// (see projects.go and docs/auth.md). A project whose token Keystone
// refuses is skipped and logged once, not a failed poll. The re-read
// window grows with how long the last poll's reads took, since per-project
// lists are read one after the other.
package watch

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
	"github.com/mistral-tap/mistral-tap/tap/mistral"
)

// Engine lists executions and tasks page by page, one request per page;
// *mistral.Client implements it.
type Engine interface {
	Executions(ctx context.Context, q url.Values) iter.Seq2[[]event.Execution, error]
	Tasks(ctx context.Context, q url.Values) iter.Seq2[[]event.Task, error]
}

// Observer takes a poll's observations and returns once they are recorded.
type Observer interface {
	ObserveSync(ctx context.Context, obs []event.Observation) error
}

// Checkpoints persist the watcher's position across restarts.
type Checkpoints interface {
	Checkpoint(ctx context.Context, key string) (string, error)
	SetCheckpoint(ctx context.Context, key, value string) error
}

// Options configure a Watcher.
type Options struct {
	// Engine answers the lists. Required.
	Engine Engine
	// Interval between polls; 0 disables polling. Default 0.
	Interval time.Duration
	// Replay makes the first poll of a fresh state start this far in the
	// past. Default 0: start from now.
	Replay time.Duration
	// AllProjects adds all_projects=true to execution lists (admin only).
	// Default false.
	AllProjects bool
	// Projects, with AllProjects, lists tasks per project with an Engine
	// scoped to each (see Projects). Default nil: tasks are listed by
	// Engine, which sees its own project's only.
	Projects Projects
	// Observer receives each poll's observations. Required.
	Observer Observer
	// Checkpoints, when set, persists the position. Default nil: every
	// start begins at Now minus Replay.
	Checkpoints Checkpoints
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// checkpointKey names the watcher's position in the store.
const checkpointKey = "watch.updated_at"

// overlap is subtracted from the checkpoint in each query. Mistral stamps
// updated_at when a transaction starts, with whole seconds, and commits it
// later, so a row can become visible with a time slightly before the newest
// one already seen; re-reading a couple of seconds costs little because
// the tracker drops what it knows.
const overlap = 2 * time.Second

const tsLayout = event.TimeLayout

// Watcher polls the API. Create it with New and start it with Run.
type Watcher struct {
	o      Options
	log    *slog.Logger
	outage mistral.Outage

	mu         sync.Mutex
	checkpoint string
	seenAt     time.Time // when a poll first saw the checkpoint's row (Now); zero after a start
	settled    string    // the checkpoint once no row stamped at or before it can still appear
	stats      Stats
	lastErr    string        // the last poll's failure, "" after a good one
	proj       projectState  // per-project polling
	lastDur    time.Duration // how long the last good poll's reads took
}

// Stats are the watcher's counters.
type Stats struct {
	Polls     uint64 // completed polls
	Errors    uint64 // failed polls
	Requests  uint64 // list requests made (pages and failures)
	Resources uint64 // executions and tasks received
	// Lag is how far the checkpoint trails the wall clock after the last
	// successful poll.
	Lag time.Duration
}

// New checks the options and returns a Watcher.
func New(o Options) (*Watcher, error) {
	if o.Engine == nil {
		return nil, errors.New("watch: Engine is required")
	}
	if o.Observer == nil {
		return nil, errors.New("watch: Observer is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	w := &Watcher{o: o, log: o.Logger}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	return w, nil
}

// Stats returns a snapshot of the counters.
func (w *Watcher) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// LastError is the failure of the last poll, "" after a good one (for
// /readyz: "Keystone refused ..." or "engine unreachable").
func (w *Watcher) LastError() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// Run polls every Interval until ctx ends. While the engine is unreachable
// it backs off (up to 30s), logs the failure once, and logs the recovery.
func (w *Watcher) Run(ctx context.Context) error {
	if w.o.Interval <= 0 {
		<-ctx.Done()
		return nil
	}
	if err := w.loadCheckpoint(ctx); err != nil {
		return err
	}
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		if err := w.Poll(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			wait = w.failed(err, wait)
			continue
		}
		w.recovered()
		wait = w.o.Interval
	}
}

func (w *Watcher) loadCheckpoint(ctx context.Context) error {
	if w.o.Checkpoints != nil {
		cp, err := w.o.Checkpoints.Checkpoint(ctx, checkpointKey)
		if err != nil {
			return fmt.Errorf("watch: reading checkpoint: %w", err)
		}
		if cp != "" {
			w.setCheckpoint(cp)
			w.log.Info("watcher resumes", "since", cp)
			return nil
		}
	}
	start := w.o.Now().Add(-w.o.Replay).UTC().Format(tsLayout)
	w.setCheckpoint(start)
	w.log.Info("watcher starts", "since", start)
	return nil
}

func (w *Watcher) setCheckpoint(cp string) {
	w.mu.Lock()
	w.checkpoint = cp
	w.mu.Unlock()
}

func (w *Watcher) failed(err error, wait time.Duration) time.Duration {
	w.mu.Lock()
	w.stats.Errors++
	w.lastErr = err.Error()
	w.mu.Unlock()
	if w.outage.Failed(err) {
		w.log.Warn("watcher cannot poll the engine; backing off", "err", err)
	}
	return mistral.Backoff(wait, w.o.Interval)
}

func (w *Watcher) recovered() {
	w.mu.Lock()
	w.lastErr = ""
	w.mu.Unlock()
	if w.outage.Recovered() {
		w.log.Info("watcher reaches the engine again")
	}
}

// Poll lists what changed since the checkpoint, hands it to the Observer and
// advances the checkpoint. Run calls it every Interval.
func (w *Watcher) Poll(ctx context.Context) error {
	cp, since := w.window()
	requested := w.o.Now()
	if w.perProject() {
		if err := w.seed(ctx); err != nil {
			return err
		}
	}
	execs, err := w.pollExecutions(ctx, since)
	if err != nil {
		return err
	}
	var tasks []event.Task
	if err := w.pollTasks(ctx, since, execs, &tasks); err != nil {
		return err
	}
	obs, newest := w.observations(cp, execs, tasks, requested)
	if err := w.record(ctx, cp, newest, obs); err != nil {
		return err
	}
	w.advance(cp, newest, requested, len(obs))
	return nil
}

// window returns the checkpoint (the clock's time if none was loaded) and
// the time the poll's lists start from: the checkpoint minus the re-read
// window, or, once it settled, the second after it (see settle). A
// checkpoint that does not parse is used as it is.
func (w *Watcher) window() (cp, since string) {
	w.mu.Lock()
	cp = w.checkpoint
	w.mu.Unlock()
	if cp == "" {
		cp = w.o.Now().UTC().Format(tsLayout)
	}
	w.mu.Lock()
	settled := w.settled == cp
	w.mu.Unlock()
	since = cp
	if t, err := time.Parse(tsLayout, cp); err == nil {
		since = t.Add(-w.overlap()).Format(tsLayout)
		if settled {
			// See settle: only rows stamped after the checkpoint's second.
			since = t.Add(time.Second).Format(tsLayout)
		}
	}
	return cp, since
}

// pollExecutions lists the executions stamped since since, across projects
// with AllProjects. Mistral leaves updated_at null until an entity's first
// update, and an updated_at filter never matches null; a second list by
// created_at finds those. With the tasks' two, four requests per poll,
// whatever the load (per project, two more for each project with
// unfinished executions).
func (w *Watcher) pollExecutions(ctx context.Context, since string) ([]event.Execution, error) {
	q := url.Values{}
	q.Set("sort_dirs", "asc,asc")
	if w.o.AllProjects {
		q.Set("all_projects", "true")
	}
	var execs []event.Execution
	for _, col := range []string{"updated_at", "created_at"} {
		q.Set(col, "gte:"+since)
		q.Set("sort_keys", col+",id")
		err := collect(w, w.o.Engine.Executions(ctx, q), &execs)
		q.Del(col)
		if err != nil {
			return nil, err
		}
	}
	return execs, nil
}

// observations turns a poll's rows into observations (each row once, see
// unique) stamped with the poll's request time, and returns the newest
// stamp among them, at least cp: the checkpoint once they are recorded.
// Per project, tasks of executions neither listed nor known to be running
// wait for a later poll (see deferOrphans), and the checkpoint counts only
// the rows kept.
func (w *Watcher) observations(cp string, execs []event.Execution, tasks []event.Task, requested time.Time) ([]event.Observation, string) {
	execs, tasks = unique(execs, execID), unique(tasks, taskID)
	obs := make([]event.Observation, 0, len(execs)+len(tasks))
	newest := cp
	for i := range execs {
		obs = append(obs, event.Observation{Source: event.SourceWatch, Execution: &execs[i], RequestedAt: requested})
		newest = maxTS(newest, execs[i].UpdatedAt)
		newest = maxTS(newest, &execs[i].CreatedAt)
	}
	for i := range tasks {
		obs = append(obs, event.Observation{Source: event.SourceWatch, Task: &tasks[i], RequestedAt: requested})
		newest = maxTS(newest, tasks[i].UpdatedAt)
		newest = maxTS(newest, &tasks[i].CreatedAt)
	}
	if w.perProject() {
		obs = w.deferOrphans(execs, obs)
		newest = newestOf(cp, obs)
	}
	return obs, newest
}

// record hands obs to the Observer, and only once it has recorded them
// saves the new checkpoint: a crash in between repeats the poll rather than
// skipping rows.
func (w *Watcher) record(ctx context.Context, cp, newest string, obs []event.Observation) error {
	if len(obs) > 0 {
		if err := w.o.Observer.ObserveSync(ctx, obs); err != nil {
			return fmt.Errorf("watch: recording a poll: %w", err)
		}
	}
	if newest != cp && w.o.Checkpoints != nil {
		if err := w.o.Checkpoints.SetCheckpoint(ctx, checkpointKey, newest); err != nil {
			return fmt.Errorf("watch: saving checkpoint: %w", err)
		}
	}
	return nil
}

// advance moves the in-memory checkpoint from cp to newest after a good
// poll that started at requested and observed n rows, and updates what the
// next poll's window depends on (the poll's duration, settle) and the
// counters.
func (w *Watcher) advance(cp, newest string, requested time.Time, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastDur = w.o.Now().Sub(requested)
	w.settle(cp, newest, requested)
	w.checkpoint = newest
	w.stats.Polls++
	w.stats.Resources += uint64(n)
	if t, err := time.Parse(tsLayout, newest); err == nil {
		w.stats.Lag = max(0, w.o.Now().Sub(t))
	}
}

// newestOf is the newest stamp of obs, at least cp.
func newestOf(cp string, obs []event.Observation) string {
	newest := cp
	for _, o := range obs {
		if o.Execution != nil {
			newest = maxTS(maxTS(newest, o.Execution.UpdatedAt), &o.Execution.CreatedAt)
		} else {
			newest = maxTS(maxTS(newest, o.Task.UpdatedAt), &o.Task.CreatedAt)
		}
	}
	return newest
}

// pollTasks lists the tasks stamped since since: with Engine, or per
// project (see Projects) for the projects execs and the running executions
// name. /v2/tasks knows no all_projects.
func (w *Watcher) pollTasks(ctx context.Context, since string, execs []event.Execution, tasks *[]event.Task) error {
	var projects []string
	if w.perProject() {
		projects = w.noteExecutions(execs)
	}
	q := url.Values{}
	q.Set("sort_dirs", "asc,asc")
	for _, col := range []string{"updated_at", "created_at"} {
		q.Set(col, "gte:"+since)
		q.Set("sort_keys", col+",id")
		var err error
		if w.perProject() {
			err = w.projectTasks(ctx, projects, q, tasks)
		} else {
			err = collect(w, w.o.Engine.Tasks(ctx, q), tasks)
		}
		q.Del(col)
		if err != nil {
			return err
		}
	}
	return nil
}

// overlap is the re-read window of the next poll: the constant overlap,
// plus how long the last poll's reads took. A poll's lists are read one
// after the other (per project, many of them, each validated at Keystone);
// a row committed after the first list was read but stamped before the
// checkpoint that a later list moved on would otherwise fall out of the
// window. Only our own clock measures that duration.
func (w *Watcher) overlap() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.overlapLocked()
}

func (w *Watcher) overlapLocked() time.Duration {
	return overlap + w.lastDur.Round(time.Second)
}

// settle decides, after a good poll that started at started and moved the
// checkpoint from cp to newest, whether the next polls may skip the overlap.
// Called with w.mu held.
//
// Why: the checkpoint is the newest timestamp seen, so while nothing changes
// it stays put, and without settling every idle poll would re-read every
// row stamped in the overlap before it: a burst finishing in one second
// would cost several pages per list for as long as nothing else changed.
// The overlap exists for rows committed up to overlap after they were
// stamped. When the checkpoint's row was seen, the engine's clock had
// reached its stamp; so every row stamped at or before the checkpoint is
// committed within overlap (+1 s, stamps are truncated to the second) of
// that moment, measured on our own clock: no clock is compared across
// hosts. A poll that started after that and read the overlap has seen them
// all, and until the checkpoint moves the next polls ask only for rows
// stamped after its second: four requests when idle. The assumption is the
// overlap's own (a row committed later than that after its stamp was never
// guaranteed).
func (w *Watcher) settle(cp, newest string, started time.Time) {
	switch {
	case newest != cp || w.seenAt.IsZero():
		// A new checkpoint (or the first poll since the start): its row
		// was visible by now at the latest.
		w.seenAt = w.o.Now()
		w.settled = ""
	case w.settled != cp && started.Sub(w.seenAt) > w.overlapLocked()+time.Second:
		w.settled = cp
	}
}

// unique drops repeats (a row found by both the updated_at and the
// created_at list, or on two pages), keeping the last read of each row in
// the place of its first: lists are read one after the other, so a later
// read is at least as new, and a row that changed in between (a task
// RUNNING in the first list, SUCCESS in the second, next to the task it
// triggered) must not reach the tracker as its older self. Mistral's
// seconds cannot tell the two reads apart, and both carry the poll's
// request time.
func unique[T any](in []T, id func(*T) string) []T {
	at := make(map[string]int, len(in))
	out := in[:0]
	for i := range in {
		k := id(&in[i])
		if j, ok := at[k]; ok {
			out[j] = in[i]
			continue
		}
		at[k] = len(out)
		out = append(out, in[i])
	}
	return out
}

func execID(x *event.Execution) string { return x.ID }
func taskID(x *event.Task) string      { return x.ID }

func maxTS(cur string, ts *string) string {
	if ts == nil || len(*ts) < len(tsLayout) {
		return cur
	}
	s := (*ts)[:len(tsLayout)]
	if s > cur {
		return s
	}
	return cur
}

// collect appends every page to out, counting one request per page.
func collect[T any](w *Watcher, pages iter.Seq2[[]T, error], out *[]T) error {
	for rows, err := range pages {
		w.mu.Lock()
		w.stats.Requests++
		w.mu.Unlock()
		if err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		*out = append(*out, rows...)
	}
	return nil
}
