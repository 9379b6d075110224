package fakemistral

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

type workflowDef struct {
	ID, Name, Namespace, Definition string
	project                         string // "" = defined through the Go API: every project sees it
	Spec                            *wfSpec
	Workbook                        string // "" for standalone workflows
	CreatedAt                       string
	UpdatedAt                       *string
	seq                             uint64
}

type workbookDef struct {
	ID, Name, Namespace, Definition string
	project                         string // as workflowDef.project
	CreatedAt                       string
	UpdatedAt                       *string
	seq                             uint64
}

type execution struct {
	ID                                        string
	project                                   string // "" = the default project
	seq                                       uint64
	spec                                      *wfSpec
	wbName                                    string
	WorkflowID, WorkflowName, Namespace, Desc string
	Params, Input                             map[string]any
	Output                                    any
	TaskExecutionID, RootExecutionID          *string
	parentExec                                *execution
	parentTask                                *task
	State                                     string
	StateInfo                                 *string
	CreatedAt                                 string
	UpdatedAt                                 *string
	vars                                      map[string]any
	// deferred continuations postponed while the execution is PAUSED.
	deferred []func()
	tasks    []*task
}

type task struct {
	ID                               string
	seq                              uint64
	ex                               *execution
	spec                             *taskSpec
	Name, Type                       string
	State                            string
	StateInfo                        *string
	CreatedAt                        string
	UpdatedAt, StartedAt, FinishedAt *string
	retryNo, reruns                  int
	// waitedBefore/After mirror the policies' runtime_context "skip" flags.
	waitedBefore, waitedAfter bool
	// gen changes on rerun so that completions of the previous run are
	// ignored.
	gen       int
	Published map[string]any
	Result    any
	Processed bool
	inbound   map[string]bool
	child     *execution
	// with-items bookkeeping
	pending     int
	itemResults []any
	itemErr     string
}

type actionExec struct {
	ID        string
	seq       uint64
	Name      string
	task      *task
	State     string
	StateInfo *string
	Input     map[string]any
	Output    any
	CreatedAt string
	UpdatedAt *string
}

// apiError is an error with the HTTP status Mistral would answer.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errf(status int, format string, a ...any) *apiError {
	return &apiError{status: status, msg: fmt.Sprintf(format, a...)}
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// jsonStr encodes v as Mistral's jsontype fields do: a JSON string.
func jsonStr(v any) string {
	if v == nil {
		return "null"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "null"
	}
	return string(b)
}

func (ex *execution) rootID() string {
	if ex.RootExecutionID != nil {
		return *ex.RootExecutionID
	}
	return ex.ID
}

// validTransition is mistral/workflow/states.py's table.
func validTransition(from, to string) bool {
	if from == to {
		return true
	}
	allowed := map[string][]string{
		event.StateIdle:      {event.StateRunning, event.StateError, event.StateCancelled},
		event.StateWaiting:   {event.StateRunning},
		event.StateRunning:   {event.StatePaused, event.StateDelayed, event.StateSuccess, event.StateError, event.StateCancelled},
		event.StateDelayed:   {event.StateRunning, event.StateError, event.StateCancelled},
		event.StatePaused:    {event.StateRunning, event.StateError, event.StateCancelled},
		event.StateCancelled: {event.StateRunning},
		event.StateError:     {event.StateRunning},
	}
	for _, s := range allowed[from] {
		if s == to {
			return true
		}
	}
	return false
}

// setExecState and setTaskState both go through change.
func (e *Engine) setExecState(ex *execution, to string, info *string) { e.change(ex, nil, to, info) }
func (e *Engine) setTaskState(t *task, to string, info *string)       { e.change(nil, t, to, info) }

