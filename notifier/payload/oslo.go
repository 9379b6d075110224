package payload

import (
	"strings"

	"github.com/google/uuid"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// FormatOslo is an OpenStack notification, as oslo.messaging's notifier puts
// it on the wire (messaging v2 envelope), for AMQP callbacks whose consumer
// is an OpenStack service, Mistral's own event triggers in particular:
//
//	{"oslo.version": "2.0", "oslo.message": "<the message as a JSON string>"}
//
// The inner message is, in this order:
//
//	message_id   a UUID derived from the event id (stable across retries)
//	publisher_id Spec.PublisherID, default "mistral-tap"
//	event_type   OsloEventType, e.g. "mistral_tap.workflow.failed"
//	priority     "INFO" (oslo's notifier writes it upper-case; the routing
//	             key carries it lower-case: notifications.info)
//	payload      the "mistral" format's object (Mistral's own notifier
//	             payload, "event" included) plus "mistral_tap": {event_id,
//	             sequence, inferred, previous_state, root_execution_id}
//	timestamp    the event's time as oslo writes it, "2006-01-02 15:04:05.000000" (UTC)
//	_context_project_id  the entity's project_id, null when unknown
//	_context_user_id     null (Mistral does not expose the user)
//	_context_request_id  "req-" + the message_id
//
// Both _context_ keys are always present: Mistral's event engine looks them
// up unguarded, and a matching notification without them kills its handler
// thread until Mistral restarts. _context_project_id is what a private event
// trigger is matched against (it fires only for its own project).
const FormatOslo = "oslo"

// OsloPriority is the priority of every notification in format "oslo".
const OsloPriority = "INFO"

// DefaultPublisherID is the oslo publisher_id when Spec.PublisherID is "".
const DefaultPublisherID = "mistral-tap"

// osloNamespace seeds the message ids (UUID v5 of the event id).
var osloNamespace = uuid.MustParse("6c1b3f0e-2a57-4d7e-9b55-6d4a1f1f0a11")

// OsloEventType is the oslo event_type of a Mistral event type: the prefix
// "mistral_tap." and the name in lower case with its first underscore as a
// dot: WORKFLOW_FAILED → "mistral_tap.workflow.failed", TASK_SKIPPED →
// "mistral_tap.task.skipped". Mistral's event triggers match it exactly.
func OsloEventType(t event.Type) string {
	return "mistral_tap." + strings.ToLower(strings.Replace(string(t), "_", ".", 1))
}

// OsloMessageID is the message_id of ev's notification.
func OsloMessageID(ev *event.Event) string {
	return uuid.NewSHA1(osloNamespace, []byte(ev.ID)).String()
}

// osloBody renders ev in format "oslo".
func (f *Formatter) osloBody(ev *event.Event) []byte {
	id := OsloMessageID(ev)
	pl := append(mistralObject(ev), field{"mistral_tap", obj{
		{"event_id", ev.ID},
		{"sequence", ev.Sequence},
		{"inferred", ev.Inferred},
		{"previous_state", nullIfEmpty(ev.PreviousState)},
		{"root_execution_id", nullIfEmpty(ev.RootExecutionID)},
	}})
	project := ""
	if ev.Task != nil {
		project = ev.Task.ProjectID
	} else if ev.Execution != nil {
		project = ev.Execution.ProjectID
	}
	inner := obj{
		{"message_id", id},
		{"publisher_id", f.publisher},
		{"event_type", OsloEventType(ev.Type)},
		{"priority", OsloPriority},
		{"payload", pl},
		{"timestamp", ev.Time.UTC().Format("2006-01-02 15:04:05.000000")},
		{"_context_project_id", nullIfEmpty(project)},
		{"_context_user_id", nil},
		{"_context_request_id", "req-" + id},
	}
	msg := string(inner.appendJSON(nil, compact))
	return obj{{"oslo.version", "2.0"}, {"oslo.message", msg}}.appendJSON(nil, compact)
}
