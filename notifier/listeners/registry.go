package listeners

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/matcher"
	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/notifier/payload"
	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// RoutePrefix starts every listener's route name in the dispatcher.
const RoutePrefix = notifier.ListenerPrefix

var _ Dispatcher = (*notifier.Dispatcher)(nil)

// RouteName is listener id's route name.
func RouteName(id string) string { return RoutePrefix + id }

// Source is what the registry reads and deletes in the store.
type Source interface {
	Listeners(ctx context.Context) ([]store.Listener, error)
	DeleteListener(ctx context.Context, id string) (bool, error)
	// OpenRoots lists the root executions with an event since `since` and
	// no terminal event of their own: a workflow or workbook listener's
	// backfill.
	OpenRoots(ctx context.Context, since time.Time) ([]string, error)
}

// HistoryReader, when the Source has it (both stores do), lets the
// registry learn a sub-execution listener's subtree from the history before
// any event is matched against its route (see prime).
type HistoryReader interface {
	History(ctx context.Context, roots []string) ([]store.Recorded, error)
}

// RootsReader, when the Source has it, lists every root with an event
// since a time, ended or not: a workflow or workbook listener's backfill
// then also covers executions that started and ended between its
// registration and its activation (a follower took the POST, or a
// fail-over came between), which OpenRoots leaves out.
type RootsReader interface {
	RootsSince(ctx context.Context, since time.Time) ([]string, error)
}

// Dispatcher runs the listeners' routes; *notifier.Dispatcher is one.
type Dispatcher interface {
	AddListenerWith(ctx context.Context, rt notifier.Route, o notifier.ListenerOptions) (int, error)
	RemoveListener(name, reason string)
	ListenerIdle(name string) bool
}

