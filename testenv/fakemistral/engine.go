// Package fakemistral is an in-process imitation of OpenStack Mistral 15's
// v2 REST API and engine, good enough that a reverse proxy in front of it
// cannot tell it from the real thing for the resources mistral-tap cares
// about (executions, tasks, workflows, workbooks, action executions).
//
// Workflows are written in a subset of Mistral's DSL v2, so the same YAML runs
// on a real Mistral in end-to-end tests. The engine also records, as ground
// truth, every notification Mistral's built-in notifier would have sent
// (NotifierEvents), so tests can compare what mistral-tap derived against it.
//
// # Supported DSL subset
//
// version '2.0'; standalone workflow files (every top-level key but version
// is a workflow) and workbooks (name + workflows, stored as "<wb>.<wf>",
// dotted names allowed; references inside a workbook resolve to "<wb>.<x>"
// first); `?namespace=` (lookups fall back to the default namespace).
// Workflows: type direct (default) or reverse (`requires`, params.task_name),
// input (names or name: default), vars, output. Tasks: action std.noop,
// std.echo (output), std.sleep (seconds, fractional allowed), std.fail;
// workflow (sub-workflow); inline "k=v" parameters and input:; publish,
// publish-on-error; on-success / on-error / on-complete (string, list, or
// {task: condition}; engine commands fail, succeed, pause); retry {count,
// delay}; wait-before; wait-after; join (all or N); with-items
// ("x in <% $.list %>"); pause-before. Expressions: `<% $.a.b %>`,
// `{{ _.a }}`, task().result, task(name).result|published|state and JSON
// literals — nothing else of YAQL/Jinja.
//
// # Engine behaviour, as in Mistral 15
//
//   - Creating an execution is IDLE→RUNNING (WORKFLOW_LAUNCHED, created_at ==
//     updated_at); tasks are created RUNNING with updated_at null.
//   - Failures with retry: TASK_FAILED, null (DELAYED), TASK_LAUNCHED, per
//     retry; runtime_context carries retry_task_policy.retry_no.
//   - wait-before: TASK_LAUNCHED, null (DELAYED), TASK_LAUNCHED. wait-after:
//     null (DELAYED) after the action, then TASK_SUCCEEDED (DELAYED→SUCCESS,
//     as Mistral's WaitAfterPolicy completes the task from DELAYED).
//   - join: null (WAITING) on the first inbound, TASK_RESUMED when satisfied.
//   - pause-before: null (IDLE), WORKFLOW_PAUSED; resume gives
//     WORKFLOW_RESUMED then TASK_RESUMED.
//   - Pause: sub-workflows first, no task events; running actions still
//     finish (TASK_SUCCEEDED) but nothing new starts until resume. Cancel and
//     forced SUCCESS/ERROR: the execution first, then its unfinished
//     sub-workflows; running tasks never report again.
//   - The workflow completes when no task is incomplete: ERROR if a task
//     failed without on-error/on-complete, else SUCCESS.
//   - Rerun (PUT /v2/tasks/{id}): for each ancestor from the root down,
//     WORKFLOW_RERUN then TASK_RERUN of the task holding the sub-workflow;
//     then WORKFLOW_RERUN and TASK_RERUN of the task itself, whose action runs
//     again (a WORKFLOW task starts a new sub-workflow).
//
// Rerun convention: std.fail fails on every run, except when the execution's
// input has `fail_until_rerun: true`, in which case it fails only on a task's
// first run and succeeds once the task has been rerun through
// PUT /v2/tasks/{id}. (On a real Mistral the declared input is simply unused
// and the rerun fails again.)
//
// Actions complete on a single scheduler goroutine, in due-time order with
// ties broken by scheduling order, so parallel branches interleave the same
// way on every run. Real Mistral does not promise any order there.
package fakemistral

