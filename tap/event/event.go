// Package event is the vocabulary shared by every part of mistral-tap: the
// Mistral resources the tap and the watcher observe, the lifecycle events the
// tracker derives from them, and Mistral's own event names and state map.
//
// It has no dependencies and no behaviour beyond pure functions, so that tap,
// matcher and notifier can all import it without importing each other.
package event

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// Kind is the kind of entity an event is about. The values are the ones a
// callback's `events:` list accepts as "every event of that kind".
type Kind string

const (
	KindExecution Kind = "EXECUTION"
	KindTask      Kind = "TASK"
)

// Type is an event name, exactly as Mistral's built-in notifier spells it
// (mistral/notifiers/notification_events.py).
type Type string

const (
	WorkflowLaunched  Type = "WORKFLOW_LAUNCHED"
	WorkflowSucceeded Type = "WORKFLOW_SUCCEEDED"
	WorkflowFailed    Type = "WORKFLOW_FAILED"
	WorkflowCancelled Type = "WORKFLOW_CANCELLED"
	WorkflowPaused    Type = "WORKFLOW_PAUSED"
	WorkflowResumed   Type = "WORKFLOW_RESUMED"
	WorkflowRerun     Type = "WORKFLOW_RERUN"

	TaskLaunched  Type = "TASK_LAUNCHED"
	TaskSucceeded Type = "TASK_SUCCEEDED"
	TaskFailed    Type = "TASK_FAILED"
	TaskCancelled Type = "TASK_CANCELLED"
	TaskPaused    Type = "TASK_PAUSED"
	TaskResumed   Type = "TASK_RESUMED"
	TaskRerun     Type = "TASK_RERUN"
	TaskSkipped   Type = "TASK_SKIPPED"
)

// Types lists every event type, executions first, in Mistral's order.
var Types = []Type{
	WorkflowLaunched, WorkflowSucceeded, WorkflowFailed, WorkflowCancelled,
	WorkflowPaused, WorkflowResumed, WorkflowRerun,
	TaskLaunched, TaskSucceeded, TaskFailed, TaskCancelled, TaskPaused,
	TaskResumed, TaskRerun, TaskSkipped,
}

// Kind reports whether t is an execution or a task event.
func (t Type) Kind() Kind {
	if strings.HasPrefix(string(t), "TASK_") {
		return KindTask
	}
	return KindExecution
}

// Terminal reports whether t ends its entity's run (succeeded, failed,
// cancelled or skipped): the "on-*-complete" aliases select these.
func (t Type) Terminal() bool {
	switch t {
	case WorkflowSucceeded, WorkflowFailed, WorkflowCancelled,
		TaskSucceeded, TaskFailed, TaskCancelled, TaskSkipped:
		return true
	}
	return false
}

// Start reports whether t (re)starts its entity: launched, resumed or rerun.
// The "on-*-start" aliases select these.
func (t Type) Start() bool {
	switch t {
	case WorkflowLaunched, WorkflowResumed, WorkflowRerun,
		TaskLaunched, TaskResumed, TaskRerun:
		return true
	}
	return false
}

// Mistral states (mistral/workflow/states.py).
const (
	StateIdle      = "IDLE"
	StateWaiting   = "WAITING"
	StateRunning   = "RUNNING"
	StateDelayed   = "DELAYED"
	StatePaused    = "PAUSED"
	StateSuccess   = "SUCCESS"
	StateCancelled = "CANCELLED"
	StateError     = "ERROR"
	StateSkipped   = "SKIPPED"
)

// Completed reports whether a state is final in Mistral's sense
// (states.is_completed). A completed entity can still be rerun.
func Completed(state string) bool {
	switch state {
	case StateSuccess, StateError, StateCancelled, StateSkipped:
		return true
	}
	return false
}

// For returns the event Mistral's notifier emits when an entity of kind k goes
// from state `from` to state `to`; "" (with ok false) where Mistral emits none
// (DELAYED, WAITING, IDLE targets, or no change). An entity that was never seen
// before has from == "".
//
// This is notification_events.py's map: to RUNNING is LAUNCHED, except
// PAUSED→RUNNING (and for tasks IDLE/WAITING→RUNNING) is RESUMED and
// ERROR→RUNNING is RERUN.
func For(k Kind, from, to string) (Type, bool) {
	if from == to {
		return "", false
	}
	exec := k == KindExecution
	pick := func(wf, task Type) (Type, bool) {
		if exec {
			return wf, wf != ""
		}
		return task, task != ""
	}
	switch to {
	case StateRunning:
		switch from {
		case StatePaused:
			return pick(WorkflowResumed, TaskResumed)
		case StateIdle, StateWaiting:
			if !exec {
				return TaskResumed, true
			}
			return WorkflowLaunched, true
		case StateError:
			return pick(WorkflowRerun, TaskRerun)
		}
		return pick(WorkflowLaunched, TaskLaunched)
	case StateSuccess:
		return pick(WorkflowSucceeded, TaskSucceeded)
	case StateError:
		return pick(WorkflowFailed, TaskFailed)
	case StateCancelled:
		return pick(WorkflowCancelled, TaskCancelled)
	case StatePaused:
		return pick(WorkflowPaused, TaskPaused)
	case StateSkipped:
		return pick("", TaskSkipped)
	}
	return "", false
}

// Source says how an observation reached the tracker.
type Source string

