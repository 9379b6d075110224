package watch

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// Projects scopes requests to one project. With Mistral's auth on, an
// admin's executions list crosses projects (all_projects=true) but its task
// list holds only its own project's tasks, and all_projects on /v2/tasks is
// a 400: every project's tasks take a token scoped to that project.
type Projects interface {
	// InProject returns the Engine acting within project id.
	InProject(id string) Engine
}

// noAccess is how a token source says the credentials were refused for a
// project (no role there), as opposed to failing.
type noAccess interface{ NoAccess() bool }

// Per-project polling keeps its task lists to the projects where tasks can
// change: those with an execution not yet finished, and, for projectGrace,
// those where an execution changed (its last tasks are stamped with it).
// Executions that were running before the start are found by listing the
// unfinished ones across projects, at the start and every reseedEvery, which
// also forgets executions deleted while running.
const (
	projectGrace = 10 * time.Second
	reseedEvery  = 5 * time.Minute
)

// projectState is the watcher's view of which projects need task lists.
// Guarded by Watcher.mu.
type projectState struct {
	running  map[string]string       // unfinished execution id → project id
	recent   map[string]recentChange // execution id → its last change seen
	seededAt time.Time
	failed   map[string]string // project id → last refusal, logged once
}

// recentChange keeps a project's tasks polled until until. It outlives
// until by another projectGrace so that the overlap re-reading the same
// change does not extend the grace.
type recentChange struct {
	project, stamp string
	until          time.Time
}

func terminal(state string) bool {
	return state == event.StateSuccess || state == event.StateError || state == event.StateCancelled
}

// perProject reports whether tasks are listed project by project.
func (w *Watcher) perProject() bool { return w.o.AllProjects && w.o.Projects != nil }

// seed replaces the set of unfinished executions when it is due.
func (w *Watcher) seed(ctx context.Context) error {
	now := w.o.Now()
	w.mu.Lock()
	due := w.proj.running == nil || now.Sub(w.proj.seededAt) >= reseedEvery
	w.mu.Unlock()
	if !due {
		return nil
	}
	q := url.Values{}
	q.Set("all_projects", "true")
	q.Set("state", "nin:"+event.StateSuccess+","+event.StateError+","+event.StateCancelled)
	var execs []event.Execution
	if err := collect(w, w.o.Engine.Executions(ctx, q), &execs); err != nil {
		return fmt.Errorf("watch: listing unfinished executions: %w", err)
	}
	running := make(map[string]string, len(execs))
	for _, x := range execs {
		if !terminal(x.State) {
			running[x.ID] = x.ProjectID
		}
	}
	w.mu.Lock()
	w.proj.running, w.proj.seededAt = running, now
	w.mu.Unlock()
	return nil
}

// noteExecutions updates the project view from a poll's executions and
// returns the projects whose tasks the poll must list, sorted.
func (w *Watcher) noteExecutions(execs []event.Execution) []string {
	now := w.o.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	ps := &w.proj
	if ps.recent == nil {
		ps.recent = map[string]recentChange{}
	}
	for _, x := range execs {
		if terminal(x.State) {
			delete(ps.running, x.ID)
		} else if ps.running != nil {
			ps.running[x.ID] = x.ProjectID
		}
		stamp := x.CreatedAt
		if x.UpdatedAt != nil {
			stamp = *x.UpdatedAt
		}
		if rc, ok := ps.recent[x.ID]; x.ProjectID != "" && (!ok || rc.stamp != stamp) {
			ps.recent[x.ID] = recentChange{project: x.ProjectID, stamp: stamp, until: now.Add(projectGrace)}
		}
	}
	set := map[string]bool{}
	for _, p := range ps.running {
		if p != "" {
			set[p] = true
		}
	}
	for id, rc := range ps.recent {
		switch {
		case now.After(rc.until.Add(projectGrace)):
			delete(ps.recent, id)
		case !now.After(rc.until):
			set[rc.project] = true
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// projectConcurrency bounds the task lists of one poll in flight at once:
// a poll with many active projects would otherwise take one engine (and
// Keystone validation) round trip per project, one after the other.
const projectConcurrency = 8

// projectTasks lists the tasks matching q in each project. A project whose
// token Keystone refuses (no role there) is skipped and reported once:
// failing the poll would stop every other project's events for good. Any
// other error fails the poll, so that the checkpoint does not move past
// tasks not read.
func (w *Watcher) projectTasks(ctx context.Context, projects []string, q url.Values, out *[]event.Task) error {
	found := make([][]event.Task, len(projects))
	errs := make([]error, len(projects))
	sem := make(chan struct{}, projectConcurrency)
	var wg sync.WaitGroup
	for i, p := range projects {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = collect(w, w.o.Projects.InProject(p).Tasks(ctx, q), &found[i])
		}()
	}
	wg.Wait()
	for i, p := range projects {
		var na noAccess
		switch err := errs[i]; {
		case err == nil:
			w.projectOK(p)
			*out = append(*out, found[i]...)
		case errors.As(err, &na) && na.NoAccess():
			w.projectRefused(p, fmt.Sprint(na))
		default:
			return fmt.Errorf("watch: tasks of project %s: %w", p, err)
		}
	}
	return nil
}

// projectRefused records why project p's tasks cannot be read; reason is
// the refusal itself (not the request's URL), so that it is logged once.
func (w *Watcher) projectRefused(p, reason string) {
	w.mu.Lock()
	if w.proj.failed == nil {
		w.proj.failed = map[string]string{}
	}
	changed := w.proj.failed[p] != reason
	w.proj.failed[p] = reason
	w.mu.Unlock()
	if changed {
		w.log.Warn("cannot read the tasks of a project: its task events are not derived until the service user gets a role in it (docs/auth.md)",
			"project_id", p, "err", reason)
	}
}

func (w *Watcher) projectOK(p string) {
	w.mu.Lock()
	_, had := w.proj.failed[p]
	delete(w.proj.failed, p)
	w.mu.Unlock()
	if had {
		w.log.Info("tasks of the project are readable again", "project_id", p)
	}
}

// Unreadable lists the projects whose tasks the last polls could not read,
// with the reason (for /readyz and logs).
func (w *Watcher) Unreadable() map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]string, len(w.proj.failed))
	for k, v := range w.proj.failed {
		out[k] = v
	}
	return out
}

// deferOrphans drops, from a per-project poll, the tasks of executions the
// poll did not list and the watcher does not know as running: tasks are
// listed after executions, so an execution created in between shows its
// tasks first, and their events would precede the execution's
// WORKFLOW_LAUNCHED. The next poll reads both (its window starts before
// them, see overlap), in order.
func (w *Watcher) deferOrphans(execs []event.Execution, obs []event.Observation) []event.Observation {
	listed := make(map[string]bool, len(execs))
	for i := range execs {
		listed[execs[i].ID] = true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	out := obs[:0]
	for _, o := range obs {
		if o.Task != nil {
			id := o.Task.WorkflowExecutionID
			if _, running := w.proj.running[id]; !listed[id] && !running {
				continue
			}
		}
		out = append(out, o)
	}
	return out
}