// RegistryOptions configure a Registry.
type RegistryOptions struct {
	// Store holds the listeners. Required.
	Store Source
	// Dispatcher runs them. Required.
	Dispatcher Dispatcher
	// Sealer opens their specs. Required.
	Sealer *Sealer
	// Base is the callback every listener's route starts from: timeout,
	// retries, retry policy, ordering, concurrency, CloudEvents settings
	// (the app fills it from the delivery defaults). Its filters, URL,
	// headers and secrets are replaced by the listener's.
	Base config.Callback
	// HistoryRetention is how far back a workflow or workbook listener's
	// backfill looks for open root executions (the store keeps history that
	// long). Default 24h.
	HistoryRetention time.Duration
	// CatchUp bounds how far back a workflow or workbook listener's
	// backfill looks for executions that ended before it was activated
	// (from its registration, at most CatchUp ago): enough for a follower's
	// registration or a fail-over, without reading the whole history again
	// for every such listener at every start. Default 10m.
	CatchUp time.Duration
	// Interval is how often the registry syncs from the store (other
	// replicas' registrations, expiry, finished scopes). Default 1s.
	Interval time.Duration
	// Settle is how long after its scope's final event an execution or
	// task listener waits before it may be removed, so that the final
	// event's delivery is stored before ListenerIdle is asked. Default 5s.
	Settle time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// Registry keeps the stored listeners active in the dispatcher and tells
// it which listeners an event goes to (it is the dispatcher's listener
// Matcher). Every replica may run one; only the one told SetActive(true)
// (the HA leader, whose dispatcher runs) activates, expires and removes.
type Registry struct {
	o       RegistryOptions
	log     *slog.Logger
	changed chan struct{}

	mu     sync.RWMutex
	active bool
	byID   map[string]*live
	byRoot map[string][]*live // execution and task scopes with a known root
	wide   []*live            // the others: checked for every event
	// failed counts activation failures per id, so that a listener that
	// cannot be activated is logged once, not every second.
	failed map[string]int
	// dormant are the ids active before SetActive(false).
	dormant map[string]bool
}

// NewRegistry checks o and returns an inactive registry.
func NewRegistry(o RegistryOptions) (*Registry, error) {
	if o.Store == nil || o.Dispatcher == nil || o.Sealer == nil {
		return nil, errors.New("listeners: registry needs a store, a dispatcher and a sealer")
	}
	if o.HistoryRetention <= 0 {
		o.HistoryRetention = 24 * time.Hour
	}
	if o.CatchUp <= 0 {
		o.CatchUp = 10 * time.Minute
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Settle <= 0 {
		o.Settle = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry{
		o: o, log: log, changed: make(chan struct{}, 1),
		byID: map[string]*live{}, byRoot: map[string][]*live{}, failed: map[string]int{}, dormant: map[string]bool{},
	}, nil
}

// Changed asks for a sync now (a listener was created or deleted here).
// It never blocks.
func (r *Registry) Changed() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// SetActive turns activation on (this replica's dispatcher runs) or off.
// Turning it off forgets the activations without removing the routes: the
// dispatcher that held them stops, and their pending deliveries stay for
// the next leader. Their ids are kept as dormant: turned on again, the
// registry adds the routes of those still stored again (AddListener leaves
// a route it has alone) and removes the others, which another leader
// removed meanwhile.
func (r *Registry) SetActive(active bool) {
	r.mu.Lock()
	r.active = active
	if !active {
		for id := range r.byID {
			r.dormant[id] = true
		}
		r.byID, r.byRoot, r.wide = map[string]*live{}, map[string][]*live{}, nil
	}
	r.mu.Unlock()
	r.Changed()
}

// Run syncs every Interval and after every Changed, until ctx ends.
func (r *Registry) Run(ctx context.Context) error {
	t := time.NewTicker(r.o.Interval)
	defer t.Stop()
	for {
		if err := r.sync(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("listeners: sync", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-r.changed:
		}
	}
}

// Match returns the route names of the active listeners ev goes to. It is
// safe for concurrent use with itself and with sync.
func (r *Registry) Match(ev *event.Event) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for _, lv := range r.byRoot[ev.RootExecutionID] {
		if lv.match(ev, r.o.Now) {
			out = append(out, lv.name)
		}
	}
	for _, lv := range r.wide {
		if lv.match(ev, r.o.Now) {
			out = append(out, lv.name)
		}
	}
	return out
}

// sync brings the activations in line with the store.
func (r *Registry) sync(ctx context.Context) error {
	r.mu.RLock()
	active := r.active
	r.mu.RUnlock()
	if !active {
		return nil
	}
	ls, err := r.o.Store.Listeners(ctx)
	if err != nil {
		return fmt.Errorf("reading listeners: %w", err)
	}
	now := r.o.Now()
	stored := make(map[string]bool, len(ls))
	var errs []error
	for _, l := range ls {
		stored[l.ID] = true
		switch lv := r.get(l.ID); {
		case expired(l, now):
			errs = append(errs, r.remove(ctx, l.ID, "listener expired"))
		case lv == nil:
			errs = append(errs, r.activate(ctx, l))
		case lv.finished(now, r.o.Settle) && r.o.Dispatcher.ListenerIdle(lv.name):
			errs = append(errs, r.remove(ctx, l.ID, "scope finished"))
		}
	}
	for _, id := range r.ids() {
		if !stored[id] {
			r.forget(id, "listener deleted")
		}
	}
	r.wakeDormant(stored)
	return errors.Join(errs...)
}

// wakeDormant removes the routes of dormant listeners that are no longer
// stored; the stored ones were activated again by this sync.
func (r *Registry) wakeDormant(stored map[string]bool) {
	r.mu.Lock()
	var gone []string
	for id := range r.dormant {
		if !stored[id] {
			gone = append(gone, id)
		}
		if r.byID[id] != nil || !stored[id] {
			delete(r.dormant, id)
		}
	}
	r.mu.Unlock()
	for _, id := range gone {
		r.o.Dispatcher.RemoveListener(RouteName(id), "listener deleted")
	}
}

func (r *Registry) get(id string) *live {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byID[id]
}

func (r *Registry) ids() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.byID))
	for id := range r.byID {
		out = append(out, id)
	}
	return out
}

