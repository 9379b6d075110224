// Package matcher decides which callbacks an event goes to. Every filter of
// a callback must match: event type, project, workbook, workflow glob,
// namespace and task glob. It owns the meaning of a callback's `events:`
// entries (the event names, the kinds EXECUTION and TASK, the on-* aliases
// and "*"): configuration keeps them as written, Compile checks and expands
// them.
package matcher

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// WorkbookIndex answers which workbook defines a workflow. ok is false when
// the workflow is not (known to be) part of any workbook.
type WorkbookIndex interface {
	WorkbookOf(workflowName, namespace string) (workbook string, ok bool)
}

// Decision is one callback's verdict on one event, for `explain`.
type Decision struct {
	Callback string
	Matched  bool
	// Reason names the first filter that rejected the event, or says why
	// it matched.
	Reason string
}

// rule is a callback's compiled filters.
type rule struct {
	name      string
	events    typeSet
	eventList string // as configured, for reasons
	workbook  string
	workflow  string
	namespace *string
	task      string
	project   string
}

// Rules are the callbacks' filters, checked and compiled; Bind makes a
// Matcher of them. Immutable.
type Rules struct {
	rules []rule
}

// Compile checks and compiles the callbacks' filters: every `events:`
// entry (see ExpandEvent) and the workflow and task globs. It returns
// every problem, each a *config.FieldError at its key
// ("callbacks.2.events.1"), joined: `validate` and a reload report them
// with their positions in the file.
func Compile(cbs []config.Callback) (*Rules, error) {
	rs := &Rules{rules: make([]rule, 0, len(cbs))}
	var errs []error
	for i := range cbs {
		r, err := compileRule(&cbs[i], i)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rs.rules = append(rs.rules, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return rs, nil
}

func compileRule(cb *config.Callback, i int) (rule, error) {
	label := config.CallbackLabel(cb, i)
	base := "callbacks." + strconv.Itoa(i) + "."
	var errs []error
	problem := func(path, field, value, msg string) {
		errs = append(errs, &config.FieldError{Path: base + path, Callback: label, Field: field, Value: value, Msg: msg})
	}
	if len(cb.Events) == 0 {
		problem("events", "events", "", `must list at least one event (e.g. ["*"])`)
	}
	var set typeSet
	for j, e := range cb.Events {
		ts, err := ExpandEvent(e)
		if err != nil {
			problem("events."+strconv.Itoa(j), "events", e, err.Error())
		}
		for _, t := range ts {
			set = set.with(t)
		}
	}
	for _, g := range []struct{ field, pat string }{{"workflow", cb.Workflow}, {"task", cb.Task}} {
		if _, err := path.Match(g.pat, ""); err != nil {
			problem(g.field, g.field, g.pat, fmt.Sprintf("bad glob %q: %v", g.pat, err))
		}
	}
	if len(errs) > 0 {
		return rule{}, errors.Join(errs...)
	}
	return rule{
		name: cb.Name, events: set, eventList: "[" + strings.Join(cb.Events, ", ") + "]",
		workbook: cb.Workbook, workflow: cb.Workflow, namespace: cb.Namespace, task: cb.Task,
		project: cb.Project,
	}, nil
}

// Matcher is immutable and safe for concurrent use; build a new one on
// reload.
type Matcher struct {
	rules []rule
	wb    WorkbookIndex
}

// Bind returns a Matcher of rs that asks wb for workbook membership. wb
// may be nil when no callback uses `workbook`.
func (rs *Rules) Bind(wb WorkbookIndex) (*Matcher, error) {
	for _, r := range rs.rules {
		if r.workbook != "" && wb == nil {
			return nil, fmt.Errorf("callback %q: filters on workbook but no workbook index is available", r.name)
		}
	}
	return &Matcher{rules: rs.rules, wb: wb}, nil
}

// New is Compile then Bind.
func New(cbs []config.Callback, wb WorkbookIndex) (*Matcher, error) {
	rs, err := Compile(cbs)
	if err != nil {
		return nil, err
	}
	return rs.Bind(wb)
}

// Match returns the names of the callbacks that get ev, in config order.
func (m *Matcher) Match(ev *event.Event) []string {
	var out []string
	for i := range m.rules {
		if ok, _ := m.rules[i].match(ev, m.wb, false); ok {
			out = append(out, m.rules[i].name)
		}
	}
	return out
}

// Explain returns every callback's decision on ev, in config order.
func (m *Matcher) Explain(ev *event.Event) []Decision {
	out := make([]Decision, len(m.rules))
	for i := range m.rules {
		ok, reason := m.rules[i].match(ev, m.wb, true)
		out[i] = Decision{Callback: m.rules[i].name, Matched: ok, Reason: reason}
	}
	return out
}

// match checks the filters cheapest first. Reasons are only formatted when
// asked for (the guards before each Sprintf keep its arguments from being
// boxed), so that Match does not allocate per callback.
//
// The task filter applies to TASK events only: an execution event has no
// task, so a callback with `task:` and `events: ["*"]` still gets the
// execution events (use `events: [TASK]` to get task events only).
func (r *rule) match(ev *event.Event, wb WorkbookIndex, explain bool) (bool, string) {
	if !r.events.has(ev.Type) {
		if !explain {
			return false, ""
		}
		return false, fmt.Sprintf("event type %s not in %s", ev.Type, r.eventList)
	}
	if r.project != "" {
		if ok, why := r.projectMatch(ev, wb, explain); !ok {
			return false, why
		}
	}
	wf := ev.WorkflowName()
	ns := ev.Namespace()
	if ok, why := r.namesMatch(ev, wf, ns, explain); !ok {
		return false, why
	}
	if r.workbook != "" {
		if ok, why := r.workbookMatch(ev, wb, wf, ns, explain); !ok {
			return false, why
		}
	}
	if !explain {
		return true, ""
	}
	return true, r.explainMatch(ev, wf, ns)
}

// namesMatch checks the namespace, workflow and task filters against the
// event's workflow wf and namespace ns. As match, it formats a reason only
// when explain is set, so that a refusal does not allocate.
func (r *rule) namesMatch(ev *event.Event, wf, ns string, explain bool) (bool, string) {
	if r.namespace != nil && *r.namespace != ns {
		if !explain {
			return false, ""
		}
		return false, fmt.Sprintf("namespace %q is not %q", ns, *r.namespace)
	}
	if r.workflow != "" {
		if ok, _ := path.Match(r.workflow, wf); !ok {
			if !explain {
				return false, ""
			}
			return false, fmt.Sprintf("workflow %q does not match %q", wf, r.workflow)
		}
	}
	if r.task != "" && ev.Kind() == event.KindTask {
		if ok, _ := path.Match(r.task, ev.TaskName()); !ok {
			if !explain {
				return false, ""
			}
			return false, fmt.Sprintf("task %q does not match %q", ev.TaskName(), r.task)
		}
	}
	return true, ""
}

// workbookMatch checks the workbook filter (set): the event's workflow wf
// in namespace ns must belong to it in the workbook index. The reason
// tells an unknown workflow from one in another workbook, the usual
// mistakes.
func (r *rule) workbookMatch(ev *event.Event, wb WorkbookIndex, wf, ns string, explain bool) (bool, string) {
	got, ok := workbookOf(wb, ev, wf, ns)
	switch {
	case !ok:
		if !explain {
			return false, ""
		}
		return false, fmt.Sprintf("workbook: %s is not a workflow of workbook %s (not in any known workbook)", wf, r.workbook)
	case got != r.workbook:
		if !explain {
			return false, ""
		}
		return false, fmt.Sprintf("workbook: %s is not a workflow of workbook %s (it is in %s)", wf, r.workbook, got)
	}
	return true, ""
}

// explainMatch says why a matching event matched: one reason per filter
// the callback sets, in the order match checks them.
func (r *rule) explainMatch(ev *event.Event, wf, ns string) string {
	var why []string
	why = append(why, fmt.Sprintf("event type %s in %s", ev.Type, r.eventList))
	if r.project != "" {
		why = append(why, fmt.Sprintf("project %q", r.project))
	}
	if r.namespace != nil {
		why = append(why, fmt.Sprintf("namespace %q", ns))
	}
	if r.workflow != "" {
		why = append(why, fmt.Sprintf("workflow %q matches %q", wf, r.workflow))
	}
	if r.task != "" {
		if ev.Kind() == event.KindTask {
			why = append(why, fmt.Sprintf("task %q matches %q", ev.TaskName(), r.task))
		} else {
			why = append(why, "task filter does not apply to execution events")
		}
	}
	if r.workbook != "" {
		why = append(why, fmt.Sprintf("%s is a workflow of workbook %s", wf, r.workbook))
	}
	return strings.Join(why, "; ")
}

// Names returns the callback names in config order.
func (m *Matcher) Names() []string {
	out := make([]string, len(m.rules))
	for i := range m.rules {
		out[i] = m.rules[i].name
	}
	return slices.Clip(out)
}