// change is the single place where an execution's or a task's state
// changes. It stamps updated_at (except on creation, where Mistral leaves it
// null), keeps started_at/finished_at, and records the notification Mistral's
// notifier would send for the transition.
func (e *Engine) change(ex *execution, t *task, to string, info *string) {
	now := e.stamp()
	var from string
	kind := event.KindExecution
	if t != nil {
		kind = event.KindTask
		from = t.State
		if from == to && eqStrp(t.StateInfo, info) {
			return
		}
		t.State, t.StateInfo = to, info
		if from != "" {
			t.UpdatedAt = strp(now)
		}
		if to == event.StateRunning && t.StartedAt == nil {
			t.StartedAt = strp(now)
		}
		if event.Completed(to) {
			t.FinishedAt = strp(now)
		}
	} else {
		from = ex.State
		if from == to && eqStrp(ex.StateInfo, info) {
			return
		}
		ex.State, ex.StateInfo = to, info
		if from != "" {
			ex.UpdatedAt = strp(now)
		}
	}
	defer e.broadcast()
	if from == to {
		return
	}
	typ, ok := event.For(kind, from, to)
	if !ok && to != event.StateDelayed && to != event.StateWaiting && to != event.StateIdle {
		return
	}
	var payload map[string]any
	var ne NotifierEvent
	if t != nil {
		payload = e.taskPayload(t)
		ne = NotifierEvent{EntityID: t.ID, Kind: string(kind), RootExecutionID: t.ex.rootID()}
	} else {
		if from == "" {
			return // creation (IDLE) is not notified; IDLE→RUNNING is LAUNCHED
		}
		payload = e.execPayload(ex)
		ne = NotifierEvent{EntityID: ex.ID, Kind: string(kind), RootExecutionID: ex.rootID()}
	}
	if ok {
		ne.Event = string(typ)
		payload["event"] = string(typ)
	} else {
		payload["event"] = nil
	}
	ne.Payload = payload
	e.events = append(e.events, ne)
	e.log.Debug("state change", "kind", kind, "id", ne.EntityID, "from", from, "to", to, "event", ne.Event)
}

func eqStrp(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func nullable(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// execPayload is the notifier's body for an execution (without "event").
func (e *Engine) execPayload(ex *execution) map[string]any {
	return map[string]any{
		"id": ex.ID, "name": ex.WorkflowName, "workflow_name": ex.WorkflowName,
		"workflow_namespace": ex.Namespace, "workflow_id": ex.WorkflowID,
		"state": ex.State, "state_info": nullable(ex.StateInfo), "project_id": ex.projectID(),
		"task_execution_id": nullable(ex.TaskExecutionID), "root_execution_id": nullable(ex.RootExecutionID),
		"created_at": ex.CreatedAt, "updated_at": nullable(ex.UpdatedAt),
	}
}

// taskPayload is the notifier's body for a task (without "event").
func (e *Engine) taskPayload(t *task) map[string]any {
	return map[string]any{
		"id": t.ID, "name": t.Name, "workflow_execution_id": t.ex.ID,
		"workflow_name": t.ex.WorkflowName, "workflow_namespace": t.ex.Namespace,
		"workflow_id": t.ex.WorkflowID, "state": t.State, "state_info": nullable(t.StateInfo),
		"type": t.Type, "project_id": t.ex.projectID(),
		"created_at": t.CreatedAt, "updated_at": nullable(t.UpdatedAt),
		"started_at": nullable(t.StartedAt), "finished_at": nullable(t.FinishedAt),
	}
}

func (t *task) runtimeContext() map[string]any {
	rc := map[string]any{}
	if t.retryNo > 0 {
		rc["retry_task_policy"] = map[string]any{"retry_no": t.retryNo}
	}
	// Mistral's wait policies mark the delay as done in runtime_context.
	if t.waitedBefore {
		rc["wait_before_policy"] = map[string]any{"skip": true}
	}
	if t.waitedAfter {
		rc["wait_after_policy"] = map[string]any{"skip": true}
	}
	return rc
}

func cloneMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return maps.Clone(m)
}
