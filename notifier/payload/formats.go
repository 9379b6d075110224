package payload

import (
	"fmt"
	"strings"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// executionFields are the fields of Mistral's execution notification
// payload, in Mistral's order (mistral-api.md §3, §8); "name" is the
// workflow name, as Mistral sends it.
func executionFields(x *event.Execution) obj {
	return obj{
		{"id", x.ID},
		{"name", x.WorkflowName},
		{"workflow_name", x.WorkflowName},
		{"workflow_namespace", x.WorkflowNamespace},
		{"workflow_id", x.WorkflowID},
		{"state", x.State},
		{"state_info", x.StateInfo},
		{"project_id", x.ProjectID},
		{"task_execution_id", x.TaskExecutionID},
		{"root_execution_id", x.RootExecutionID},
		{"created_at", x.CreatedAt},
		{"updated_at", x.UpdatedAt},
	}
}

// taskFields are the fields of Mistral's task notification payload, in
// Mistral's order.
func taskFields(t *event.Task) obj {
	return obj{
		{"id", t.ID},
		{"name", t.Name},
		{"workflow_execution_id", t.WorkflowExecutionID},
		{"workflow_name", t.WorkflowName},
		{"workflow_namespace", t.WorkflowNamespace},
		{"workflow_id", t.WorkflowID},
		{"state", t.State},
		{"state_info", t.StateInfo},
		{"type", t.Type},
		{"project_id", t.ProjectID},
		{"created_at", t.CreatedAt},
		{"updated_at", t.UpdatedAt},
		{"started_at", t.StartedAt},
		{"finished_at", t.FinishedAt},
	}
}

// mistralObject is Mistral's notification body: the entity's fields plus
// "event".
func mistralObject(ev *event.Event) obj {
	var o obj
	if ev.Task != nil {
		o = taskFields(ev.Task)
	} else {
		o = executionFields(ev.Execution)
	}
	return append(o, field{"event", string(ev.Type)})
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// envelopeObject is the "envelope" format, also the data of the
// "cloudevents" format:
//
//	{"id": event id (= webhook-id), "type": "WORKFLOW_SUCCEEDED",
//	 "time": RFC 3339 UTC, when mistral-tap derived the event,
//	 "sequence": per root execution, from 1, "inferred": bool,
//	 "previous_state": state before, or null, "source": "tap" or "watch",
//	 "root_execution_id": ..., "execution": {...} or "task": {...}}
//
// The execution/task object has the fields of the "mistral" format, without
// "event".
func envelopeObject(ev *event.Event) obj {
	o := obj{
		{"id", ev.ID},
		{"type", string(ev.Type)},
		{"time", rfc3339(ev.Time)},
		{"sequence", ev.Sequence},
		{"inferred", ev.Inferred},
		{"previous_state", nullIfEmpty(ev.PreviousState)},
		{"source", nullIfEmpty(string(ev.Source))},
		{"root_execution_id", nullIfEmpty(ev.RootExecutionID)},
	}
	if ev.Task != nil {
		return append(o, field{"task", taskFields(ev.Task)})
	}
	return append(o, field{"execution", executionFields(ev.Execution)})
}

// CloudEventType is the CloudEvents type of an event type: the reverse-DNS
// prefix "io.openstack.mistral." and Mistral's event name in lower case with
// the first underscore as a dot, e.g. WORKFLOW_SUCCEEDED →
// "io.openstack.mistral.workflow.succeeded", TASK_LAUNCHED →
// "io.openstack.mistral.task.launched".
func CloudEventType(t event.Type) string {
	return "io.openstack.mistral." + strings.ToLower(strings.Replace(string(t), "_", ".", 1))
}

// ceAttributes are the context attributes, in a fixed order:
// specversion, id, source, type, subject (entity id), time,
// datacontenttype, and the extensions
//
//   - sequence: the event's sequence per root execution, as the CloudEvents
//     sequence extension wants it: a string that orders lexicographically,
//     so zero-padded to 20 digits;
//   - inferred: boolean, true when the transition was deduced;
//   - rootexecutionid: the root execution, for routing and grouping.
func (f *Formatter) ceAttributes(ev *event.Event) obj {
	return obj{
		{"specversion", "1.0"},
		{"id", ev.ID},
		{"source", f.source},
		{"type", CloudEventType(ev.Type)},
		{"subject", ev.EntityID()},
		{"time", rfc3339(ev.Time)},
		{"datacontenttype", ContentTypeJSON},
		{"sequence", fmt.Sprintf("%020d", ev.Sequence)},
		{"inferred", ev.Inferred},
		{"rootexecutionid", ev.RootExecutionID},
	}
}

// ceText is an attribute's canonical string form (binary mode headers).
func ceText(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case bool:
		if v {
			return "true"
		}
		return "false"
	}
	return fmt.Sprint(v)
}

// percentEncode encodes a binary-mode header value as the CloudEvents HTTP
// binding (3.1.3.2) requires: space, '"', '%' and everything outside
// printable ASCII as %XX of the UTF-8 bytes.
func percentEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c > '~' || c == '"' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// TemplateData is what body and header templates see as ".":
//
//	.Event    the *event.Event: fields ID, Type, Sequence, RootExecutionID,
//	          PreviousState, Inferred, Source, Time, Execution, Task (one of
//	          them nil: guard with {{ with .Event.Task }}); methods Kind,
//	          EntityID, WorkflowName, Namespace, TaskName
//	.Payload  the "mistral" format's object as a map (snake_case keys, nil
//	          for null), e.g. {{ .Payload.state }}
//	.Envelope the "envelope" format's object as a map
//
// Nullable entity fields (.Event.Execution.StateInfo ...) are *string; use
// default "" to print nil as empty: {{ default "" .Event.Task.StateInfo }}.
type TemplateData struct {
	Event    *event.Event
	Payload  map[string]any
	Envelope map[string]any
}

func newTemplateData(ev *event.Event) *TemplateData {
	return &TemplateData{
		Event:    ev,
		Payload:  mistralObject(ev).toMap(),
		Envelope: envelopeObject(ev).toMap(),
	}
}

// Samples returns an execution event and a task event with every field set
// (nullable ones both set and null), against which New tries templates;
// `mistral-tap validate` can render them too.
func Samples() []*event.Event {
	info := "Failure caused by error in tasks: fetch"
	root := "a7d4b3c2-0000-4000-8000-000000000001"
	created := "2026-11-28 06:48:35"
	updated := "2026-11-28 06:48:38"
	t := time.Date(2026, 11, 28, 6, 48, 38, 123456789, time.UTC)
	exec := &event.Event{
		ID:              "evt_0123456789abcdef0123456789abcdef",
		Type:            event.WorkflowFailed,
		Sequence:        7,
		RootExecutionID: root,
		PreviousState:   event.StateRunning,
		Source:          event.SourceTap,
		Time:            t,
		Execution: &event.Execution{
			ID:                root,
			WorkflowName:      "wb1.main",
			WorkflowNamespace: "",
			WorkflowID:        "024e3b1a-0000-4000-8000-000000000002",
			State:             event.StateError,
			StateInfo:         &info,
			ProjectID:         "<default-project>",
			CreatedAt:         created,
			UpdatedAt:         &updated,
		},
	}
	task := &event.Event{
		ID:              "evt_fedcba9876543210fedcba9876543210",
		Type:            event.TaskLaunched,
		Sequence:        2,
		RootExecutionID: root,
		Source:          event.SourceWatch,
		Inferred:        true,
		Time:            t,
		Task: &event.Task{
			ID:                  "30db1c2d-0000-4000-8000-000000000003",
			Name:                "fetch",
			WorkflowExecutionID: root,
			WorkflowName:        "wb1.main",
			WorkflowNamespace:   "",
			WorkflowID:          "024e3b1a-0000-4000-8000-000000000002",
			State:               event.StateRunning,
			Type:                "ACTION",
			ProjectID:           "<default-project>",
			CreatedAt:           created,
			UpdatedAt:           &created,
			StartedAt:           &created,
		},
	}
	return []*event.Event{exec, task}
}
