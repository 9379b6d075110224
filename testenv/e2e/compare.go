package e2e

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/mistral-tap/mistral-tap/testenv/receiver"
)

// Notification is one webhook delivery, decoded from Mistral's notifier
// body ("mistral" format) or from mistral-tap's "envelope" format.
type Notification struct {
	Event string // "" for Mistral's `"event": null` posts
	// Entity is the id of the execution or task; Task tells which.
	Entity string
	Task   bool
	Name   string // task name, or workflow name for executions
	State  string
	// ExecutionID is the entity's own execution: the task's
	// workflow_execution_id, or the execution id itself.
	ExecutionID string
	// ParentTaskID is an execution's task_execution_id (sub-workflows).
	ParentTaskID string
	// StartedAt and FinishedAt are a task's timestamps (whole seconds,
	// "YYYY-MM-DD HH:MM:SS", so they sort as strings).
	StartedAt, FinishedAt string

	// Envelope-only fields.
	ID       string // event id
	Sequence uint64
	Inferred bool
	Source   string
	Root     string

	WebhookID string // header webhook-id
	At        time.Time
}

// Key is what parity compares: the event type and the entity.
type Key struct{ Event, Entity string }

func (k Key) String() string { return k.Event + "/" + short(k.Entity) }

// Key returns the notification's parity key.
func (n Notification) Key() Key { return Key{n.Event, n.Entity} }

type entityJSON struct {
	ID                  string  `json:"id"`
	Name                string  `json:"name"`
	State               string  `json:"state"`
	WorkflowExecutionID *string `json:"workflow_execution_id"`
	TaskExecutionID     *string `json:"task_execution_id"`
	StartedAt           *string `json:"started_at"`
	FinishedAt          *string `json:"finished_at"`
}

func (e entityJSON) fill(n *Notification) {
	n.Entity, n.Name, n.State = e.ID, e.Name, e.State
	if e.StartedAt != nil {
		n.StartedAt = *e.StartedAt
	}
	if e.FinishedAt != nil {
		n.FinishedAt = *e.FinishedAt
	}
	if e.WorkflowExecutionID != nil {
		n.Task = true
		n.ExecutionID = *e.WorkflowExecutionID
	} else {
		n.ExecutionID = e.ID
		if e.TaskExecutionID != nil {
			n.ParentTaskID = *e.TaskExecutionID
		}
	}
}

// ParseMistral decodes a body in Mistral's notifier format.
func ParseMistral(r receiver.Request) (Notification, error) {
	var body struct {
		entityJSON
		Event *string `json:"event"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		return Notification{}, fmt.Errorf("mistral-format body %q: %w", short(string(r.Body)), err)
	}
	n := Notification{WebhookID: r.Header.Get("webhook-id"), At: r.At}
	body.entityJSON.fill(&n)
	if body.Event != nil {
		n.Event = *body.Event
	}
	return n, nil
}

// ParseEnvelope decodes a body in mistral-tap's envelope format.
func ParseEnvelope(r receiver.Request) (Notification, error) {
	var body struct {
		ID        string      `json:"id"`
		Type      string      `json:"type"`
		Sequence  uint64      `json:"sequence"`
		Inferred  bool        `json:"inferred"`
		Source    *string     `json:"source"`
		Root      *string     `json:"root_execution_id"`
		Execution *entityJSON `json:"execution"`
		Task      *entityJSON `json:"task"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		return Notification{}, fmt.Errorf("envelope body %q: %w", short(string(r.Body)), err)
	}
	n := Notification{Event: body.Type, ID: body.ID, Sequence: body.Sequence, Inferred: body.Inferred,
		WebhookID: r.Header.Get("webhook-id"), At: r.At}
	if body.Source != nil {
		n.Source = *body.Source
	}
	if body.Root != nil {
		n.Root = *body.Root
	}
	switch {
	case body.Task != nil:
		body.Task.fill(&n)
		n.Task = true // a task object always is one, even without the field
	case body.Execution != nil:
		body.Execution.fill(&n)
	default:
		return n, fmt.Errorf("envelope %s has neither execution nor task", body.ID)
	}
	return n, nil
}