// activate indexes l, then adds its route: in that order, because an event
// accepted after AddListener has taken its lock is routed live (by Match)
// and not found in the backfill.
func (r *Registry) activate(ctx context.Context, l store.Listener) error {
	lv, rt, err := r.prepare(l)
	if err != nil {
		return r.failure(l.ID, err)
	}
	if !r.index(lv) {
		return nil // deactivated meanwhile
	}
	// The roots are read by the dispatcher after its barrier (see
	// notifier.Roots): an execution started while this listener is being
	// activated (a new leader draining its queue) is then in the backfill
	// or matched live, never in neither.
	o := notifier.ListenerOptions{
		Roots: func(ctx context.Context) ([]string, error) { return r.backfillRoots(ctx, l) },
		Keep:  func(ev *event.Event) bool { return lv.match(ev, r.o.Now) },
	}
	if lv.execs != nil && l.RootID != "" {
		// Only a sub-execution listener holds Accepts up (see prime).
		o.Ready = func(ctx context.Context) error { return r.prime(ctx, lv, []string{l.RootID}) }
	}
	n, err := r.o.Dispatcher.AddListenerWith(ctx, rt, o)
	switch {
	case errors.Is(err, notifier.ErrNotRunning):
		// Not started yet, or stopping: the next sync tries again.
		r.unindex(l.ID)
		return nil
	case err != nil:
		r.unindex(l.ID)
		return r.failure(l.ID, fmt.Errorf("adding its route: %w", err))
	}
	r.mu.Lock()
	delete(r.failed, l.ID)
	r.mu.Unlock()
	r.log.Info("listeners: active", "listener", l.ID, "scope", l.Scope, "backfilled", n)
	return nil
}

// backfillRoots are the roots whose history a new listener gets: its
// root for an execution or task scope; for the others the open roots, plus
// every root with an event since the registration (ended meanwhile), at
// most CatchUp ago.
func (r *Registry) backfillRoots(ctx context.Context, l store.Listener) ([]string, error) {
	if l.RootID != "" && (l.Scope == ScopeExecution || l.Scope == ScopeTask) {
		return []string{l.RootID}, nil
	}
	roots, err := r.o.Store.OpenRoots(ctx, r.o.Now().Add(-r.o.HistoryRetention))
	if err != nil {
		return nil, fmt.Errorf("open roots: %w", err)
	}
	rr, ok := r.o.Store.(RootsReader)
	if !ok {
		return roots, nil
	}
	// CreatedAt has whole seconds: a second earlier covers its own.
	from := l.CreatedAt.Add(-time.Second)
	if floor := r.o.Now().Add(-r.o.CatchUp); from.Before(floor) {
		from = floor
	}
	since, err := rr.RootsSince(ctx, from)
	if err != nil {
		return nil, fmt.Errorf("roots since the registration: %w", err)
	}
	roots = append(roots, since...)
	slices.Sort(roots)
	return slices.Compact(roots), nil
}

// prime feeds a sub-execution listener the history of its root; it is
// the listener's Ready, run by the dispatcher once every event that did not
// see the route is in the history and before any Accept is matched against
// it. The backfill feeds it the same events, but live events are matched
// while it runs: a grandchild's first event would come before the backfill
// has seen the task that started it, and be rejected. A failure fails the
// activation (the next sync retries): going live without the subtree
// would lose such events.
func (r *Registry) prime(ctx context.Context, lv *live, roots []string) error {
	hr, ok := r.o.Store.(HistoryReader)
	if !ok || len(roots) == 0 {
		return nil
	}
	recs, err := hr.History(ctx, roots)
	if err != nil {
		return fmt.Errorf("reading the history of its root: %w", err)
	}
	for _, rec := range recs {
		var ev event.Event
		if err := json.Unmarshal(rec.Event, &ev); err != nil {
			continue // the backfill reports what it cannot read
		}
		lv.inSubtree(&ev)
	}
	return nil
}

