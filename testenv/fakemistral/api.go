package fakemistral

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := marshal(v)
	if err != nil {
		status, b = 500, []byte(`{"faultcode": "Server", "faultstring": "encoding failed", "debuginfo": null}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeErr writes WSME's error body.
func writeErr(w http.ResponseWriter, status int, msg string) {
	code := "Client"
	if status >= 500 {
		code = "Server"
	}
	writeJSON(w, status, obj{{"faultcode", code}, {"faultstring", msg}, {"debuginfo", nil}})
}

// writeDefErr writes the bare body workflow/workbook POST and PUT use.
func writeDefErr(w http.ResponseWriter, err error) {
	status := 400
	if ae, ok := err.(*apiError); ok {
		status = ae.status
	}
	writeJSON(w, status, obj{{"faultstring", err.Error()}})
}

func writeAPIErr(w http.ResponseWriter, err error) {
	status := 400
	if ae, ok := err.(*apiError); ok {
		status = ae.status
	}
	writeErr(w, status, err.Error())
}

// writeText answers with JSON labelled text/plain, as Mistral's definition
// endpoints do.
func writeText(w http.ResponseWriter, status int, v any) {
	b, _ := marshal(v)
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func methodNotAllowed(w http.ResponseWriter, allow ...string) {
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeErr(w, 405, "The method is not allowed for this resource.")
}

// onlyArgs rejects query arguments other than allowed, as WSME does.
func onlyArgs(w http.ResponseWriter, r *http.Request, allowed ...string) bool {
	for k := range r.URL.Query() {
		if !contains(allowed, k) {
			writeErr(w, 400, fmt.Sprintf("Unknown argument: %q", k))
			return false
		}
	}
	return true
}

func (e *Engine) route(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) == 1 && parts[0] == "" {
		parts = nil
	}
	if len(parts) == 0 {
		if r.Method != http.MethodGet {
			methodNotAllowed(w, "GET")
			return
		}
		writeJSON(w, 200, obj{{"versions", []obj{{
			{"id", "v2.0"}, {"status", "CURRENT"},
			{"links", []obj{{{"href", baseURL(r) + "/v2"}, {"target", "v2"}, {"rel", "self"}}}},
		}}}})
		return
	}
	if parts[0] != "v2" {
		e.notFound(w)
		return
	}
	parts = parts[1:]
	if len(parts) == 0 {
		writeJSON(w, 200, obj{{"uri", baseURL(r) + "/v2"}})
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.authenticate(w, r) {
		return
	}
	defer func() { e.viewer, e.allProjects = nil, false }()
	switch parts[0] {
	case "executions":
		e.routeExecutions(w, r, parts[1:])
	case "tasks":
		e.routeTasks(w, r, parts[1:])
	case "action_executions":
		e.routeActions(w, r, parts[1:])
	case "workflows":
		e.routeWorkflows(w, r, parts[1:])
	case "workbooks":
		e.routeWorkbooks(w, r, parts[1:])
	default:
		e.notFound(w)
	}
}

func baseURL(r *http.Request) string {
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

func (e *Engine) notFound(w http.ResponseWriter) {
	writeErr(w, 404, "The resource could not be found.")
}

func (e *Engine) sortedExecs(keep func(*execution) bool) []*execution {
	var out []*execution
	for _, ex := range e.execs {
		if keep == nil || keep(ex) {
			out = append(out, ex)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

func (e *Engine) execObjs(keep func(*execution) bool) []obj {
	var out []obj
	for _, ex := range e.sortedExecs(keep) {
		out = append(out, e.execObj(ex))
	}
	return out
}

func (e *Engine) taskObjs(keep func(*task) bool) []obj {
	return renderSorted(e.tasks, keep, func(t *task) uint64 { return t.seq }, e.taskObj)
}

// renderSorted renders the entries of m that keep accepts, in creation
// order (seq), as the API lists them.
func renderSorted[T any](m map[string]*T, keep func(*T) bool, seq func(*T) uint64, render func(*T) obj) []obj {
	var xs []*T
	for _, x := range m {
		if keep == nil || keep(x) {
			xs = append(xs, x)
		}
	}
	sort.Slice(xs, func(i, j int) bool { return seq(xs[i]) < seq(xs[j]) })
	out := make([]obj, len(xs))
	for i, x := range xs {
		out[i] = render(x)
	}
	return out
}

func (e *Engine) routeExecutions(w http.ResponseWriter, r *http.Request, rest []string) {
	switch {
	case len(rest) == 0:
		switch r.Method {
		case http.MethodGet:
			e.serveList(w, r, execList, e.execObjs(nil), nil)
		case http.MethodPost:
			e.postExecution(w, r)
		default:
			methodNotAllowed(w, "GET", "POST")
		}
		return
	}
	ex, ok := e.execs[rest[0]]
	if !ok || !e.sees(ex.project, true) {
		writeErr(w, 404, fmt.Sprintf("WorkflowExecution not found [id=%s]", rest[0]))
		return
	}
	if len(rest) == 2 && rest[1] == "tasks" && r.Method == http.MethodGet {
		e.serveList(w, r, taskList, e.taskObjs(nil), map[string]string{"workflow_execution_id": ex.ID})
		return
	}
	if len(rest) == 2 && rest[1] == "executions" && r.Method == http.MethodGet {
		if !onlyArgs(w, r, "errors_only", "max_depth", "include_output") {
			return
		}
		var out []obj
		for _, c := range e.sortedExecs(func(c *execution) bool { return c == ex || e.descends(c, ex) }) {
			o := e.execObj(c).without("published_global")
			if r.URL.Query().Get("include_output") != "true" {
				o = o.without("output")
			}
			out = append(out, o)
		}
		writeJSON(w, 200, obj{{"executions", out}})
		return
	}
	if len(rest) != 1 {
		e.notFound(w)
		return
	}
	switch r.Method {
	case http.MethodGet:
		if onlyArgs(w, r) {
			writeJSON(w, 200, e.execObj(ex))
		}
	case http.MethodPut:
		if onlyArgs(w, r) {
			e.putExecution(w, r, ex)
		}
	case http.MethodDelete:
		if !onlyArgs(w, r, "force") {
			return
		}
		if !event.Completed(ex.State) && r.URL.Query().Get("force") != "true" {
			writeErr(w, 403, fmt.Sprintf("Only completed executions can be deleted. Use --force to override this. [execution_id=%s, state=%s]", ex.ID, ex.State))
			return
		}
		e.deleteExec(ex)
		w.WriteHeader(http.StatusNoContent)
	default:
		methodNotAllowed(w, "GET", "PUT", "DELETE")
	}
}

func (e *Engine) descends(c, anc *execution) bool {
	for p := c.parentExec; p != nil; p = p.parentExec {
		if p == anc {
			return true
		}
	}
	return false
}

func (e *Engine) deleteExec(ex *execution) {
	for _, t := range ex.tasks {
		if t.child != nil {
			e.deleteExec(t.child)
		}
		for id, a := range e.actions {
			if a.task == t {
				delete(e.actions, id)
			}
		}
		delete(e.tasks, t.ID)
	}
	delete(e.execs, ex.ID)
	e.broadcast()
}

// jsonArg decodes a jsontype argument that may be a JSON string or an
// object.
func jsonArg(raw json.RawMessage, name string) (map[string]any, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		if strings.TrimSpace(s) == "" {
			return nil, nil
		}
		raw = json.RawMessage(s)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, errf(400, "Invalid input for field/attribute %s. Value: '%s'. %s must be a JSON object", name, raw, name)
	}
	return m, nil
}

func (e *Engine) postExecution(w http.ResponseWriter, r *http.Request) {
	if !onlyArgs(w, r) {
		return
	}
	var body struct {
		WorkflowName      string          `json:"workflow_name"`
		WorkflowID        string          `json:"workflow_id"`
		WorkflowNamespace string          `json:"workflow_namespace"`
		Input             json.RawMessage `json:"input"`
		Params            json.RawMessage `json:"params"`
		Description       string          `json:"description"`
		ID                string          `json:"id"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 8<<20)).Decode(&body); err != nil {
		writeErr(w, 400, fmt.Sprintf("Invalid input: %v", err))
		return
	}
	if body.WorkflowName == "" && body.WorkflowID == "" {
		writeErr(w, 400, "Workflow ID or workflow name must be provided. Workflow ID is recommended.")
		return
	}
	input, err := jsonArg(body.Input, "input")
	if err != nil {
		writeAPIErr(w, err)
		return
	}
	params, err := jsonArg(body.Params, "params")
	if err != nil {
		writeAPIErr(w, err)
		return
	}
	ex, err := e.startExecution(startRequest{
		workflow: body.WorkflowName, workflowID: body.WorkflowID, namespace: body.WorkflowNamespace,
		description: body.Description, id: body.ID, input: input, params: params,
		project: e.viewerProject(),
	})
	if err != nil {
		writeAPIErr(w, err)
		return
	}
	writeJSON(w, 201, e.execObj(ex).without("published_global"))
}