const (
	SourceTap   Source = "tap"   // a response that passed through the proxy
	SourceWatch Source = "watch" // the watcher's own poll of the API
)

// Execution is a workflow execution as Mistral's REST API serialises it,
// limited to the fields Mistral's notifier puts in its payload. Nullable
// fields are pointers so that null round-trips as null.
type Execution struct {
	ID                string  `json:"id"`
	WorkflowName      string  `json:"workflow_name"`
	WorkflowNamespace string  `json:"workflow_namespace"`
	WorkflowID        string  `json:"workflow_id"`
	State             string  `json:"state"`
	StateInfo         *string `json:"state_info"`
	ProjectID         string  `json:"project_id"`
	TaskExecutionID   *string `json:"task_execution_id"`
	RootExecutionID   *string `json:"root_execution_id"`
	CreatedAt         string  `json:"created_at"`
	UpdatedAt         *string `json:"updated_at"`
}

// Task is a task execution as Mistral's REST API serialises it, limited to
// the fields Mistral's notifier puts in its payload, plus runtime_context
// (a JSON-encoded string) which carries the retry counter.
type Task struct {
	ID                  string  `json:"id"`
	Name                string  `json:"name"`
	WorkflowExecutionID string  `json:"workflow_execution_id"`
	WorkflowName        string  `json:"workflow_name"`
	WorkflowNamespace   string  `json:"workflow_namespace"`
	WorkflowID          string  `json:"workflow_id"`
	State               string  `json:"state"`
	StateInfo           *string `json:"state_info"`
	Type                string  `json:"type"`
	ProjectID           string  `json:"project_id"`
	CreatedAt           string  `json:"created_at"`
	UpdatedAt           *string `json:"updated_at"`
	StartedAt           *string `json:"started_at"`
	FinishedAt          *string `json:"finished_at"`
	RuntimeContext      *string `json:"runtime_context,omitempty"`
}

// Observation is one sighting of an execution or a task, from the tap or the
// watcher. Exactly one of Execution and Task is set.
type Observation struct {
	Source    Source
	Execution *Execution
	Task      *Task
	// RequestedAt is when the request that returned this resource was sent.
	// Mistral's timestamps have whole-second resolution, so when two sightings
	// carry the same updated_at the one from the later request wins.
	RequestedAt time.Time
	// TasksFetched marks a tapped execution in a completed state whose
	// tasks the replica that tapped it fetched at once and forwarded with
	// it (notifier/ha.Forwarder): the tracker, which sees it later, must
	// not fetch them again, because by then a client may have rerun a task
	// and the newer sighting would hide the failure the tap saw.
	TasksFetched bool `json:",omitempty"`
}

// Event is a lifecycle event derived by the tracker. Exactly one of Execution
// and Task is set; its State is the state the event moved the entity to.
type Event struct {
	// ID is deterministic (see NewID): the same transition seen twice, by the
	// tap and by the watcher or before and after a restart, has the same ID,
	// which receivers use as an idempotency key (webhook-id).
	ID   string
	Type Type
	// Sequence numbers events per root execution, from 1, in causal order.
	Sequence uint64
	// RootExecutionID is the top-level execution this event belongs to.
	RootExecutionID string
	// PreviousState is the state the tracker knew before ("" if none).
	PreviousState string
	// Inferred is true when the transition was not observed but deduced, e.g.
	// WORKFLOW_LAUNCHED for an execution first seen already SUCCESS.
	Inferred bool
	Source   Source
	// Time is when mistral-tap derived the event.
	Time time.Time

	Execution *Execution
	Task      *Task
}

// Kind is the kind of entity the event is about.
func (e *Event) Kind() Kind { return e.Type.Kind() }

// EntityID is the id of the execution or task the event is about.
func (e *Event) EntityID() string {
	if e.Task != nil {
		return e.Task.ID
	}
	if e.Execution != nil {
		return e.Execution.ID
	}
	return ""
}

// WorkflowName is the workflow the entity belongs to ("wb.wf" for workbook
// workflows).
func (e *Event) WorkflowName() string {
	if e.Task != nil {
		return e.Task.WorkflowName
	}
	if e.Execution != nil {
		return e.Execution.WorkflowName
	}
	return ""
}

// Namespace is the workflow namespace the entity belongs to.
func (e *Event) Namespace() string {
	if e.Task != nil {
		return e.Task.WorkflowNamespace
	}
	if e.Execution != nil {
		return e.Execution.WorkflowNamespace
	}
	return ""
}

// TaskName is the task's name, or "" for execution events.
func (e *Event) TaskName() string {
	if e.Task != nil {
		return e.Task.Name
	}
	return ""
}

// NewID returns the deterministic event id for a transition: a hex SHA-256
// prefix of kind, entity id, event type, target state and updated_at, with an
// "evt_" prefix. `occurrence` distinguishes repeats that Mistral stamps with
// the same second (e.g. a retry cycle); it is 0 for the first.
func NewID(k Kind, entityID string, t Type, state, updatedAt string, occurrence int) string {
	h := sha256.New()
	for _, s := range []string{string(k), entityID, string(t), state, updatedAt} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	if occurrence > 0 {
		h.Write([]byte{byte(occurrence >> 8), byte(occurrence)})
	}
	return "evt_" + hex.EncodeToString(h.Sum(nil)[:16])
}
