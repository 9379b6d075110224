// Package track derives lifecycle events from observations of Mistral
// executions and tasks.
//
// The Tracker remembers the last known (state, updated_at) of every entity.
// An observation that is newer than what is known yields the events of
// Mistral's own from→to map (event.For), including the ones the entity must
// have gone through unseen (marked inferred); an observation that is not
// newer yields nothing, so the tap and the watcher seeing the same
// transition produce one event. Events get a deterministic id and a
// sequence number per root execution, and are handed to a Sink together with
// the new states in one call, so that a durable Sink can record both
// atomically.
package track

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// Sink receives derived events with the entity states that produced them.
// Accept must record both durably and atomically before it returns nil; on
// error the tracker retries the same batch, so nothing is lost.
type Sink interface {
	Accept(ctx context.Context, events []event.Event, states []event.EntityState) error
}

// Fetcher reads one execution (and, with tasks, its tasks and its
// sub-executions with theirs) from the engine. The tracker uses it to
// complete the picture where observations would otherwise yield events out
// of causal order (see complete): before it emits an execution's terminal
// event seen by the tap, so that the tasks' events come first, and before
// the first event of a task whose execution it has never seen.
type Fetcher interface {
	Fetch(ctx context.Context, executionID string, tasks bool) ([]event.Observation, error)
}