import (
	"container/heap"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

const (
	projectID = "<default-project>"
	timeFmt   = "2006-01-02 15:04:05"
)

// Options configure an Engine. The zero value is usable.
type Options struct {
	// Now is the clock (default time.Now); timestamps are truncated to
	// whole seconds UTC, as Mistral stores them.
	Now func() time.Time
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
	// Tokens, when not nil, turns auth on: every API request must carry an
	// X-Auth-Token listed here (401 otherwise) and sees its project's
	// executions, tasks, action executions, workflows and workbooks only
	// (404 for another project's by id; lists filtered), plus what the Go
	// API made (the default project's, shared); see Token for admins.
	// Workflow names stay unique across projects. Default nil (auth off,
	// everything in the default project).
	Tokens map[string]Token
}

// NotifierEvent is one notification Mistral's built-in notifier would have
// posted, had the execution had params.notify with every event type.
type NotifierEvent struct {
	// Event is the Mistral event name ("WORKFLOW_LAUNCHED", ...), or "" for
	// the notifier's null events (DELAYED, WAITING and IDLE targets).
	Event string
	// EntityID is the execution or task id.
	EntityID string
	// Kind is "EXECUTION" or "TASK".
	Kind string
	// RootExecutionID is the top-level execution the entity belongs to.
	RootExecutionID string
	// Payload is exactly the body the webhook publisher would post,
	// including "event" (nil for null events).
	Payload map[string]any
}

// Engine is the fake Mistral: an http.Handler for the API plus the engine
// that runs executions. All state sits behind one mutex; executions advance
// on timers whose callbacks take that mutex.
type Engine struct {
	now func() time.Time
	log *slog.Logger

	mu        sync.Mutex
	closed    bool
	down      bool
	seq       uint64                  // orders creation for stable listing
	workflows map[string]*workflowDef // by id
	workbooks map[string]*workbookDef // by id
	execs     map[string]*execution
	tasks     map[string]*task
	actions   map[string]*actionExec
	events    []NotifierEvent
	queue     jobQueue
	wake      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	// changed is closed and replaced on every state change (WaitDone).
	changed chan struct{}
	tokens  map[string]Token
	// viewer is the token of the request being served (nil with auth off
	// or outside a request), allProjects its all_projects=true as admin.
	viewer      *Token
	allProjects bool
}

// New returns a running fake engine.
func New(opts Options) *Engine {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	e := &Engine{
		now:       now,
		log:       log,
		workflows: map[string]*workflowDef{},
		workbooks: map[string]*workbookDef{},
		execs:     map[string]*execution{},
		tasks:     map[string]*task{},
		actions:   map[string]*actionExec{},
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		changed:   make(chan struct{}),
		tokens:    maps.Clone(opts.Tokens),
	}
	go e.schedule()
	return e
}

// Close stops the scheduler, so running executions advance no further, and
// waits for it to exit. Executions stay where they are; the HTTP API keeps
// answering. Close is idempotent.
func (e *Engine) Close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		<-e.done
		return
	}
	e.closed = true
	e.queue = nil
	e.mu.Unlock()
	close(e.stop)
	<-e.done
}

// SetDown simulates a dead engine: while down, every request is answered by
// closing the connection without a response.
func (e *Engine) SetDown(down bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.down = down
}

// DefineWorkflow creates the workflows of a standalone workflow file, like
// POST /v2/workflows?namespace=namespace.
func (e *Engine) DefineWorkflow(yamlDef string, namespace string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, err := e.createWorkflows(yamlDef, namespace, false)
	return err
}

// DefineWorkbook creates a workbook and its workflows, like
// POST /v2/workbooks?namespace=namespace.
func (e *Engine) DefineWorkbook(yamlDef string, namespace string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, err := e.createWorkbook(yamlDef, namespace, false)
	return err
}

// Start starts an execution without going through HTTP, as another client
// talking to Mistral directly (bypassing the proxy) would. The namespace is
// params["namespace"] when it is a string.
func (e *Engine) Start(workflowName string, input map[string]any, params map[string]any) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ns, _ := params["namespace"].(string)
	ex, err := e.startExecution(startRequest{
		workflow: workflowName, namespace: ns,
		input: maps.Clone(input), params: maps.Clone(params),
	})
	if err != nil {
		return "", err
	}
	return ex.ID, nil
}

