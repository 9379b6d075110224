// Package workbooks resolves which workbook defines a workflow, from the
// engine's own workbook definitions.
//
// Mistral stores a workbook's workflows as "<workbook>.<workflow>" and both
// names may contain dots, so "my.wb.main" may be workflow "main" of workbook
// "my.wb" or workflow "wb.main" of workbook "my": a prefix guess is wrong.
// The Resolver lists the workbooks through the Engine (tap/mistral), parses
// each definition's `workflows:` keys and keeps the exact set of full names
// per namespace.
//
// With Mistral's auth on, workbooks belong to a project and two projects may
// each have a workbook "ops". Mistral 15 lists a token's own project's
// workbooks only (all_projects on /v2/workbooks is a 400 "Unknown
// argument"), so with Options.Projects and AllProjects the Resolver lists
// each project's workbooks with a token scoped to it (up to 8 projects at a
// time) and keeps one index per project; WorkbookIn answers within one.
package workbooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mistral-tap/mistral-tap/tap/mistral"
)

// Engine lists workbooks page by page and reads one workbook;
// *mistral.Client implements it.
type Engine interface {
	Workbooks(ctx context.Context, q url.Values) iter.Seq2[[]mistral.Workbook, error]
	Workbook(ctx context.Context, name, namespace string) (mistral.Workbook, error)
}

// Options configure a Resolver.
type Options struct {
	// Engine answers the requests. Required.
	Engine Engine
	// AllProjects, with Projects, indexes every project's workbooks;
	// without Projects it changes nothing (Mistral 15 has no all_projects
	// for workbooks). Default false.
	AllProjects bool
	// Projects lists the projects and scopes requests to one of them.
	// Default nil: one index, of the Engine's token's own project.
	Projects Projects
	// RefreshInterval is the period of Run's background refresh.
	// Default 60s.
	RefreshInterval time.Duration
	// MinRefresh is the shortest time between two refreshes caused by
	// misses, so that dotted names of standalone workflows (which always
	// miss) do not hammer the engine. Default 5s.
	MinRefresh time.Duration
	// Debounce delays the refresh after Invalidate so that a burst of
	// workbook changes causes one listing. Default 200ms.
	Debounce time.Duration
	// Log receives refresh failures; nil discards.
	Log *slog.Logger
}

// Projects is what the Resolver needs of Keystone to index every project.
type Projects interface {
	// Projects returns the project ids (→ names) to index.
	Projects(ctx context.Context) (map[string]string, error)
	// InProject returns the Engine acting within project id.
	InProject(id string) Engine
	// ProjectID resolves a project name (or id) to its id without
	// blocking, for callbacks' `project` filters.
	ProjectID(nameOrID string) (string, bool)
}

// projectConcurrency bounds a refresh's projects listed at once: one by
// one, many projects leave the index stale for as many round trips.
const projectConcurrency = 8

// nsIndex maps namespace → full workflow name → workbook. An empty workbook
// marks a name claimed by two workbooks, which is reported as unknown
// rather than guessed.
type nsIndex map[string]map[string]string

// index maps project id → nsIndex; the key is "" without Projects.
type index map[string]nsIndex

// Resolver implements matcher.WorkbookIndex from the engine's workbooks.
// Lookups never touch the network; a cached index is served while refreshes
// happen in Run's goroutine.
type Resolver struct {
	o    Options
	log  *slog.Logger
	idx  atomic.Pointer[index]
	kick chan struct{} // a miss: refresh if MinRefresh allows
	inv  chan struct{} // Invalidate: refresh after Debounce

	mu          sync.Mutex // serialises refreshes
	lastRefresh atomic.Int64
	dirty       atomic.Bool
}

