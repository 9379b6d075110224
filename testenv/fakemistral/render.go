package fakemistral

import (
	"bytes"
	"encoding/json"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// kv and obj keep JSON objects in Mistral's field order.
type kv struct {
	K string
	V any
}

type obj []kv

func (o obj) get(k string) (any, bool) {
	for _, p := range o {
		if p.K == k {
			return p.V, true
		}
	}
	return nil, false
}

func (o obj) keys() []string {
	out := make([]string, len(o))
	for i, p := range o {
		out[i] = p.K
	}
	return out
}

func (o obj) without(k string) obj {
	out := make(obj, 0, len(o))
	for _, p := range o {
		if p.K != k {
			out = append(out, p)
		}
	}
	return out
}

func (o obj) pick(fields []string) obj {
	want := map[string]bool{}
	for _, f := range fields {
		want[f] = true
	}
	out := obj{}
	for _, p := range o {
		if want[p.K] {
			out = append(out, p)
		}
	}
	return out
}

// MarshalJSON writes the fields in order, without HTML escaping.
func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, p := range o {
		if i > 0 {
			b.WriteString(", ")
		}
		k, _ := json.Marshal(p.K)
		b.Write(k)
		b.WriteString(": ")
		v, err := marshal(p.V)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// marshal encodes v. Objects and lists of objects are written by hand with
// Python's separators (", " and ": "), as WSME's json.dumps does;
// encoding/json would compact a MarshalJSON result.
func marshal(v any) ([]byte, error) {
	switch x := v.(type) {
	case obj:
		return x.MarshalJSON()
	case []obj:
		var b bytes.Buffer
		b.WriteByte('[')
		for i, o := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			j, err := o.MarshalJSON()
			if err != nil {
				return nil, err
			}
			b.Write(j)
		}
		b.WriteByte(']')
		return b.Bytes(), nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

func (e *Engine) execObj(ex *execution) obj {
	return obj{
		{"id", ex.ID}, {"workflow_id", ex.WorkflowID}, {"workflow_name", ex.WorkflowName},
		{"workflow_namespace", ex.Namespace}, {"description", ex.Desc}, {"tags", []string{}},
		{"params", jsonStr(ex.Params)}, {"task_execution_id", nullable(ex.TaskExecutionID)},
		{"root_execution_id", nullable(ex.RootExecutionID)}, {"state", ex.State},
		{"state_info", nullable(ex.StateInfo)}, {"input", jsonStr(ex.Input)},
		{"output", jsonStr(ex.Output)}, {"published_global", "{}"},
		{"created_at", ex.CreatedAt}, {"updated_at", nullable(ex.UpdatedAt)}, {"project_id", ex.projectID()},
	}
}

func (e *Engine) taskObj(t *task) obj {
	pub := t.Published
	if pub == nil {
		pub = map[string]any{}
	}
	o := obj{
		{"id", t.ID}, {"name", t.Name}, {"type", t.Type},
		{"workflow_name", t.ex.WorkflowName}, {"workflow_namespace", t.ex.Namespace},
		{"workflow_id", t.ex.WorkflowID}, {"workflow_execution_id", t.ex.ID}, {"tags", nil},
		{"state", t.State}, {"state_info", nullable(t.StateInfo)},
		{"result", jsonStr(t.Result)}, {"published", jsonStr(pub)},
	}
	if t.State == event.StateSuccess || t.State == event.StateError {
		o = append(o, kv{"published_global", "{}"})
	}
	return append(o, obj{
		{"processed", t.Processed},
		{"created_at", t.CreatedAt}, {"updated_at", nullable(t.UpdatedAt)},
		{"started_at", nullable(t.StartedAt)}, {"finished_at", nullable(t.FinishedAt)},
		{"runtime_context", jsonStr(t.runtimeContext())}, {"project_id", t.ex.projectID()},
	}...)
}

func (e *Engine) actionObj(a *actionExec) obj {
	return obj{
		{"id", a.ID}, {"name", a.Name}, {"description", ""},
		{"workflow_name", a.task.ex.WorkflowName}, {"workflow_namespace", a.task.ex.Namespace},
		{"task_name", a.task.Name}, {"task_execution_id", a.task.ID},
		{"state", a.State}, {"state_info", nullable(a.StateInfo)}, {"tags", nil}, {"accepted", true},
		{"input", jsonStr(a.Input)}, {"output", jsonStr(a.Output)},
		{"created_at", a.CreatedAt}, {"updated_at", nullable(a.UpdatedAt)}, {"project_id", a.task.ex.projectID()},
	}
}

// workflowObj renders a workflow; posted is true for POST/PUT answers, where
// Mistral dumps `interface` as an object rather than a JSON string.
func (e *Engine) workflowObj(w *workflowDef, posted bool) obj {
	var iface any = jsonStr(interfaceOf(w.Spec))
	if posted {
		iface = interfaceOf(w.Spec)
	}
	return obj{
		{"id", w.ID}, {"name", w.Name}, {"namespace", w.Namespace},
		{"input", inputString(w.Spec.Input)}, {"interface", iface},
		{"definition", w.Definition}, {"tags", []string{}}, {"scope", "private"},
		{"project_id", ownerOr(w.project)}, {"created_at", w.CreatedAt}, {"updated_at", nullable(w.UpdatedAt)},
	}
}

func (e *Engine) workbookObj(wb *workbookDef) obj {
	return obj{
		{"id", wb.ID}, {"name", wb.Name}, {"namespace", wb.Namespace},
		{"definition", wb.Definition}, {"tags", []string{}}, {"scope", "private"},
		{"project_id", ownerOr(wb.project)}, {"created_at", wb.CreatedAt}, {"updated_at", nullable(wb.UpdatedAt)},
	}
}
