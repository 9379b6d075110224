package fakemistral

import (
	"fmt"
	"maps"
	"regexp"
	"strings"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

type startRequest struct {
	workflow, workflowID, namespace, description, id string
	input, params                                    map[string]any
	parentTask                                       *task
	project                                          string // the caller's; "" = the default
}

// findWorkflow resolves a workflow by name (in the namespace, then the
// default namespace) or by id.
func (e *Engine) findWorkflow(name, id, namespace, project string) *workflowDef {
	if id != "" {
		if w := e.workflows[id]; w != nil && definedFor(w.project, project) {
			return w
		}
		return nil
	}
	var fallback *workflowDef
	for _, w := range e.workflows {
		if (w.Name == name || w.ID == name) && definedFor(w.project, project) {
			if w.Namespace == namespace {
				return w
			}
			if w.Namespace == "" {
				fallback = w
			}
		}
	}
	return fallback
}

// startExecution creates and starts an execution. Caller holds e.mu.
func (e *Engine) startExecution(req startRequest) (*execution, error) {
	if req.id != "" {
		if ex, ok := e.execs[req.id]; ok {
			return ex, nil // Mistral returns the existing one, starting nothing
		}
	}
	var wf *workflowDef
	if p := req.parentTask; p != nil && p.ex.wbName != "" {
		wf = e.findWorkflow(p.ex.wbName+"."+req.workflow, "", req.namespace, req.project)
	}
	if wf == nil {
		wf = e.findWorkflow(req.workflow, req.workflowID, req.namespace, req.project)
	}
	if wf == nil {
		ident := req.workflow
		if ident == "" {
			ident = req.workflowID
		}
		return nil, errf(404, "Workflow not found [workflow_identifier=%s, namespace=%s]", ident, req.namespace)
	}
	spec := wf.Spec
	input := cloneMap(req.input)
	var missing, unexpected []string
	declared := map[string]bool{}
	for _, p := range spec.Input {
		declared[p.Name] = true
		if _, ok := input[p.Name]; !ok {
			if p.HasDefault {
				input[p.Name] = p.Default
			} else {
				missing = append(missing, p.Name)
			}
		}
	}
	for k := range input {
		if !declared[k] {
			unexpected = append(unexpected, k)
		}
	}
	if len(missing)+len(unexpected) > 0 {
		msg := fmt.Sprintf("Invalid input [name=%s, class=NoneType", wf.Name)
		if len(missing) > 0 {
			msg += ", missing=[" + strings.Join(missing, ", ") + "]"
		}
		if len(unexpected) > 0 {
			msg += ", unexpected=" + sortedStrings(unexpected)
		}
		return nil, errf(400, "%s]", msg)
	}
	params := cloneMap(req.params)
	params["namespace"] = wf.Namespace
	if _, ok := params["env"]; !ok {
		params["env"] = map[string]any{}
	}
	if spec.Type == "reverse" {
		tn, _ := params["task_name"].(string)
		if _, ok := spec.Tasks[tn]; !ok {
			return nil, errf(400, "Invalid task name for reverse workflow [workflow=%s, task_name=%q]", wf.Name, tn)
		}
	}
	id := req.id
	if id == "" {
		id = newID()
	}
	ex := &execution{
		ID: id, seq: e.nextSeq(), spec: spec, wbName: wf.Workbook, project: req.project,
		WorkflowID: wf.ID, WorkflowName: wf.Name, Namespace: wf.Namespace, Desc: req.description,
		Params: params, Input: input, Output: map[string]any{},
		State: event.StateIdle, CreatedAt: e.stamp(),
		vars: map[string]any{},
	}
	maps.Copy(ex.vars, spec.Vars)
	maps.Copy(ex.vars, input)
	if p := req.parentTask; p != nil {
		ex.parentTask, ex.parentExec = p, p.ex
		ex.TaskExecutionID = strp(p.ID)
		ex.RootExecutionID = strp(p.ex.rootID())
		params["task_execution_id"] = p.ID
		p.child = ex
	}
	e.execs[ex.ID] = ex
	e.setExecState(ex, event.StateRunning, nil)
	for _, ts := range e.startTasks(ex) {
		e.startTask(ex, ts)
	}
	e.checkComplete(ex)
	return ex, nil
}

func (e *Engine) startTasks(ex *execution) []*taskSpec {
	var out []*taskSpec
	if ex.spec.Type == "reverse" {
		need := e.reverseClosure(ex)
		for _, n := range ex.spec.TaskOrder {
			if need[n] && len(ex.spec.Tasks[n].Requires) == 0 {
				out = append(out, ex.spec.Tasks[n])
			}
		}
		return out
	}
	targeted := map[string]bool{}
	for _, ts := range ex.spec.Tasks {
		for _, n := range ts.targets() {
			targeted[n] = true
		}
	}
	for _, n := range ex.spec.TaskOrder {
		if !targeted[n] {
			out = append(out, ex.spec.Tasks[n])
		}
	}
	return out
}

func (e *Engine) reverseClosure(ex *execution) map[string]bool {
	need := map[string]bool{}
	var walk func(string)
	walk = func(n string) {
		if need[n] {
			return
		}
		need[n] = true
		if ts := ex.spec.Tasks[n]; ts != nil {
			for _, r := range ts.Requires {
				walk(r)
			}
		}
	}
	tn, _ := ex.Params["task_name"].(string)
	walk(tn)
	return need
}

// whenRunning runs fn now if ex is RUNNING, at resume if it is PAUSED, and
// never if it has completed (stopped or cancelled executions do nothing
// more, as with real Mistral).
func (e *Engine) whenRunning(ex *execution, fn func()) {
	switch ex.State {
	case event.StateRunning:
		fn()
	case event.StatePaused:
		ex.deferred = append(ex.deferred, fn)
	}
}

func (e *Engine) newTask(ex *execution, ts *taskSpec) *task {
	t := &task{
		ID: newID(), seq: e.nextSeq(), ex: ex, spec: ts, Name: ts.Name, Type: "ACTION",
		CreatedAt: e.stamp(), inbound: map[string]bool{},
	}
	if ts.Workflow != "" {
		t.Type = "WORKFLOW"
	}
	ex.tasks = append(ex.tasks, t)
	e.tasks[t.ID] = t
	return t
}

func (e *Engine) startTask(ex *execution, ts *taskSpec) {
	t := e.newTask(ex, ts)
	if ts.PauseBefore {
		e.setTaskState(t, event.StateIdle, nil)
		e.pauseExec(ex)
		ex.deferred = append(ex.deferred, func() {
			e.setTaskState(t, event.StateRunning, nil)
			e.runAction(t)
		})
		return
	}
	e.setTaskState(t, event.StateRunning, nil)
	if ts.WaitBefore > 0 {
		t.waitedBefore = true
		e.setTaskState(t, event.StateDelayed, nil)
		g := t.gen
		e.after(seconds(ts.WaitBefore), func() {
			e.whenRunning(ex, func() {
				if t.gen != g || t.State != event.StateDelayed {
					return
				}
				e.setTaskState(t, event.StateRunning, nil)
				e.runAction(t)
			})
		})
		return
	}
	e.runAction(t)
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

var withItemsRe = regexp.MustCompile(`^\s*(\w+)\s+in\s+(.+?)\s*$`)

// runAction runs the task's action (or items, or sub-workflow) once.
func (e *Engine) runAction(t *task) {
	ex, ts, g := t.ex, t.spec, t.gen
	vars := e.taskVars(t, nil)
	if ts.Workflow != "" {
		input, _ := e.eval(ts.Input, vars, t).(map[string]any)
		params := map[string]any{}
		for _, k := range []string{"notify", "env"} {
			if v, ok := ex.Params[k]; ok {
				params[k] = v
			}
		}
		_, err := e.startExecution(startRequest{workflow: ts.Workflow, namespace: ex.Namespace, input: input, params: params, parentTask: t, project: ex.project})
		if err != nil {
			msg := err.Error()
			e.after(0, func() {
				if t.gen == g {
					e.actionDone(t, false, nil, msg)
				}
			})
		}
		return
	}
	items := []any{nil}
	itemVar := ""
	if ts.WithItems != "" {
		m := withItemsRe.FindStringSubmatch(ts.WithItems)
		var list []any
		if m != nil {
			itemVar = m[1]
			list, _ = e.eval(m[2], vars, t).([]any)
		}
		if m == nil || list == nil {
			e.after(0, func() {
				if t.gen == g {
					e.actionDone(t, false, nil, fmt.Sprintf("Invalid with-items expression %q: not a list", ts.WithItems))
				}
			})
			return
		}
		items = list
	}
	t.pending, t.itemResults, t.itemErr = len(items), make([]any, len(items)), ""
	if len(items) == 0 {
		e.after(0, func() {
			if t.gen == g {
				e.actionDone(t, true, []any{}, "")
			}
		})
		return
	}
	for i, item := range items {
		iv := vars
		if itemVar != "" {
			iv = maps.Clone(vars)
			iv[itemVar] = item
		}
		input, _ := e.eval(ts.ActionInput, iv, t).(map[string]any)
		ae := &actionExec{ID: newID(), seq: e.nextSeq(), Name: ts.Action, task: t, State: event.StateRunning, Input: input, CreatedAt: e.stamp()}
		e.actions[ae.ID] = ae
		d, result, errMsg := e.simulate(ts.Action, input, t)
		e.after(d, func() {
			if t.gen != g || t.State != event.StateRunning {
				return
			}
			ae.UpdatedAt = strp(e.stamp())
			if errMsg != "" {
				ae.State, ae.StateInfo, ae.Output = event.StateError, strp(errMsg), map[string]any{"result": errMsg}
				t.itemErr = errMsg
			} else {
				ae.State, ae.Output = event.StateSuccess, map[string]any{"result": result}
			}
			t.itemResults[i] = result
			t.pending--
			if t.pending > 0 {
				return
			}
			res := any(t.itemResults)
			if ts.WithItems == "" {
				res = t.itemResults[0]
			}
			if t.itemErr != "" {
				e.actionDone(t, false, res, t.itemErr)
			} else {
				e.actionDone(t, true, res, "")
			}
		})
	}
}

// simulate says how long an action takes and how it ends.
func (e *Engine) simulate(action string, input map[string]any, t *task) (time.Duration, any, string) {
	switch action {
	case "std.noop":
		return 0, nil, ""
	case "std.echo":
		return 0, input["output"], ""
	case "std.sleep":
		s, _ := number(input["seconds"])
		return seconds(s), nil, ""
	case "std.fail":
		if b, _ := t.ex.Input["fail_until_rerun"].(bool); b && t.reruns > 0 {
			return 0, nil, ""
		}
		return 0, nil, "Fail action expected exception."
	}
	return 0, nil, fmt.Sprintf("Failed to find action [action_name=%s]", action)
}

// actionDone handles the end of a task's action: retry, wait-after, or
// completion.
func (e *Engine) actionDone(t *task, ok bool, result any, errMsg string) {
	ex, ts := t.ex, t.spec
	if event.Completed(ex.State) {
		return // stopped or cancelled: Mistral drops late results silently
	}
	t.Result = result
	if !ok && t.retryNo < ts.RetryCount {
		e.setTaskState(t, event.StateError, strp(errMsg))
		t.retryNo++
		e.setTaskState(t, event.StateDelayed, nil)
		g := t.gen
		e.after(seconds(ts.RetryDelay), func() {
			e.whenRunning(ex, func() {
				if t.gen != g || t.State != event.StateDelayed {
					return
				}
				e.setTaskState(t, event.StateRunning, nil)
				e.runAction(t)
			})
		})
		return
	}
	vars := e.taskVars(t, nil)
	if ok {
		if ts.Publish != nil {
			t.Published, _ = e.eval(ts.Publish, vars, t).(map[string]any)
		}
	} else if ts.PublishErr != nil {
		t.Published, _ = e.eval(ts.PublishErr, vars, t).(map[string]any)
	}
	maps.Copy(ex.vars, t.Published)
	if ok && ts.WaitAfter > 0 {
		t.waitedAfter = true
		e.setTaskState(t, event.StateDelayed, nil)
		g := t.gen
		e.after(seconds(ts.WaitAfter), func() {
			if t.gen == g && t.State == event.StateDelayed && !event.Completed(ex.State) {
				e.completeTask(t, event.StateSuccess, nil)
			}
		})
		return
	}
	if ok {
		e.completeTask(t, event.StateSuccess, nil)
	} else {
		e.completeTask(t, event.StateError, strp(errMsg))
	}
}

func (e *Engine) completeTask(t *task, state string, info *string) {
	e.setTaskState(t, state, info)
	ex, g := t.ex, t.gen
	e.whenRunning(ex, func() {
		if t.gen != g {
			return
		}
		e.processTransitions(t)
		e.checkComplete(ex)
	})
}

func (e *Engine) processTransitions(t *task) {
	ex := t.ex
	t.Processed = true
	if ex.spec.Type == "reverse" {
		if t.State != event.StateSuccess {
			return
		}
		need := e.reverseClosure(ex)
		for _, n := range ex.spec.TaskOrder {
			ts := ex.spec.Tasks[n]
			if !need[n] || e.latestTask(ex, n) != nil || len(ts.Requires) == 0 {
				continue
			}
			ready := true
			for _, r := range ts.Requires {
				if rt := e.latestTask(ex, r); rt == nil || rt.State != event.StateSuccess {
					ready = false
				}
			}
			if ready {
				e.startTask(ex, ts)
			}
		}
		return
	}
	var next []transition
	switch t.State {
	case event.StateSuccess:
		next = append(next, t.spec.OnSuccess...)
	case event.StateError:
		next = append(next, t.spec.OnError...)
	case event.StateCancelled:
		return
	}
	next = append(next, t.spec.OnComplete...)
	vars := e.taskVars(t, nil)
	for _, tr := range next {
		if tr.Cond != nil && !truthy(e.eval(tr.Cond, vars, t)) {
			continue
		}
		if engineCommand(tr.Task) {
			switch strings.Fields(tr.Task)[0] {
			case "fail":
				e.stopExec(ex, event.StateError, strp("Workflow failed by 'fail' command"))
			case "succeed":
				e.stopExec(ex, event.StateSuccess, nil)
			case "pause":
				e.pauseExec(ex)
			}
			continue
		}
		ts := ex.spec.Tasks[tr.Task]
		if ts.Join == 0 {
			e.startTask(ex, ts)
			continue
		}
		var jt *task
		for _, c := range ex.tasks {
			if c.Name == ts.Name && c.State == event.StateWaiting {
				jt = c
			}
		}
		if jt == nil {
			jt = e.newTask(ex, ts)
			e.setTaskState(jt, event.StateWaiting, nil)
		}
		jt.inbound[t.Name] = true
		if e.joinSatisfied(ex, jt) {
			e.setTaskState(jt, event.StateRunning, nil)
			e.runAction(jt)
		}
	}
}

func (e *Engine) joinSatisfied(ex *execution, jt *task) bool {
	if jt.spec.Join > 0 {
		return len(jt.inbound) >= jt.spec.Join
	}
	for _, n := range ex.spec.TaskOrder {
		for _, target := range ex.spec.Tasks[n].targets() {
			if target == jt.Name && !jt.inbound[n] {
				return false
			}
		}
	}
	return true
}

func (e *Engine) latestTask(ex *execution, name string) *task {
	var out *task
	for _, t := range ex.tasks {
		if t.Name == name {
			out = t
		}
	}
	return out
}

// checkComplete finishes the execution once no task is incomplete, like
// Mistral's check_and_complete.
func (e *Engine) checkComplete(ex *execution) {
	if ex.State != event.StateRunning {
		return
	}
	var waiting []*task
	for _, t := range ex.tasks {
		if event.Completed(t.State) {
			continue
		}
		if t.State != event.StateWaiting {
			return
		}
		waiting = append(waiting, t)
	}
	if len(waiting) > 0 {
		// Nothing can satisfy these joins any more.
		for _, t := range waiting {
			e.completeTask(t, event.StateError, strp("Failed to satisfy join: not all inbound tasks succeeded"))
		}
		return
	}
	var failed []*task
	cancelled := false
	for _, t := range ex.tasks {
		switch t.State {
		case event.StateError:
			if ex.spec.Type == "reverse" || !t.spec.handlesError() {
				failed = append(failed, t)
			}
		case event.StateCancelled:
			cancelled = true
		}
	}
	switch {
	case cancelled:
		e.finishExec(ex, event.StateCancelled, nil)
	case len(failed) > 0:
		names := make([]string, len(failed))
		var b strings.Builder
		for i, t := range failed {
			names[i] = t.Name
			fmt.Fprintf(&b, "\n  %s [task_ex_id=%s] -> %s\n", t.Name, t.ID, nullableStr(t.StateInfo))
		}
		e.finishExec(ex, event.StateError, strp("Failure caused by error in tasks: "+strings.Join(names, ", ")+"\n"+b.String()))
	default:
		if ex.spec.Output != nil {
			ex.Output = e.eval(ex.spec.Output, ex.vars, nil)
		} else {
			out := map[string]any{}
			for _, t := range ex.tasks {
				maps.Copy(out, t.Published)
			}
			ex.Output = out
		}
		e.finishExec(ex, event.StateSuccess, nil)
	}
}

func nullableStr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// finishExec sets a final state and reports it to the parent task.
func (e *Engine) finishExec(ex *execution, state string, info *string) {
	e.setExecState(ex, state, info)
	e.notifyParent(ex)
}

func (e *Engine) notifyParent(ex *execution) {
	pt := ex.parentTask
	if pt == nil || pt.child != ex || pt.State != event.StateRunning {
		return
	}
	switch ex.State {
	case event.StateSuccess:
		e.actionDone(pt, true, ex.Output, "")
	case event.StateError:
		e.actionDone(pt, false, nil, nullableStr(ex.StateInfo))
	case event.StateCancelled:
		if !event.Completed(pt.ex.State) {
			e.completeTask(pt, event.StateCancelled, nil)
		}
	}
}

// stopExec forces a final state (PUT SUCCESS/ERROR/CANCELLED), parent first,
// then every unfinished sub-workflow, as Mistral's stop_workflow does.
func (e *Engine) stopExec(ex *execution, state string, info *string) {
	e.setExecState(ex, state, info)
	for _, t := range ex.tasks {
		if c := t.child; c != nil && !event.Completed(c.State) {
			e.stopExec(c, state, info)
		}
	}
	e.notifyParent(ex)
}

// pauseExec pauses sub-workflows first, then the execution.
func (e *Engine) pauseExec(ex *execution) {
	for _, t := range ex.tasks {
		if c := t.child; c != nil && c.State == event.StateRunning {
			e.pauseExec(c)
		}
	}
	e.setExecState(ex, event.StatePaused, nil)
}

// resumeExec resumes the execution, then its paused sub-workflows, then
// runs what was postponed.
func (e *Engine) resumeExec(ex *execution) {
	e.setExecState(ex, event.StateRunning, nil)
	for _, t := range ex.tasks {
		if c := t.child; c != nil && c.State == event.StatePaused {
			e.resumeExec(c)
		}
	}
	for len(ex.deferred) > 0 && ex.State == event.StateRunning {
		fn := ex.deferred[0]
		ex.deferred = ex.deferred[1:]
		fn()
	}
	e.checkComplete(ex)
}

// rerunTask reruns an ERROR task: its ancestors first (workflow then task,
// from the root down), then its workflow (WORKFLOW_RERUN) and the task
// (TASK_RERUN), whose action then runs again.
func (e *Engine) rerunTask(t *task) error {
	if t.State != event.StateError {
		return errf(400, "Failed to rerun the task: the task must be in ERROR state [task_ex_id=%s, state=%s]", t.ID, t.State)
	}
	ex := t.ex
	if !validTransition(ex.State, event.StateRunning) {
		return errf(400, "Can't change workflow execution state from %s to RUNNING. [workflow=%s, execution_id=%s]", ex.State, ex.WorkflowName, ex.ID)
	}
	var chain []*task
	for c := ex; c.parentTask != nil; c = c.parentExec {
		chain = append([]*task{c.parentTask}, chain...)
	}
	for _, pt := range chain {
		if pt.ex.State == event.StateError {
			e.setExecState(pt.ex, event.StateRunning, nil)
		}
		if pt.State == event.StateError {
			pt.gen++
			pt.FinishedAt, pt.Processed = nil, false
			e.setTaskState(pt, event.StateRunning, nil)
		}
	}
	e.setExecState(ex, event.StateRunning, nil)
	t.gen++
	t.reruns++
	t.retryNo = 0
	t.FinishedAt, t.Processed, t.Result = nil, false, nil
	e.setTaskState(t, event.StateRunning, nil)
	e.runAction(t)
	return nil
}

// taskVars is the expression context of a task: workflow input, vars and
// everything published so far.
func (e *Engine) taskVars(t *task, extra map[string]any) map[string]any {
	v := maps.Clone(t.ex.vars)
	maps.Copy(v, extra)
	return v
}
