// Package workbooks resolves which workbook defines a workflow, from the
// engine's own workbook definitions.
//
// Mistral stores a workbook's workflows as "<workbook>.<workflow>" and both
// names may contain dots, so "my.wb.main" may be workflow "main" of workbook
// "my.wb" or workflow "wb.main" of workbook "my": a prefix guess is wrong.
// The Resolver lists the workbooks through the Engine (tap/mistral), parses
// each definition's `workflows:` keys and keeps the exact set of full names
// per namespace.
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
	// AllProjects adds all_projects=true (needs admin). Default false.
	AllProjects bool
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

// index maps namespace → full workflow name → workbook. An empty workbook
// marks a name claimed by two workbooks (possible across projects with
// all_projects), which is reported as unknown rather than guessed.
type index map[string]map[string]string

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

func (r *Resolver) get(wf, ns string) (string, bool) {
	wb, ok := (*r.idx.Load())[ns][wf]
	return wb, ok && wb != ""
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
	q := url.Values{}
	if r.o.AllProjects {
		q.Set("all_projects", "true")
	}
	idx := index{}
	for page, err := range r.o.Engine.Workbooks(ctx, q) {
		if err != nil {
			return nil, fmt.Errorf("workbooks: %w", err)
		}
		for _, wb := range page {
			if err := r.add(ctx, idx, wb); err != nil {
				return nil, err
			}
		}
	}
	return idx, nil
}

// add indexes the workflows of one workbook.
func (r *Resolver) add(ctx context.Context, idx index, wb mistral.Workbook) error {
	if wb.Definition == "" {
		// Some deployments list workbooks without definitions; fetch the
		// one resource.
		one, err := r.o.Engine.Workbook(ctx, wb.Name, wb.Namespace)
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