// Parse decodes every request with parse, dropping duplicates of the same
// webhook-id (at-least-once delivery may repeat one).
func Parse(reqs []receiver.Request, parse func(receiver.Request) (Notification, error)) ([]Notification, []error) {
	var out []Notification
	var errs []error
	seen := map[string]bool{}
	for _, r := range reqs {
		n, err := parse(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if n.WebhookID != "" {
			if seen[n.WebhookID] {
				continue
			}
			seen[n.WebhookID] = true
		}
		out = append(out, n)
	}
	return out, errs
}

// InTree keeps the notifications about executions in tree (ids) and their
// tasks, and (unless keepNull) drops Mistral's "event": null posts.
func InTree(ns []Notification, tree map[string]bool, keepNull bool) []Notification {
	var out []Notification
	for _, n := range ns {
		if n.Event == "" && !keepNull {
			continue
		}
		if tree[n.ExecutionID] {
			out = append(out, n)
		}
	}
	return out
}

// Parity is the multiset comparison of expected (Mistral's notifier) and
// delivered (mistral-tap, mistral format) events.
type Parity struct {
	Expected, Delivered int
	Missing             []Key // expected but not delivered (with multiplicity)
	Extra               []Key // delivered but not expected
	// ExtraNotInferred are the extras that the envelope callback did not
	// mark inferred: these are real discrepancies.
	ExtraNotInferred []Key
}

// Line is the PARITY line the suite prints.
func (p Parity) Line(scenario string) string {
	return fmt.Sprintf("PARITY scenario=%s expected=%d delivered=%d missing=%d extra=%d",
		scenario, p.Expected, p.Delivered, len(p.Missing), len(p.Extra))
}

// OK reports whether nothing is missing and every extra was inferred.
func (p Parity) OK() bool { return len(p.Missing) == 0 && len(p.ExtraNotInferred) == 0 }

// Compare computes parity. envelopes are mistral-tap's envelope deliveries
// for the same events: an extra is excused when an envelope with the same
// key says inferred.
func Compare(expected, delivered, envelopes []Notification) Parity {
	p := Parity{Expected: len(expected), Delivered: len(delivered)}
	want := map[Key]int{}
	for _, n := range expected {
		want[n.Key()]++
	}
	got := map[Key]int{}
	for _, n := range delivered {
		got[n.Key()]++
	}
	inferred := map[Key]int{}
	for _, n := range envelopes {
		if n.Inferred {
			inferred[n.Key()]++
		}
	}
	for _, k := range sortedKeys(want, got) {
		w, g := want[k], got[k]
		for i := g; i < w; i++ {
			p.Missing = append(p.Missing, k)
		}
		for i := w; i < g; i++ {
			p.Extra = append(p.Extra, k)
			if i-w >= inferred[k] {
				p.ExtraNotInferred = append(p.ExtraNotInferred, k)
			}
		}
	}
	return p
}

func sortedKeys(ms ...map[Key]int) []Key {
	set := map[Key]bool{}
	for _, m := range ms {
		for k := range m {
			set[k] = true
		}
	}
	keys := make([]Key, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Entity != keys[j].Entity {
			return keys[i].Entity < keys[j].Entity
		}
		return keys[i].Event < keys[j].Event
	})
	return keys
}

func isStart(ev string) bool {
	return strings.HasSuffix(ev, "_LAUNCHED") || strings.HasSuffix(ev, "_RESUMED") || strings.HasSuffix(ev, "_RERUN")
}

func isTerminal(ev string) bool {
	for _, s := range []string{"_SUCCEEDED", "_FAILED", "_CANCELLED", "_SKIPPED"} {
		if strings.HasSuffix(ev, s) {
			return true
		}
	}
	return false
}

// CheckOrder checks mistral-tap's envelope deliveries for causal order, per
// root execution, and returns every violation found:
//   - sequences are unique per root, and arrive in increasing order
//     (ordering "root" is the default);
//   - an entity's first event is a start (LAUNCHED/RESUMED/RERUN), and each
//     terminal event follows a start since the previous terminal;
//   - a task's events come after its execution's first start;
//   - WORKFLOW_SUCCEEDED comes after every terminal event of its tasks
//     (unless opts.LateTasks: a forced or cancelled execution's running
//     task really ends later);
//   - a task that finished in an earlier second than another task started
//     has its terminal event before that task's start event;
//   - a sub-workflow's WORKFLOW_LAUNCHED comes after its parent task's first
//     start, and the parent's TASK_SUCCEEDED after the child's
//     WORKFLOW_SUCCEEDED.
func CheckOrder(envelopes []Notification, opts OrderOptions) []string {
	var problems []string
	byRoot := map[string][]Notification{}
	for _, n := range envelopes {
		byRoot[n.Root] = append(byRoot[n.Root], n)
	}
	roots := make([]string, 0, len(byRoot))
	for r := range byRoot {
		roots = append(roots, r)
	}
	sort.Strings(roots)
	for _, root := range roots {
		arrival := byRoot[root]
		// Arrival order must already be sequence order.
		for i := 1; i < len(arrival); i++ {
			if arrival[i].Sequence <= arrival[i-1].Sequence {
				problems = append(problems, fmt.Sprintf("root %s: seq %d (%s) arrived after seq %d (%s)",
					short(root), arrival[i].Sequence, arrival[i].Key(), arrival[i-1].Sequence, arrival[i-1].Key()))
			}
		}
		seq := append([]Notification(nil), arrival...)
		sort.SliceStable(seq, func(i, j int) bool { return seq[i].Sequence < seq[j].Sequence })
		problems = append(problems, checkCausal(short(root), seq, opts)...)
	}
	return problems
}