// Options configure a Tracker.
type Options struct {
	// Sink receives the events. Required.
	Sink Sink
	// Fetcher, when set, completes tap observations (see Fetcher).
	// Default nil.
	Fetcher Fetcher
	// States are the entity states recorded before a restart.
	States []event.EntityState
	// Horizon is the oldest updated_at of an entity the tracker does not
	// know yet that still counts as new. Older unknown entities are history
	// (a client listing last month's executions must not fire events).
	// Default: Now() minus 5s.
	Horizon time.Time
	// Retention is how long a completed entity is remembered after its last
	// update; afterwards it is forgotten and the horizon moves past it.
	// Default 1h.
	Retention time.Duration
	// MaxFutureSkew is how far ahead of the clock (Now) an observation's
	// updated_at may be and still order it. A later one (clock skew, a bad
	// engine row) still counts as a sighting of its state, but the entity
	// keeps its last trusted timestamp, so that later real updates are not
	// taken for stale ones. Default 5m.
	MaxFutureSkew time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Tracker derives events from observations. Create it with New, feed it with
// Observe or ObserveSync, and run it with Run.
type Tracker struct {
	sink      Sink
	fetch     Fetcher
	log       *slog.Logger
	now       func() time.Time
	retention time.Duration
	maxSkew   time.Duration

	mu      sync.Mutex
	queue   []pending
	wake    chan struct{}
	stopped bool

	// Owned by the Run goroutine only.
	entities map[string]*entity
	roots    map[string]*root
	horizon  int64
	stats    Stats
	statsMu  sync.Mutex
	// forgotten collects ids dropped by forget, for the store to drop too.
	forgotten []string
	// Owned by the Run goroutine: what suspect input was already logged.
	notes notes
}

type pending struct {
	obs  []event.Observation
	done chan error // nil for fire-and-forget observations
}

// entity is what is remembered per execution or task; kept small because
// there may be hundreds of thousands.
type entity struct {
	kind    event.Kind
	state   string
	updated int64 // unix seconds of updated_at (created_at if never updated)
	reqAt   int64 // unix nanos of the request that revealed the state
	retry   int
	// waitBefore/waitAfter: Mistral's wait policies have fired (from
	// runtime_context); pending: a wait-after delay whose first completion
	// was not seen.
	waitBefore, waitAfter, pending bool
	started                        int64 // a task's started_at, Unix seconds
	root                           *root
}

// persisted is what is stored of an entity (see event.EntityState); upd is
// its formatted updated_at, which callers already have.
func (e *entity) persisted(id, rootID, upd string) event.EntityState {
	st := event.EntityState{Kind: e.kind, ID: id, RootID: rootID, State: e.state, UpdatedAt: upd,
		RetryCount: e.retry, StartedAt: formatTS(e.started)}
	if e.reqAt != 0 {
		st.RequestedAt = time.Unix(0, e.reqAt).UTC()
	}
	if e.waitBefore {
		st.Policies |= event.WaitBeforeFired
	}
	if e.waitAfter {
		st.Policies |= event.WaitAfterFired
	}
	if e.pending {
		st.Policies |= event.WaitAfterPending
	}
	return st
}

func (e *entity) policies() policies {
	return policies{retry: e.retry, waitBefore: e.waitBefore, waitAfter: e.waitAfter, started: e.started}
}

type root struct {
	id      string
	lastSeq uint64
}

// Stats are counters for metrics and tests.
type Stats struct {
	Observations uint64 // observations processed
	Stale        uint64 // observations not newer than what was known
	History      uint64 // unknown entities older than the horizon, ignored
	Events       uint64 // events derived
	Inferred     uint64 // of which inferred
	Tracked      int    // entities currently remembered
	SinkErrors   uint64 // failed Accept calls (retried)
	// FutureTimestamps counts observations whose updated_at was more than
	// Options.MaxFutureSkew ahead of the clock (not trusted for ordering).
	FutureTimestamps uint64
	// UnknownStates counts observations in a state Mistral does not have
	// (ignored).
	UnknownStates uint64
}

// New returns a Tracker seeded with previously recorded states.
func New(o Options) (*Tracker, error) {
	if o.Sink == nil {
		return nil, errors.New("track: Options.Sink is required")
	}
	t := &Tracker{
		sink:      o.Sink,
		fetch:     o.Fetcher,
		log:       o.Logger,
		now:       o.Now,
		retention: o.Retention,
		maxSkew:   o.MaxFutureSkew,
		wake:      make(chan struct{}, 1),
		entities:  make(map[string]*entity, len(o.States)),
		roots:     make(map[string]*root),
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if t.now == nil {
		t.now = time.Now
	}
	if t.retention <= 0 {
		t.retention = time.Hour
	}
	if t.maxSkew <= 0 {
		t.maxSkew = defaultMaxFutureSkew
	}
	if o.Horizon.IsZero() {
		t.horizon = t.now().Add(-5 * time.Second).Unix()
	} else {
		t.horizon = o.Horizon.Unix()
	}
	for _, s := range o.States {
		r := t.rootFor(s.RootID)
		if s.LastSeq > r.lastSeq {
			r.lastSeq = s.LastSeq
		}
		if s.State == "" { // a root placeholder that only carries the sequence
			continue
		}
		updated := t.trustedTS(s.ID, parseTS(s.UpdatedAt), t.horizon, t.now().Add(t.maxSkew).Unix())
		e := &entity{kind: s.Kind, state: s.State, updated: updated, retry: s.RetryCount, root: r,
			waitBefore: s.Policies&event.WaitBeforeFired != 0, waitAfter: s.Policies&event.WaitAfterFired != 0,
			pending: s.Policies&event.WaitAfterPending != 0, started: parseTS(s.StartedAt)}
		if !s.RequestedAt.IsZero() {
			e.reqAt = s.RequestedAt.UnixNano()
		}
		t.entities[s.ID] = e
	}
	return t, nil
}

// Horizon is the current horizon (see Options.Horizon); the caller persists
// it so that a restart keeps ignoring the same history.
func (t *Tracker) Horizon() time.Time {
	t.statsMu.Lock()
	defer t.statsMu.Unlock()
	return time.Unix(t.horizon, 0).UTC()
}

// TakeForgotten returns the ids of entities forgotten since the last call,
// so that the durable copy of their state can be dropped as well.
func (t *Tracker) TakeForgotten() []string {
	t.statsMu.Lock()
	defer t.statsMu.Unlock()
	ids := t.forgotten
	t.forgotten = nil
	return ids
}

// Stats returns a snapshot of the counters.
func (t *Tracker) Stats() Stats {
	t.statsMu.Lock()
	defer t.statsMu.Unlock()
	return t.stats
}

// Observe queues one observation and returns at once; it never blocks the
// caller (the proxy), whatever the Sink is doing.
func (t *Tracker) Observe(o event.Observation) {
	t.enqueue(pending{obs: []event.Observation{o}})
}

// ObserveAll queues the observations of one tapped response as one request
// and returns at once, like Observe. A list of 1,000 executions is then one
// queue entry instead of 1,000 (see processQueued).
func (t *Tracker) ObserveAll(obs []event.Observation) {
	if len(obs) == 0 {
		return
	}
	t.enqueue(pending{obs: obs})
}

// ObserveSync queues observations as one batch and waits until the events
// they produced are accepted by the Sink (or ctx ends). The watcher uses it
// to advance its checkpoint only after its observations are durable.
func (t *Tracker) ObserveSync(ctx context.Context, obs []event.Observation) error {
	done := make(chan error, 1)
	if !t.enqueue(pending{obs: obs, done: done}) {
		return errors.New("track: tracker stopped")
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t *Tracker) enqueue(p pending) bool {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return false
	}
	t.queue = append(t.queue, p)
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
	return true
}

// maxBatch bounds how many queued requests are derived and committed at
// once: large enough to amortise a durable commit, small enough to keep
// latency low. maxBatchObs bounds the observations of a batch the same way
// once requests carry whole lists (a single larger request is still taken
// whole).
const (
	maxBatch    = 256
	maxBatchObs = 8192
)

// Run processes queued observations until ctx ends, then drains what is
// queued (bounded by a short grace period) so that a graceful shutdown
// loses nothing the proxy already saw.
func (t *Tracker) Run(ctx context.Context) error {
	forget := time.NewTicker(time.Minute)
	defer forget.Stop()
	for {
		select {
		case <-ctx.Done():
			t.mu.Lock()
			t.stopped = true
			t.mu.Unlock()
			drain, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			for t.processQueued(drain) {
			}
			return nil
		case <-forget.C:
			t.forget()
		case <-t.wake:
			for t.processQueued(ctx) {
			}
		}
	}
}

// processQueued handles one batch; it reports whether it found any work.
func (t *Tracker) processQueued(ctx context.Context) bool {
	t.mu.Lock()
	n, size := 0, 0
	for n < len(t.queue) && n < maxBatch && (n == 0 || size+len(t.queue[n].obs) <= maxBatchObs) {
		size += len(t.queue[n].obs)
		n++
	}
	// Take the head by re-slicing: deleting it from the front moved the
	// whole backlog on every batch, quadratic under load (it was 40% of
	// the CPU with clients listing 1,000 executions). Appends beyond the
	// taken part never touch it; an empty queue drops the old array.
	batch := t.queue[:n:n]
	t.queue = t.queue[n:]
	if len(t.queue) == 0 {
		t.queue = nil
	}
	t.mu.Unlock()
	if n == 0 {
		return false
	}
	obs := make([]event.Observation, 0, size)
	for _, p := range batch {
		obs = append(obs, p.obs...)
	}
	err := t.process(ctx, obs)
	for _, p := range batch {
		if p.done != nil {
			p.done <- err
		}
	}
	return true
}

// process derives and commits one batch, retrying the Sink until it
// accepts or ctx ends.
func (t *Tracker) process(ctx context.Context, obs []event.Observation) error {
	obs = t.complete(ctx, obs)
	c := t.derive(obs)
	if len(c.events) > 0 || len(c.states) > 0 {
		backoff := 100 * time.Millisecond
		var last string
		for {
			err := t.sink.Accept(ctx, c.events, c.states)
			if err == nil {
				if last != "" {
					t.log.Info("recording events works again")
				}
				break
			}
			t.statsMu.Lock()
			t.stats.SinkErrors++
			t.statsMu.Unlock()
			// One line per condition, not one per retry: a store that
			// cannot commit (disk full, corrupt) would flood the log.
			if msg := err.Error(); msg != last {
				last = msg
				t.log.Error("recording events failed; retrying until it works (logged once per error)", "events", len(c.events), "err", err)
			} else {
				t.log.Debug("recording events failed again; retrying", "err", err)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("track: events not recorded: %w", err)
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
		}
	}
	t.apply(c)
	return nil
}

// complete adds what the Fetcher knows to observations whose events could
// not otherwise come out in causal order, so that derive can order them:
//   - a tap observation that reveals an execution's end: its tasks (their
//     events come before the execution's end);
//   - a tapped task rerun whose execution is not in the batch: the
//     execution (Mistral sends WORKFLOW_RERUN before TASK_RERUN);
//   - a completed task whose sub-execution the batch shows still running:
//     the sub-execution with its tasks (a poll lists executions before
//     tasks, so both may have ended in between; the sub-workflow's end
//     comes before its parent task's);
//   - a task, from any source, of an execution the tracker has never seen
//     and the batch does not hold: the execution (its launch comes before
//     its tasks'). A poll lists executions before tasks, so one created in
//     between shows its tasks first; within one instance the tap has
//     usually seen it already, but among replicas the tapped creation
//     reaches the leader's tracker later than the poll.
//
// An execution fetched without its tasks that turns out to have ended
// since is fetched again with them: a rerun that finished before the fetch
// would otherwise put the execution's end before its task's.
func (t *Tracker) complete(ctx context.Context, obs []event.Observation) []event.Observation {
	if t.fetch == nil {
		return obs
	}
	inBatch := map[string]bool{}
	// running sub-executions of the batch by their parent task
	runningSub := map[string]string{}
	for _, o := range obs {
		if x := o.Execution; x != nil {
			inBatch[x.ID] = true
			if x.TaskExecutionID != nil && !event.Completed(x.State) {
				runningSub[*x.TaskExecutionID] = x.ID
			}
		}
	}
	type req struct {
		id    string
		tasks bool
	}
	var reqs []req
	seen := map[string]bool{}
	add := func(id string, tasks bool) {
		if id != "" && !seen[id] {
			seen[id] = true
			reqs = append(reqs, req{id, tasks})
		}
	}
	for _, o := range obs {
		switch {
		case o.Execution != nil:
			x := o.Execution
			known := t.entities[x.ID]
			if o.Source == event.SourceTap && !o.TasksFetched && event.Completed(x.State) && (known == nil || known.state != x.State) {
				add(x.ID, true)
			}
		case o.Task != nil:
			k := o.Task
			known := t.entities[k.ID]
			parent := k.WorkflowExecutionID
			switch {
			case inBatch[parent]:
			case o.Source == event.SourceTap && known != nil && known.state == event.StateError && k.State != event.StateError:
				add(parent, false)
			case t.entities[parent] == nil && effectiveTS(k.UpdatedAt, k.CreatedAt) >= t.horizon:
				add(parent, false)
			}
			if sub, ok := runningSub[k.ID]; ok && event.Completed(k.State) {
				add(sub, true)
			}
		}
	}
	for _, r := range reqs {
		more, err := t.fetchOne(ctx, r.id, r.tasks)
		if err == nil && !r.tasks && t.endedUnseen(r.id, more) {
			more, err = t.fetchOne(ctx, r.id, true)
		}
		if err != nil {
			t.log.Debug("completing an observation failed; the watcher will catch up", "execution", r.id, "err", err)
			continue
		}
		obs = append(obs, more...)
	}
	return obs
}

func (t *Tracker) fetchOne(ctx context.Context, id string, tasks bool) ([]event.Observation, error) {
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return t.fetch.Fetch(fctx, id, tasks)
}

// endedUnseen says whether fetched shows execution id in a completed state
// the tracker does not know it in.
func (t *Tracker) endedUnseen(id string, fetched []event.Observation) bool {
	for _, o := range fetched {
		if x := o.Execution; x != nil && x.ID == id && event.Completed(x.State) {
			known := t.entities[id]
			return known == nil || known.state != x.State
		}
	}
	return false
}

// change is the result of deriving a batch: the events, the states to
// persist, and the in-memory updates to apply once the Sink accepted them.
type change struct {
	events  []event.Event
	states  []event.EntityState
	updates map[string]*entity
	seqs    map[*root]uint64
	newRoot []*root
	// newRoots and stateAt index newRoot and states by id: a batch of many
	// new executions (a list, or a burst of POSTs) looked both up by
	// scanning, which was quadratic in the batch (a fifth of mistral-tap's
	// CPU under the delivery load).
	newRoots map[string]*root
	stateAt  map[string]int
}

// node is one entity of a batch with the steps derived for it.
type node struct {
	obs      event.Observation
	id       string
	parent   string // execution id for a task, parent task id for a sub-execution
	steps    []step
	next     *entity
	children []*node
	upd      string // formatTS(next.updated), once per node: emitSteps runs twice per node
	// stamp is the observation's own updated_at, which event ids use even
	// when next.updated kept an older trusted one (see MaxFutureSkew).
	stamp int64
}

func (n *node) kind() event.Kind {
	if n.obs.Task != nil {
		return event.KindTask
	}
	return event.KindExecution
}

// derive computes the events of a batch without touching the tracker's
// memory (apply does that after the Sink accepted them).
func (t *Tracker) derive(obs []event.Observation) change {
	// Sized for the batch up front: growing them cost more than the
	// lookups they replace in small batches.
	n := len(obs)
	c := change{updates: make(map[string]*entity, n), seqs: make(map[*root]uint64, n),
		newRoots: make(map[string]*root, n), stateAt: make(map[string]int, n)}
	newest, order := t.newestReads(obs)
	t.statsMu.Lock()
	t.stats.Observations += uint64(len(obs))
	t.statsMu.Unlock()
	nodes := t.deriveNodes(newest, order)
	order = t.inferWorkflowReruns(nodes, order)
	tops := batchTree(nodes, order)
	now := t.now()
	for _, n := range tops {
		t.emitTree(&c, n, now)
	}
	t.recordSeqs(&c)
	return c
}

// newestReads keeps the newest observation of each entity of a batch, and
// the entities in the order they first appear: the path from the known
// state to the newest read includes every transition in between, so the
// older reads add nothing. Reads without an id or a state are skipped, and
// reads in a state Mistral does not have are counted and skipped (see
// unknownState).
func (t *Tracker) newestReads(obs []event.Observation) (map[string]event.Observation, []string) {
	newest := make(map[string]event.Observation, len(obs))
	order := make([]string, 0, len(obs))
	for _, o := range obs {
		id, st, up := obsKey(o)
		if id == "" || st == "" {
			continue
		}
		if !knownState(st) {
			t.unknownState(id, st)
			continue
		}
		prev, ok := newest[id]
		if !ok {
			order = append(order, id)
			newest[id] = o
			continue
		}
		// Mistral stamps whole seconds: within one, a read with another
		// state requested later is the newer one.
		_, pst, pup := obsKey(prev)
		if up > pup || (up == pup && pst != st && o.RequestedAt.After(prev.RequestedAt)) {
			newest[id] = o
		}
	}
	return newest, order
}

// deriveNodes compares each entity's newest read with what is known (see
// deriveOne), keeping the nodes that yield something. One clock reading
// bounds the whole batch's trusted timestamps.
func (t *Tracker) deriveNodes(newest map[string]event.Observation, order []string) map[string]*node {
	nodes := make(map[string]*node, len(order))
	limit := t.now().Add(t.maxSkew).Unix()
	for _, id := range order {
		if n := t.deriveOne(newest[id], limit); n != nil {
			nodes[id] = n
		}
	}
	return nodes
}

// batchTree links the batch's nodes as a tree (execution → tasks →
// sub-executions) and returns its tops, sorted, so that an execution's
// start comes before its tasks' events and its end after them, whatever
// order the engine listed them in. A node whose parent is not in the batch
// is a top.
func batchTree(nodes map[string]*node, order []string) []*node {
	var tops []*node
	for _, id := range order {
		n := nodes[id]
		if n == nil {
			continue
		}
		if p := nodes[n.parent]; p != nil && p != n {
			p.children = append(p.children, n)
		} else {
			tops = append(tops, n)
		}
	}
	sortSiblings(tops)
	return tops
}

// emitTree emits a node's events around its children's: all but a final
// terminal (or pause) step first, then the children's, then that step, so
// that an execution ends (or pauses) after its tasks' events.
func (t *Tracker) emitTree(c *change, n *node, now time.Time) {
	sortSiblings(n.children)
	cut := len(n.steps)
	if cut > 0 && (n.steps[cut-1].typ.Terminal() || n.steps[cut-1].typ == event.WorkflowPaused) {
		cut--
	}
	t.emitSteps(c, n, n.steps[:cut], now)
	for _, ch := range n.children {
		t.emitTree(c, ch, now)
	}
	t.emitSteps(c, n, n.steps[cut:], now)
}

// recordSeqs puts each root's new sequence counter in the states to
// persist: the root execution's row carries it, so a root not otherwise
// changed by the batch gets its row (as known, or a placeholder when the
// root itself was never seen).
func (t *Tracker) recordSeqs(c *change) {
	for r, seq := range c.seqs {
		if i, ok := c.stateAt[r.id]; ok {
			c.states[i].LastSeq = seq
			continue
		}
		st := event.EntityState{Kind: event.KindExecution, ID: r.id, RootID: r.id}
		if e := t.entities[r.id]; e != nil {
			st = e.persisted(r.id, r.id, formatTS(e.updated))
		}
		st.LastSeq = seq
		c.states = append(c.states, st)
	}
}

// inferWorkflowReruns adds WORKFLOW_RERUN where a task of the batch was
// rerun but its execution's own observation cannot show it (Mistral sends
// WORKFLOW_RERUN before TASK_RERUN). It returns order with any execution it
// had to stand in for first.
func (t *Tracker) inferWorkflowReruns(nodes map[string]*node, order []string) []string {
	rerun := step{typ: event.WorkflowRerun, from: event.StateError, to: event.StateRunning, inferred: true}
	var stands []string
	for _, id := range order {
		n := nodes[id]
		if n == nil || n.kind() != event.KindTask || !hasType(n.steps, event.TaskRerun) {
			continue
		}
		known := t.entities[n.parent]
		if known == nil || known.state != event.StateError {
			continue
		}
		p := nodes[n.parent]
		switch {
		case p == nil:
			// The execution is not in this batch: stand in for it with what
			// the task tells about it, and leave it RUNNING so that its next
			// ERROR fires WORKFLOW_FAILED again.
			k := n.obs.Task
			stand := &event.Execution{ID: n.parent, WorkflowName: k.WorkflowName, WorkflowNamespace: k.WorkflowNamespace,
				WorkflowID: k.WorkflowID, ProjectID: k.ProjectID, CreatedAt: k.CreatedAt, State: event.StateRunning}
			nodes[n.parent] = &node{obs: event.Observation{Source: n.obs.Source, Execution: stand}, id: n.parent,
				next:  &entity{kind: event.KindExecution, state: event.StateRunning, updated: known.updated, reqAt: known.reqAt, root: known.root},
				steps: []step{rerun}}
			stands = append(stands, n.parent)
		case !hasType(p.steps, event.WorkflowRerun):
			rest, _ := pathFor(event.KindExecution, event.StateRunning, policies{}, false, p.next.state, policies{})
			p.steps = append([]step{rerun}, rest...)
		}
	}
	return append(stands, order...)
}

func hasType(steps []step, typ event.Type) bool {
	for _, s := range steps {
		if s.typ == typ {
			return true
		}
	}
	return false
}

// sortSiblings orders entities that share a parent by when they started:
// created_at, then started_at, then finished_at (a task that finished in the
// same second another started comes first), then id for determinism.
func sortSiblings(ns []*node) {
	slices.SortStableFunc(ns, func(a, b *node) int {
		ac, as, af := times(a.obs)
		bc, bs, bf := times(b.obs)
		return cmp.Or(cmp.Compare(ac, bc), cmp.Compare(as, bs), cmp.Compare(af, bf))
	})
}

func times(o event.Observation) (created, started, finished string) {
	inf := "9999"
	if x := o.Execution; x != nil {
		return x.CreatedAt, x.CreatedAt, inf
	}
	k := o.Task
	started, finished = k.CreatedAt, inf
	if k.StartedAt != nil {
		started = *k.StartedAt
	}
	if k.FinishedAt != nil && *k.FinishedAt != "" {
		finished = *k.FinishedAt
	}
	return k.CreatedAt, started, finished
}

func obsKey(o event.Observation) (id, state string, updated int64) {
	if x := o.Execution; x != nil {
		return x.ID, x.State, effectiveTS(x.UpdatedAt, x.CreatedAt)
	}
	if k := o.Task; k != nil {
		return k.ID, k.State, effectiveTS(k.UpdatedAt, k.CreatedAt)
	}
	return "", "", 0
}

// effectiveTS is updated_at, or created_at for an entity never updated
// (Mistral leaves updated_at null until the first update).
func effectiveTS(updated *string, created string) int64 {
	if updated != nil && *updated != "" {
		return parseTS(*updated)
	}
	return parseTS(created)
}

// deriveOne compares an observation with what is known and returns its node
// (nil when the observation is stale or history). An updated_at after limit
// (Unix seconds) is not kept as the entity's timestamp (see MaxFutureSkew).
func (t *Tracker) deriveOne(o event.Observation, limit int64) *node {
	id, state, updated := obsKey(o)
	known := t.entities[id]
	n := &node{obs: o, id: id, stamp: updated}
	kind := event.KindExecution
	var pol policies
	if o.Task != nil {
		kind = event.KindTask
		n.parent = o.Task.WorkflowExecutionID
		pol = policiesOf(o.Task.RuntimeContext)
		if o.Task.StartedAt != nil {
			pol.started = parseTS(*o.Task.StartedAt)
		}
	} else if o.Execution.TaskExecutionID != nil {
		n.parent = *o.Execution.TaskExecutionID
	}
	reqAt := o.RequestedAt.UnixNano()

	if known == nil {
		if updated < t.horizon {
			t.statsMu.Lock()
			t.stats.History++
			t.statsMu.Unlock()
			return nil
		}
		var pending bool
		n.steps, pending = pathFor(kind, "", policies{}, false, state, pol)
		n.next = &entity{kind: kind, state: state, updated: t.trustedTS(id, updated, t.horizon, limit), reqAt: reqAt, retry: pol.retry,
			waitBefore: pol.waitBefore, waitAfter: pol.waitAfter, pending: pending, started: pol.started}
		return n
	}
	// Policies only ever advance within a run; a lower retry_no is a stale
	// read, not a reset (a rerun restarts from the task's new state).
	pol.retry = max(pol.retry, known.retry)
	pol.waitBefore = pol.waitBefore || known.waitBefore
	pol.waitAfter = pol.waitAfter || known.waitAfter
	pol.started = max(pol.started, known.started)
	pol.joined = false // only matters at first sighting; not remembered
	morePolicy := pol != known.policies()
	newer := updated > known.updated ||
		(updated == known.updated && state != known.state && reqAt > known.reqAt) ||
		(updated == known.updated && morePolicy)
	if !newer {
		t.statsMu.Lock()
		t.stats.Stale++
		t.statsMu.Unlock()
		return nil
	}
	var pending bool
	n.steps, pending = pathFor(kind, known.state, known.policies(), known.pending, state, pol)
	n.next = &entity{kind: kind, state: state, updated: t.trustedTS(id, updated, known.updated, limit), reqAt: reqAt, retry: pol.retry,
		waitBefore: pol.waitBefore, waitAfter: pol.waitAfter, pending: pending, started: pol.started, root: known.root}
	return n
}

// rootOf finds the root execution of a node's entity.
func (t *Tracker) rootOf(c *change, n *node) *root {
	if k := t.entities[n.id]; k != nil && k.root != nil {
		return k.root
	}
	if u := c.updates[n.id]; u != nil && u.root != nil {
		return u.root
	}
	var id string
	if x := n.obs.Execution; x != nil {
		id = x.ID
		if x.RootExecutionID != nil && *x.RootExecutionID != "" {
			id = *x.RootExecutionID
		}
	} else {
		// A task belongs to its execution's root; if the execution is not
		// known yet, the execution itself stands in (a top-level one is
		// its own root, which is by far the common case).
		id = n.obs.Task.WorkflowExecutionID
		if p := c.updates[id]; p != nil && p.root != nil {
			return p.root
		}
		if p := t.entities[id]; p != nil && p.root != nil {
			return p.root
		}
	}
	if r, ok := t.roots[id]; ok {
		return r
	}
	if r, ok := c.newRoots[id]; ok {
		return r
	}
	r := &root{id: id}
	c.newRoot = append(c.newRoot, r)
	c.newRoots[id] = r
	return r
}

func (t *Tracker) rootFor(id string) *root {
	r, ok := t.roots[id]
	if !ok {
		r = &root{id: id}
		t.roots[id] = r
	}
	return r
}

// emitSteps turns steps into events with ids and sequence numbers.
func (t *Tracker) emitSteps(c *change, n *node, steps []step, now time.Time) {
	r := t.rootOf(c, n)
	n.next.root = r
	if n.upd == "" {
		n.upd = formatTS(n.next.updated)
	}
	upd := n.upd
	if _, ok := c.updates[n.id]; !ok {
		c.updates[n.id] = n.next
		c.stateAt[n.id] = len(c.states)
		c.states = append(c.states, n.next.persisted(n.id, r.id, upd))
	}
	for _, s := range steps {
		seq, ok := c.seqs[r]
		if !ok {
			seq = r.lastSeq
		}
		seq++
		c.seqs[r] = seq
		ev := event.Event{
			Type:            s.typ,
			Sequence:        seq,
			RootExecutionID: r.id,
			PreviousState:   s.from,
			Inferred:        s.inferred,
			Source:          n.obs.Source,
			Time:            now,
		}
		if x := n.obs.Execution; x != nil {
			cp := *x
			cp.State = s.to
			if s.inferred {
				cp.UpdatedAt = nil
				cp.StateInfo = nil
			}
			ev.Execution = &cp
		} else {
			cp := *n.obs.Task
			cp.State = s.to
			cp.RuntimeContext = nil
			if s.inferred {
				cp.StateInfo = nil
				if !event.Completed(s.to) {
					cp.FinishedAt = nil
				}
			}
			ev.Task = &cp
		}
		// An inferred event has no timestamp of its own; its source state
		// tells apart two inferred launches of one task (first sighting
		// vs. after a wait-before delay).
		stamp := upd
		if n.stamp > n.next.updated {
			stamp = formatTS(n.stamp)
		}
		if s.inferred {
			stamp = "inferred:" + s.from
		}
		ev.ID = event.NewID(n.kind(), n.id, s.typ, s.to, stamp, s.occurrence)
		c.events = append(c.events, ev)
	}
}

// apply makes a committed change the tracker's memory.
func (t *Tracker) apply(c change) {
	for _, r := range c.newRoot {
		if _, ok := t.roots[r.id]; !ok {
			t.roots[r.id] = r
		}
	}
	for id, e := range c.updates {
		if r, ok := t.roots[e.root.id]; ok {
			e.root = r
		}
		t.entities[id] = e
	}
	for r, seq := range c.seqs {
		t.rootFor(r.id).lastSeq = seq
	}
	t.statsMu.Lock()
	t.stats.Events += uint64(len(c.events))
	for _, e := range c.events {
		if e.Inferred {
			t.stats.Inferred++
		}
	}
	t.stats.Tracked = len(t.entities)
	t.statsMu.Unlock()
}

// forget drops completed entities not updated for Retention and moves the
// horizon past them, so memory stays bounded while a client listing them
// later still fires nothing. Runs on the Run goroutine.
func (t *Tracker) forget() {
	cut := t.now().Add(-t.retention).Unix()
	for id, e := range t.entities {
		if event.Completed(e.state) && e.updated < cut {
			delete(t.entities, id)
			t.statsMu.Lock()
			t.forgotten = append(t.forgotten, id)
			t.statsMu.Unlock()
		}
	}
	live := map[*root]bool{}
	for _, e := range t.entities {
		live[e.root] = true
	}
	for id, r := range t.roots {
		if !live[r] {
			delete(t.roots, id)
		}
	}
	t.statsMu.Lock()
	if cut > t.horizon {
		t.horizon = cut
	}
	t.stats.Tracked = len(t.entities)
	t.statsMu.Unlock()
}