func (e *Engine) putExecution(w http.ResponseWriter, r *http.Request, ex *execution) {
	var body struct {
		State       *string         `json:"state"`
		StateInfo   *string         `json:"state_info"`
		Description *string         `json:"description"`
		Params      json.RawMessage `json:"params"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 8<<20)).Decode(&body); err != nil {
		writeErr(w, 400, fmt.Sprintf("Invalid input: %v", err))
		return
	}
	params, err := jsonArg(body.Params, "params")
	if err != nil {
		writeAPIErr(w, err)
		return
	}
	env, hasEnv := params["env"]
	switch {
	case body.State == nil && body.Description == nil && !hasEnv:
		writeErr(w, 400, "The property 'state', 'description', or 'params' for 'env' must be provided for update.")
		return
	case body.Description != nil && body.State != nil:
		writeErr(w, 400, "The property 'description' must not be provided if the property 'state' is provided.")
		return
	case hasEnv && body.State != nil && *body.State != event.StateRunning:
		writeErr(w, 400, "The property 'env' can only be updated together with the state RUNNING.")
		return
	}
	if body.Description != nil {
		ex.Desc = *body.Description
		ex.UpdatedAt = strp(e.stamp())
	}
	if hasEnv {
		ex.Params["env"] = env
		ex.UpdatedAt = strp(e.stamp())
	}
	if body.State != nil {
		to := *body.State
		switch to {
		case event.StatePaused, event.StateSuccess, event.StateError, event.StateCancelled:
			if !validTransition(ex.State, to) {
				writeErr(w, 400, fmt.Sprintf("Can't change workflow execution state from %s to %s. [workflow=%s, execution_id=%s]", ex.State, to, ex.WorkflowName, ex.ID))
				return
			}
			if ex.State != to {
				if to == event.StatePaused {
					e.pauseExec(ex)
				} else {
					e.stopExec(ex, to, body.StateInfo)
				}
			}
		case event.StateRunning:
			if ex.State == event.StatePaused || ex.State == event.StateIdle {
				e.resumeExec(ex)
			}
		default:
			writeErr(w, 400, fmt.Sprintf("Cannot change state to %s. Allowed states are: '%s, %s, %s, %s, %s'", to,
				event.StateCancelled, event.StateError, event.StatePaused, event.StateRunning, event.StateSuccess))
			return
		}
	}
	writeJSON(w, 200, e.execObj(ex).without("published_global"))
}

func (e *Engine) routeTasks(w http.ResponseWriter, r *http.Request, rest []string) {
	if len(rest) == 0 {
		if r.Method != http.MethodGet {
			methodNotAllowed(w, "GET")
			return
		}
		e.serveList(w, r, taskList, e.taskObjs(nil), nil)
		return
	}
	t, ok := e.tasks[rest[0]]
	if !ok || !e.sees(t.ex.project, true) {
		writeErr(w, 404, fmt.Sprintf("TaskExecution not found [id=%s]", rest[0]))
		return
	}
	if len(rest) == 2 && r.Method == http.MethodGet {
		switch rest[1] {
		case "action_executions":
			e.serveList(w, r, actionList, e.actionObjs(nil), map[string]string{"task_execution_id": t.ID})
			return
		case "workflow_executions", "executions":
			e.serveList(w, r, execList, e.execObjs(nil), map[string]string{"task_execution_id": t.ID})
			return
		}
	}
	if len(rest) != 1 {
		e.notFound(w)
		return
	}
	switch r.Method {
	case http.MethodGet:
		if onlyArgs(w, r) {
			writeJSON(w, 200, e.taskObj(t))
		}
	case http.MethodPut:
		if !onlyArgs(w, r) {
			return
		}
		var body struct {
			State *string `json:"state"`
			Reset *bool   `json:"reset"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
			writeErr(w, 400, fmt.Sprintf("Invalid input: %v", err))
			return
		}
		if body.State == nil || *body.State != event.StateRunning {
			writeErr(w, 400, "Invalid task state. Only RUNNING is allowed for rerun.")
			return
		}
		if body.Reset == nil {
			writeErr(w, 400, "Mandatory field missing: reset.")
			return
		}
		if !*body.Reset && t.spec.WithItems == "" {
			writeErr(w, 400, fmt.Sprintf("Only with-items tasks can be rerun with reset=false [task_ex_id=%s]", t.ID))
			return
		}
		if err := e.rerunTask(t); err != nil {
			writeAPIErr(w, err)
			return
		}
		writeJSON(w, 200, e.taskObj(t))
	default:
		methodNotAllowed(w, "GET", "PUT")
	}
}