// OrderOptions relaxes CheckOrder for scenarios where Mistral itself breaks
// a rule.
type OrderOptions struct {
	// LateTasks allows task events after their execution's terminal event.
	LateTasks bool
}

func checkCausal(root string, seq []Notification, opts OrderOptions) []string {
	var problems []string
	bad := func(f string, a ...any) { problems = append(problems, "root "+root+": "+fmt.Sprintf(f, a...)) }
	started := map[string]bool{}        // entity → a start since its last terminal
	lastTerminal := map[string]string{} // entity → its last terminal event, until a start
	seen := map[string]bool{}           // entity → any event yet
	firstStart := map[string]int{}
	execOfTask := map[string]string{}
	lastTaskTerminal := map[string]int{} // execution → index of its tasks' last terminal
	wfSucceeded := map[string]int{}      // execution → index of its last WORKFLOW_SUCCEEDED
	parentOf := map[string]string{}      // child execution → parent task
	for i := 1; i < len(seq); i++ {
		if seq[i].Sequence == seq[i-1].Sequence {
			bad("sequence %d used twice (%s, %s)", seq[i].Sequence, seq[i-1].Key(), seq[i].Key())
		}
	}
	for i, n := range seq {
		id := n.Entity
		switch {
		case isStart(n.Event):
			started[id] = true
			if _, ok := firstStart[id]; !ok {
				firstStart[id] = i
			}
		case !seen[id]:
			bad("first event of %s is %s, not a start", short(id), n.Event)
		case isTerminal(n.Event) && !started[id] && !(n.Event == "TASK_SUCCEEDED" && lastTerminal[id] == n.Event):
			// A task's wait-after delay makes Mistral complete it twice
			// (TASK_SUCCEEDED, DELAYED, TASK_SUCCEEDED): the only terminal
			// that may follow a terminal without a start.
			bad("%s without a start since the previous terminal", n.Key())
		}
		if isTerminal(n.Event) {
			started[id] = false
			lastTerminal[id] = n.Event
		} else if isStart(n.Event) {
			lastTerminal[id] = ""
		}
		seen[id] = true
		if n.Task {
			execOfTask[id] = n.ExecutionID
			if _, ok := firstStart[n.ExecutionID]; !ok {
				bad("%s before its execution %s started", n.Key(), short(n.ExecutionID))
			}
			if isTerminal(n.Event) {
				lastTaskTerminal[n.ExecutionID] = i
			}
		} else {
			if n.ParentTaskID != "" {
				parentOf[id] = n.ParentTaskID
				if n.Event == "WORKFLOW_LAUNCHED" {
					if _, ok := firstStart[n.ParentTaskID]; !ok {
						bad("sub-workflow %s launched before its parent task %s", short(id), short(n.ParentTaskID))
					}
				}
			}
			if n.Event == "WORKFLOW_SUCCEEDED" {
				wfSucceeded[id] = i
			}
		}
	}
	for ex, at := range wfSucceeded {
		if last, ok := lastTaskTerminal[ex]; ok && last > at && !opts.LateTasks {
			bad("a task of %s ended after WORKFLOW_SUCCEEDED", short(ex))
		}
	}
	// Happens-before from Mistral's own timestamps, across tasks.
	for i, end := range seq {
		if !end.Task || !isTerminal(end.Event) || end.FinishedAt == "" {
			continue
		}
		for j, st := range seq {
			if j < i && st.Task && st.Entity != end.Entity && isStart(st.Event) &&
				st.StartedAt != "" && end.FinishedAt < st.StartedAt {
				bad("%s (finished %s) delivered after %s (started %s)",
					end.Key(), end.FinishedAt, st.Key(), st.StartedAt)
			}
		}
	}
	for i, n := range seq {
		if n.Task && n.Event == "TASK_SUCCEEDED" {
			for child, parent := range parentOf {
				if parent == n.Entity {
					if at, ok := wfSucceeded[child]; !ok || at > i {
						bad("parent task %s succeeded before sub-workflow %s", short(n.Entity), short(child))
					}
				}
			}
		}
	}
	return problems
}

// Sequence renders notifications as one readable line: the event (or
// null(STATE)) and a label per entity, e.g.
// "WORKFLOW_LAUNCHED(wf) TASK_LAUNCHED(t1#1) null:DELAYED(t1#1)".
func Sequence(ns []Notification) string {
	labels := map[string]string{}
	count := map[string]int{}
	var b strings.Builder
	for i, n := range ns {
		l, ok := labels[n.Entity]
		if !ok {
			count[n.Name]++
			l = n.Name
			if count[n.Name] > 1 {
				l = fmt.Sprintf("%s#%d", n.Name, count[n.Name])
			}
			labels[n.Entity] = l
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		ev := n.Event
		if ev == "" {
			ev = "null:" + n.State
		}
		fmt.Fprintf(&b, "%s(%s)", ev, l)
		if n.Inferred {
			b.WriteString("[inferred]")
		}
	}
	return b.String()
}

func short(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}
