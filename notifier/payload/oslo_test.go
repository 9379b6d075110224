package payload

import (
	"encoding/json"
	"testing"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// TestOsloEnvelope decodes the wire format the way oslo.messaging does
// (outer JSON, then the inner JSON string) and checks what Mistral's event
// engine relies on.
func TestOsloEnvelope(t *testing.T) {
	for _, ev := range append(Samples(), tricky()) {
		t.Run(string(ev.Type), func(t *testing.T) {
			m := render(t, Spec{Format: FormatOslo}, ev)
			if ct := m.Header.Get("Content-Type"); ct != ContentTypeJSON {
				t.Errorf("Content-Type %q, oslo.messaging drops anything but application/json", ct)
			}
			var outer map[string]any
			if err := json.Unmarshal(m.Body, &outer); err != nil {
				t.Fatal(err)
			}
			if outer["oslo.version"] != "2.0" || len(outer) != 2 {
				t.Fatalf("outer %v", outer)
			}
			s, ok := outer["oslo.message"].(string)
			if !ok {
				t.Fatalf("oslo.message is %T, want a JSON string", outer["oslo.message"])
			}
			var inner map[string]any
			if err := json.Unmarshal([]byte(s), &inner); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"message_id", "publisher_id", "event_type", "priority", "payload", "timestamp", "_context_project_id", "_context_user_id"} {
				if _, ok := inner[k]; !ok {
					t.Errorf("inner message lacks %q", k)
				}
			}
			if inner["event_type"] != OsloEventType(ev.Type) || inner["priority"] != "INFO" || inner["publisher_id"] != DefaultPublisherID {
				t.Errorf("inner %v", inner)
			}
			if inner["message_id"] != OsloMessageID(ev) {
				t.Errorf("message_id %v", inner["message_id"])
			}
			pl := inner["payload"].(map[string]any)
			if pl["id"] != ev.EntityID() || pl["event"] != string(ev.Type) {
				t.Errorf("payload %v", pl)
			}
			if mt := pl["mistral_tap"].(map[string]any); mt["event_id"] != ev.ID {
				t.Errorf("payload.mistral_tap %v", mt)
			}
		})
	}
}

func TestOsloProjectAndNames(t *testing.T) {
	ev := Samples()[0]
	ev.Execution.ProjectID = ""
	m := render(t, Spec{Format: FormatOslo, PublisherID: "tap.host1"}, ev)
	var outer struct {
		Msg string `json:"oslo.message"`
	}
	if err := json.Unmarshal(m.Body, &outer); err != nil {
		t.Fatal(err)
	}
	var inner map[string]any
	if err := json.Unmarshal([]byte(outer.Msg), &inner); err != nil {
		t.Fatal(err)
	}
	if v, ok := inner["_context_project_id"]; !ok || v != nil {
		t.Errorf("_context_project_id = %v, %v; want present and null", v, ok)
	}
	if inner["publisher_id"] != "tap.host1" {
		t.Errorf("publisher_id %v", inner["publisher_id"])
	}
	for typ, want := range map[event.Type]string{
		event.WorkflowFailed: "mistral_tap.workflow.failed",
		event.TaskSkipped:    "mistral_tap.task.skipped",
		event.WorkflowRerun:  "mistral_tap.workflow.rerun",
	} {
		if got := OsloEventType(typ); got != want {
			t.Errorf("OsloEventType(%s) = %q, want %q", typ, got, want)
		}
	}
	if OsloMessageID(ev) != OsloMessageID(ev) || OsloMessageID(ev) == OsloMessageID(Samples()[1]) {
		t.Error("message ids are not a stable function of the event id")
	}
}