func (e *Engine) actionObjs(keep func(*actionExec) bool) []obj {
	return renderSorted(e.actions, keep, func(a *actionExec) uint64 { return a.seq }, e.actionObj)
}

func (e *Engine) routeActions(w http.ResponseWriter, r *http.Request, rest []string) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, "GET")
		return
	}
	if len(rest) == 0 {
		e.serveList(w, r, actionList, e.actionObjs(nil), nil)
		return
	}
	a, ok := e.actions[rest[0]]
	if !ok || len(rest) != 1 {
		writeErr(w, 404, fmt.Sprintf("ActionExecution not found [id=%s]", rest[0]))
		return
	}
	if onlyArgs(w, r) {
		writeJSON(w, 200, e.actionObj(a))
	}
}

func readText(r *http.Request) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	return string(b), err
}

// defCollection is one of Mistral's definition collections (workflows,
// workbooks): both share the REST shape list/create/update on the collection
// and get/delete on a member, and differ only in these hooks.
type defCollection[T any] struct {
	list     listConf
	all      map[string]*T
	seq      func(*T) uint64
	render   func(d *T, withDefinition bool) obj
	create   func(text, ns string, update bool) (any, error) // the response body
	find     func(id, ns string) *T
	remove   func(*T)
	notFound string // fmt layout with the identifier and the namespace
}