// failure logs an activation failure once per listener; the next syncs
// try again quietly.
func (r *Registry) failure(id string, err error) error {
	r.mu.Lock()
	r.failed[id]++
	first := r.failed[id] == 1
	r.mu.Unlock()
	if first {
		return fmt.Errorf("listener %s cannot be activated: %w", id, err)
	}
	return nil
}

// prepare opens l's spec and builds its matcher state and route.
func (r *Registry) prepare(l store.Listener) (*live, notifier.Route, error) {
	sp, err := r.o.Sealer.Open(l.ID, l.Spec)
	if err != nil {
		return nil, notifier.Route{}, err
	}
	lv, err := newLive(l)
	if err != nil {
		return nil, notifier.Route{}, err
	}
	cb := r.o.Base
	cb.Name, cb.Events, cb.Type = lv.name, l.Events, ""
	cb.Workbook, cb.Workflow, cb.Namespace, cb.Task, cb.Project = "", "", nil, "", ""
	cb.URL, cb.Method, cb.Headers, cb.Format = sp.URL, sp.Method, sp.Headers, sp.Format
	cb.Secret, cb.SecretFile, cb.Secrets, cb.Template = sp.Secret, "", nil, ""
	f, err := payload.New(payload.Spec{
		Format: sp.Format, Method: sp.Method, Headers: sp.Headers, URL: sp.URL,
		CloudEventsMode: cb.CloudEvents.Mode, Source: cb.CloudEvents.Source,
	})
	if err != nil {
		return nil, notifier.Route{}, err
	}
	rt := notifier.Route{Callback: cb, Format: f}
	if sp.Secret != "" {
		rt.Secrets = []string{sp.Secret}
	}
	return lv, rt, nil
}

func (r *Registry) index(lv *live) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.active {
		return false
	}
	r.byID[lv.l.ID] = lv
	if root := lv.rootKey(); root != "" {
		r.byRoot[root] = append(r.byRoot[root], lv)
	} else {
		r.wide = append(r.wide, lv)
	}
	return true
}

func (r *Registry) unindex(id string) *live {
	r.mu.Lock()
	defer r.mu.Unlock()
	lv := r.byID[id]
	if lv == nil {
		return nil
	}
	delete(r.byID, id)
	drop := func(s []*live) []*live {
		out := s[:0:0]
		for _, x := range s {
			if x != lv {
				out = append(out, x)
			}
		}
		return out
	}
	if root := lv.rootKey(); root != "" {
		if r.byRoot[root] = drop(r.byRoot[root]); len(r.byRoot[root]) == 0 {
			delete(r.byRoot, root)
		}
	} else {
		r.wide = drop(r.wide)
	}
	return lv
}

// remove deletes listener id from the store (first: should this process
// stop in between, the next leader removes it again) and its route.
func (r *Registry) remove(ctx context.Context, id, reason string) error {
	if _, err := r.o.Store.DeleteListener(ctx, id); err != nil {
		return fmt.Errorf("listener %s: deleting (%s): %w", id, reason, err)
	}
	r.forget(id, reason)
	return nil
}

// forget removes id's route; its pending deliveries become dead letters
// with reason.
func (r *Registry) forget(id, reason string) {
	if r.unindex(id) != nil {
		r.o.Dispatcher.RemoveListener(RouteName(id), reason)
		r.log.Info("listeners: removed", "listener", id, "reason", reason)
	}
	r.mu.Lock()
	delete(r.failed, id)
	r.mu.Unlock()
}

// live is an active listener's matching state.
type live struct {
	l      store.Listener
	name   string
	events map[event.Type]bool

	mu sync.Mutex
	// execs and tasks are the subtree of a non-root execution scope: the
	// scoped execution, the tasks of executions in the set, and the
	// executions those tasks started. Events arrive in causal order per
	// root, so a parent is always seen before its children.
	execs, tasks map[string]bool
	// doneAt is when the scope's final event was seen (zero: not yet).
	doneAt time.Time
}