// NotifierEvents returns every notification so far, in causal order.
func (e *Engine) NotifierEvents() []NotifierEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]NotifierEvent, len(e.events))
	for i, ev := range e.events {
		ev.Payload = maps.Clone(ev.Payload)
		out[i] = ev
	}
	return out
}

// WaitDone waits until the execution and all its sub-workflow executions are
// completed (SUCCESS, ERROR or CANCELLED), or ctx ends.
func (e *Engine) WaitDone(ctx context.Context, execID string) error {
	for {
		e.mu.Lock()
		ex, ok := e.execs[execID]
		if !ok {
			e.mu.Unlock()
			return fmt.Errorf("waiting for execution %s: not found", execID)
		}
		done := e.treeDone(ex)
		ch := e.changed
		state := ex.State
		e.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for execution %s (state %s): %w", execID, state, ctx.Err())
		}
	}
}

// WaitEvents waits until cond holds for the notifications so far (checked
// on every state change, never by polling), or ctx ends. cond must not
// block.
func (e *Engine) WaitEvents(ctx context.Context, cond func([]NotifierEvent) bool) error {
	for {
		e.mu.Lock()
		ch := e.changed
		e.mu.Unlock()
		if cond(e.NotifierEvents()) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for notifications: %w", ctx.Err())
		}
	}
}

func (e *Engine) treeDone(ex *execution) bool {
	if !event.Completed(ex.State) {
		return false
	}
	for _, c := range e.execs {
		if c.parentExec == ex && !e.treeDone(c) {
			return false
		}
	}
	return true
}

// ServeHTTP serves the Mistral v2 API.
func (e *Engine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	down := e.down
	e.mu.Unlock()
	if down {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		// Not hijackable (e.g. a ResponseRecorder): the closest thing.
		panic(http.ErrAbortHandler)
	}
	e.route(w, r)
}

// stamp is the current time as Mistral stores it.
func (e *Engine) stamp() string {
	return e.now().UTC().Truncate(time.Second).Format(timeFmt)
}

func (e *Engine) nextSeq() uint64 {
	e.seq++
	return e.seq
}

// broadcast wakes WaitDone callers. Caller holds e.mu.
func (e *Engine) broadcast() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// after schedules fn to run under e.mu after d. Jobs run one at a time on
// the scheduler goroutine, in (due time, scheduling order), so parallel
// branches advance in a deterministic order.
func (e *Engine) after(d time.Duration, fn func()) {
	if e.closed {
		return
	}
	heap.Push(&e.queue, job{due: time.Now().Add(d), seq: e.nextSeq(), fn: fn})
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// schedule is the scheduler loop; it ends when Close is called.
func (e *Engine) schedule() {
	defer close(e.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return
		}
		wait := time.Hour
		if len(e.queue) > 0 {
			if d := time.Until(e.queue[0].due); d > 0 {
				wait = d
			} else {
				j := heap.Pop(&e.queue).(job)
				j.fn()
				e.broadcast()
				e.mu.Unlock()
				continue
			}
		}
		e.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-e.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-e.stop:
			return
		}
	}
}

type job struct {
	due time.Time
	seq uint64
	fn  func()
}

type jobQueue []job

func (q jobQueue) Len() int { return len(q) }
func (q jobQueue) Less(i, j int) bool {
	if !q[i].due.Equal(q[j].due) {
		return q[i].due.Before(q[j].due)
	}
	return q[i].seq < q[j].seq
}
func (q jobQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *jobQueue) Push(x any)   { *q = append(*q, x.(job)) }
func (q *jobQueue) Pop() any {
	old := *q
	j := old[len(old)-1]
	*q = old[:len(old)-1]
	return j
}

func strp(s string) *string { return &s }