func routeDefs[T any](e *Engine, w http.ResponseWriter, r *http.Request, rest []string, c defCollection[T]) {
	ns := r.URL.Query().Get("namespace")
	if len(rest) == 0 {
		switch r.Method {
		case http.MethodGet:
			items := renderSorted(c.all, nil, c.seq, func(d *T) obj { return c.render(d, false) })
			e.serveList(w, r, c.list, items, nil)
		case http.MethodPost, http.MethodPut:
			if !onlyArgs(w, r, "namespace", "scope", "skip_validation") {
				return
			}
			text, err := readText(r)
			if err != nil {
				writeDefErr(w, err)
				return
			}
			body, err := c.create(text, ns, r.Method == http.MethodPut)
			if err != nil {
				writeDefErr(w, err)
				return
			}
			status := 201
			if r.Method == http.MethodPut {
				status = 200
			}
			writeText(w, status, body)
		default:
			methodNotAllowed(w, "GET", "POST", "PUT")
		}
		return
	}
	if len(rest) != 1 {
		e.notFound(w)
		return
	}
	if !onlyArgs(w, r, "namespace") {
		return
	}
	d := c.find(rest[0], ns)
	if d == nil {
		writeErr(w, 404, fmt.Sprintf(c.notFound, rest[0], ns))
		return
	}
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, 200, c.render(d, false))
	case http.MethodDelete:
		c.remove(d)
		w.WriteHeader(http.StatusNoContent)
	default:
		methodNotAllowed(w, "GET", "DELETE")
	}
}

func (e *Engine) routeWorkflows(w http.ResponseWriter, r *http.Request, rest []string) {
	routeDefs(e, w, r, rest, defCollection[workflowDef]{
		list:   workflowList,
		all:    e.workflows,
		seq:    func(d *workflowDef) uint64 { return d.seq },
		render: e.workflowObj,
		create: func(text, ns string, update bool) (any, error) {
			defs, err := e.createWorkflows(text, ns, update)
			if err != nil {
				return nil, err
			}
			out := make([]obj, len(defs))
			for i, d := range defs {
				out[i] = e.workflowObj(d, true)
			}
			return obj{{"workflows", out}}, nil
		},
		find: func(id, ns string) *workflowDef {
			var wf *workflowDef
			for _, d := range e.workflows {
				if (d.Name == id || d.ID == id) && (d.Namespace == ns || d.ID == id) && e.sees(d.project, true) {
					wf = d
				}
			}
			return wf
		},
		remove:   func(d *workflowDef) { delete(e.workflows, d.ID) },
		notFound: "Workflow not found [workflow_identifier=%s, namespace=%s]",
	})
}

func (e *Engine) routeWorkbooks(w http.ResponseWriter, r *http.Request, rest []string) {
	routeDefs(e, w, r, rest, defCollection[workbookDef]{
		list:   workbookList,
		all:    e.workbooks,
		seq:    func(d *workbookDef) uint64 { return d.seq },
		render: func(d *workbookDef, _ bool) obj { return e.workbookObj(d) },
		create: func(text, ns string, update bool) (any, error) {
			wb, err := e.createWorkbook(text, ns, update)
			if err != nil {
				return nil, err
			}
			return e.workbookObj(wb), nil
		},
		find:     e.findWorkbook,
		remove:   e.deleteWorkbook,
		notFound: "Workbook not found [workbook_name=%s, namespace=%s]",
	})
}
