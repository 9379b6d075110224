package matcher

import (
	"fmt"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// ProjectNames resolves a Keystone project name to its id. A WorkbookIndex
// that also implements it (matcher/workbooks.Resolver with Keystone) lets
// callbacks name their project; without it only ids match.
type ProjectNames interface {
	ProjectID(nameOrID string) (id string, ok bool)
}

// ProjectWorkbooks answers WorkbookOf within one project: with Mistral's
// auth on, two projects may each have a workbook "ops". A WorkbookIndex
// that implements it is asked with the event's project.
type ProjectWorkbooks interface {
	WorkbookIn(project, workflowName, namespace string) (workbook string, ok bool)
}

// projectOf is the project of the event's execution or task (Mistral's
// project_id, "<default-project>" with auth off).
func projectOf(ev *event.Event) string {
	if ev.Task != nil {
		return ev.Task.ProjectID
	}
	if ev.Execution != nil {
		return ev.Execution.ProjectID
	}
	return ""
}

// projectMatch checks a callback's `project` filter. A name that Keystone
// has not resolved (yet) matches nothing: a project filter must never let
// another project's events through.
func (r *rule) projectMatch(ev *event.Event, wb WorkbookIndex, explain bool) (bool, string) {
	got := projectOf(ev)
	if got == r.project {
		return true, ""
	}
	if !config.IsProjectID(r.project) {
		if names, ok := wb.(ProjectNames); ok {
			if id, ok := names.ProjectID(r.project); ok && id == got {
				return true, ""
			}
			if !explain {
				return false, ""
			}
			if id, ok := names.ProjectID(r.project); ok {
				return false, fmt.Sprintf("project %q is not %q (%s)", got, r.project, id)
			}
		}
		if !explain {
			return false, ""
		}
		return false, fmt.Sprintf("project %q is not %q (a name not resolved through Keystone)", got, r.project)
	}
	if !explain {
		return false, ""
	}
	return false, fmt.Sprintf("project %q is not %q", got, r.project)
}

// workbookOf asks the index within the event's project when it can.
func workbookOf(wb WorkbookIndex, ev *event.Event, wf, ns string) (string, bool) {
	if pw, ok := wb.(ProjectWorkbooks); ok {
		return pw.WorkbookIn(projectOf(ev), wf, ns)
	}
	return wb.WorkbookOf(wf, ns)
}