// New returns a Resolver with an empty index; call Refresh or Run to fill
// it.
func New(o Options) (*Resolver, error) {
	if o.Engine == nil {
		return nil, errors.New("workbooks: Engine is required")
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = 60 * time.Second
	}
	if o.MinRefresh <= 0 {
		o.MinRefresh = 5 * time.Second
	}
	if o.Debounce <= 0 {
		o.Debounce = 200 * time.Millisecond
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r := &Resolver{o: o, log: log, kick: make(chan struct{}, 1), inv: make(chan struct{}, 1)}
	r.idx.Store(&index{})
	return r, nil
}

// WorkbookOf reports the workbook that defines workflowName in namespace,
// from the cache. It never blocks: a miss for a dotted name (which may be
// a workbook created since the last refresh) asks Run for a refresh and is
// reported as not found for now; callers that need certainty use Lookup.
func (r *Resolver) WorkbookOf(workflowName, namespace string) (string, bool) {
	wb, ok := r.get(workflowName, namespace)
	if !ok && strings.Contains(workflowName, ".") {
		signal(r.kick)
	}
	return wb, ok
}

// WorkbookIn is WorkbookOf within one project: the same name may be a
// workflow of workbook "ops" in two projects, or of two different
// workbooks. Without per-project indexes every lookup goes to the one index.
func (r *Resolver) WorkbookIn(project, workflowName, namespace string) (string, bool) {
	if !r.perProject() {
		project = ""
	}
	wb, ok := (*r.idx.Load())[project][namespace][workflowName]
	ok = ok && wb != ""
	if !ok && strings.Contains(workflowName, ".") {
		signal(r.kick)
	}
	return wb, ok
}

// ProjectID resolves a project name to its id through Options.Projects,
// for callbacks' `project` filters (matcher.ProjectNames).
func (r *Resolver) ProjectID(nameOrID string) (string, bool) {
	if r.o.Projects == nil {
		return "", false
	}
	return r.o.Projects.ProjectID(nameOrID)
}

func (r *Resolver) perProject() bool { return r.o.Projects != nil && r.o.AllProjects }

// get answers across projects: a name whose projects disagree on the
// workbook is unknown.
func (r *Resolver) get(wf, ns string) (string, bool) {
	found := ""
	for _, nsi := range *r.idx.Load() {
		wb, ok := nsi[ns][wf]
		if !ok {
			continue
		}
		if wb == "" || (found != "" && found != wb) {
			return "", false
		}
		found = wb
	}
	return found, found != ""
}

// Lookup is WorkbookOf that may refresh synchronously first: when the index
// was invalidated, or on a miss for a dotted name if the last refresh is
// older than MinRefresh. The error is the refresh's; the answer is then from
// the old index.
func (r *Resolver) Lookup(ctx context.Context, workflowName, namespace string) (string, bool, error) {
	if !r.dirty.Load() {
		if wb, ok := r.get(workflowName, namespace); ok || !strings.Contains(workflowName, ".") || !r.mayRefresh() {
			return wb, ok, nil
		}
	}
	err := r.Refresh(ctx)
	wb, ok := r.get(workflowName, namespace)
	return wb, ok, err
}

func (r *Resolver) mayRefresh() bool {
	return time.Since(time.Unix(0, r.lastRefresh.Load())) >= r.o.MinRefresh
}

// Invalidate marks the index stale (the proxy saw a workbook change): Run
// refreshes after Debounce, and Lookup refreshes before answering. It never
// blocks.
func (r *Resolver) Invalidate() {
	r.dirty.Store(true)
	signal(r.inv)
}

// WorkbooksChanged is Invalidate, under the name tap/proxy's
// WorkbookWatcher interface uses.
func (r *Resolver) WorkbooksChanged() { r.Invalidate() }

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Run refreshes at start, every RefreshInterval, after Invalidate (debounced)
// and after misses (at most once per MinRefresh) until ctx is done. Refresh
// failures are logged and the previous index kept.
func (r *Resolver) Run(ctx context.Context) error {
	refresh := func() {
		if err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("refreshing workbooks failed; keeping the previous index", "err", err)
		}
	}
	refresh()
	tick := time.NewTicker(r.o.RefreshInterval)
	defer tick.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			refresh()
		case <-r.inv:
			debounce.Reset(r.o.Debounce)
		case <-debounce.C:
			refresh()
		case <-r.kick:
			if r.mayRefresh() {
				refresh()
			}
		}
	}
}

// Refresh lists every workbook and replaces the index. On error the
// previous index stays.
func (r *Resolver) Refresh(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dirty.Store(false)
	idx, err := r.fetch(ctx)
	r.lastRefresh.Store(time.Now().UnixNano())
	if err != nil {
		r.dirty.Store(true)
		return err
	}
	r.idx.Store(&idx)
	return nil
}

func (r *Resolver) fetch(ctx context.Context) (index, error) {
	if !r.perProject() {
		nsi, err := r.fetchProject(ctx, r.o.Engine)
		if err != nil {
			return nil, err
		}
		return index{"": nsi}, nil
	}
	projects, err := r.o.Projects.Projects(ctx)
	if err != nil {
		return nil, fmt.Errorf("workbooks: %w", err)
	}
	idx := make(index, len(projects))
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	sem := make(chan struct{}, projectConcurrency)
	for id := range projects {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			nsi, err := r.fetchProject(ctx, r.o.Projects.InProject(id))
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("workbooks of project %s: %w", id, err)
			}
			idx[id] = nsi
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return idx, nil
}

// fetchProject lists the workbooks e's token sees.
func (r *Resolver) fetchProject(ctx context.Context, e Engine) (nsIndex, error) {
	idx := nsIndex{}
	for page, err := range e.Workbooks(ctx, url.Values{}) {
		if err != nil {
			return nil, fmt.Errorf("workbooks: %w", err)
		}
		for _, wb := range page {
			if err := r.add(ctx, e, idx, wb); err != nil {
				return nil, err
			}
		}
	}
	return idx, nil
}

// add indexes the workflows of one workbook.
func (r *Resolver) add(ctx context.Context, e Engine, idx nsIndex, wb mistral.Workbook) error {
	if wb.Definition == "" {
		// Some deployments list workbooks without definitions; fetch the
		// one resource.
		one, err := e.Workbook(ctx, wb.Name, wb.Namespace)
		if err != nil {
			return fmt.Errorf("workbooks: %w", err)
		}
		wb.Definition = one.Definition
	}
	wfs, err := workflowNames(wb.Definition)
	if err != nil {
		r.log.Warn("cannot parse workbook definition; skipping it", "workbook", wb.Name, "namespace", wb.Namespace, "err", err)
		return nil
	}
	m := idx[wb.Namespace]
	if m == nil {
		m = map[string]string{}
		idx[wb.Namespace] = m
	}
	for _, wf := range wfs {
		full := wb.Name + "." + wf
		if prev, dup := m[full]; dup && prev != wb.Name {
			m[full] = "" // ambiguous: do not guess
			continue
		}
		m[full] = wb.Name
	}
	return nil
}

// workflowNames returns the keys of a workbook definition's `workflows:`.
func workflowNames(def string) ([]string, error) {
	var d struct {
		Workflows map[string]yaml.Node `yaml:"workflows"`
	}
	if err := yaml.Unmarshal([]byte(def), &d); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(d.Workflows))
	for k := range d.Workflows {
		out = append(out, k)
	}
	return out, nil
}
