package fakemistral

import (
	"sort"
	"strings"
)

// createWorkflows creates (or with update, replaces) the workflows of a
// standalone workflow file. Caller holds e.mu.
func (e *Engine) createWorkflows(text, namespace string, update bool) ([]*workflowDef, error) {
	specs, err := parseWorkflows(text)
	if err != nil {
		return nil, &apiError{status: 400, msg: err.Error()}
	}
	return e.storeWorkflows(specs, namespace, "", update)
}

func (e *Engine) storeWorkflows(specs []*wfSpec, namespace, workbook string, update bool) ([]*workflowDef, error) {
	existing := func(name string) *workflowDef {
		for _, w := range e.workflows {
			if w.Name == name && w.Namespace == namespace {
				return w
			}
		}
		return nil
	}
	for _, s := range specs {
		name := qualify(workbook, s.Name)
		w := existing(name)
		if w != nil && !update {
			return nil, errf(409, "Duplicate entry for WorkflowDefinition ['name', 'namespace', 'project_id']: %s, %s, %s", name, namespace, projectID)
		}
		if w == nil && update && workbook == "" {
			return nil, errf(404, "WorkflowDefinition not found [workflow_name=%s, namespace=%s]", name, namespace)
		}
	}
	var out []*workflowDef
	now := e.stamp()
	for _, s := range specs {
		name := qualify(workbook, s.Name)
		w := existing(name)
		if w == nil {
			w = &workflowDef{ID: newID(), Name: name, Namespace: namespace, Workbook: workbook, CreatedAt: now, seq: e.nextSeq(), project: e.viewerProject()}
			e.workflows[w.ID] = w
		} else {
			w.UpdatedAt = strp(now)
		}
		w.Spec = s
		w.Definition = workflowDefinition(s)
		out = append(out, w)
	}
	return out, nil
}

func qualify(workbook, name string) string {
	if workbook == "" {
		return name
	}
	return workbook + "." + name
}

// createWorkbook creates (or with update, replaces) a workbook and its
// workflows, stored as "<workbook>.<workflow>". Caller holds e.mu.
func (e *Engine) createWorkbook(text, namespace string, update bool) (*workbookDef, error) {
	name, specs, err := parseWorkbook(text)
	if err != nil {
		return nil, &apiError{status: 400, msg: err.Error()}
	}
	wb := e.findWorkbook(name, namespace)
	switch {
	case wb != nil && !update:
		return nil, errf(409, "Duplicate entry for Workbook ['name', 'namespace', 'project_id']: %s, %s, %s", name, namespace, projectID)
	case wb == nil && update:
		return nil, errf(404, "Workbook not found [workbook_name=%s, namespace=%s]", name, namespace)
	}
	now := e.stamp()
	if wb == nil {
		wb = &workbookDef{ID: newID(), Name: name, Namespace: namespace, CreatedAt: now, seq: e.nextSeq(), project: e.viewerProject()}
	} else {
		wb.UpdatedAt = strp(now)
		// Workflows dropped from the workbook disappear with it.
		keep := map[string]bool{}
		for _, s := range specs {
			keep[qualify(name, s.Name)] = true
		}
		for id, w := range e.workflows {
			if w.Workbook == name && w.Namespace == namespace && !keep[w.Name] {
				delete(e.workflows, id)
			}
		}
	}
	wb.Definition = text
	if _, err := e.storeWorkflows(specs, namespace, name, true); err != nil {
		return nil, err
	}
	e.workbooks[wb.ID] = wb
	return wb, nil
}

func (e *Engine) findWorkbook(name, namespace string) *workbookDef {
	for _, wb := range e.workbooks {
		if (wb.Name == name || wb.ID == name) && wb.Namespace == namespace && e.sees(wb.project, true) {
			return wb
		}
	}
	return nil
}

func (e *Engine) deleteWorkbook(wb *workbookDef) {
	delete(e.workbooks, wb.ID)
	for id, w := range e.workflows {
		if w.Workbook == wb.Name && w.Namespace == wb.Namespace {
			delete(e.workflows, id)
		}
	}
}

func sortedStrings(s []string) string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return "[" + strings.Join(s, ", ") + "]"
}