func newLive(l store.Listener) (*live, error) {
	set, err := matcher.EventSet(l.Events)
	if err != nil {
		return nil, err
	}
	lv := &live{l: l, name: RouteName(l.ID), events: set}
	if l.Scope == ScopeExecution && l.RootID != l.ScopeValue {
		lv.execs, lv.tasks = map[string]bool{l.ScopeValue: true}, map[string]bool{}
	}
	if l.Scope == ScopeWorkflow {
		if _, err := path.Match(l.ScopeValue, ""); err != nil {
			return nil, fmt.Errorf("workflow_name glob: %w", err)
		}
	}
	return lv, nil
}

// rootKey is the root execution whose events alone can match, or "".
func (lv *live) rootKey() string {
	if lv.l.Scope == ScopeExecution || lv.l.Scope == ScopeTask {
		return lv.l.RootID
	}
	return ""
}

// match reports whether ev goes to this listener, and notes the scope's
// final event.
func (lv *live) match(ev *event.Event, now func() time.Time) bool {
	if !lv.l.ExpiresAt.IsZero() && !now().Before(lv.l.ExpiresAt) {
		return false // expired since the last sync
	}
	if !lv.inScope(ev, now) {
		return false
	}
	return lv.events[ev.Type]
}

func (lv *live) inScope(ev *event.Event, now func() time.Time) bool {
	v := lv.l.ScopeValue
	switch lv.l.Scope {
	case ScopeExecution:
		in := lv.inSubtree(ev)
		if in && ev.Execution != nil && ev.Execution.ID == v && ev.Type.Terminal() {
			lv.done(now())
		}
		return in
	case ScopeTask:
		in := ev.Task != nil && ev.Task.ID == v
		if in && ev.Type.Terminal() {
			lv.done(now())
		}
		return in
	case ScopeWorkflow:
		ok, _ := path.Match(v, ev.WorkflowName())
		return ok && lv.sameProject(ev)
	case ScopeWorkbook:
		return strings.HasPrefix(ev.WorkflowName(), v+".") && lv.sameProject(ev)
	}
	return false
}

// inSubtree answers for an execution scope.
func (lv *live) inSubtree(ev *event.Event) bool {
	if lv.execs == nil {
		// The scoped execution is a root: its tree is its root's events.
		return ev.RootExecutionID == lv.l.ScopeValue
	}
	lv.mu.Lock()
	defer lv.mu.Unlock()
	switch {
	case ev.Task != nil:
		if lv.execs[ev.Task.WorkflowExecutionID] {
			lv.tasks[ev.Task.ID] = true
			return true
		}
	case ev.Execution != nil:
		if lv.execs[ev.Execution.ID] {
			return true
		}
		if p := ev.Execution.TaskExecutionID; p != nil && lv.tasks[*p] {
			lv.execs[ev.Execution.ID] = true
			return true
		}
	}
	return false
}

// sameProject keeps a workflow or workbook listener to its own project's
// events (execution and task scopes are one project's by construction).
func (lv *live) sameProject(ev *event.Event) bool {
	if lv.l.ProjectID == "" {
		return true
	}
	p := ""
	switch {
	case ev.Task != nil:
		p = ev.Task.ProjectID
	case ev.Execution != nil:
		p = ev.Execution.ProjectID
	}
	return p == lv.l.ProjectID
}

func (lv *live) done(at time.Time) {
	lv.mu.Lock()
	if lv.doneAt.IsZero() {
		lv.doneAt = at
	}
	lv.mu.Unlock()
}

// finished reports whether the final event was seen at least settle ago.
func (lv *live) finished(now time.Time, settle time.Duration) bool {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	return !lv.doneAt.IsZero() && !now.Before(lv.doneAt.Add(settle))
}
