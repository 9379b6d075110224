package track

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// tsLayout is Mistral's timestamp format (see event.TimeLayout).
const tsLayout = event.TimeLayout

// parseTS turns a Mistral timestamp into Unix seconds; 0 when absent or
// malformed (an observation without a usable time is then never newer than
// what is known).
func parseTS(s string) int64 {
	if s == "" {
		return 0
	}
	// Mistral 15 sometimes serialises microseconds; accept both.
	if len(s) > len(tsLayout) {
		s = s[:len(tsLayout)]
	}
	t, err := time.Parse(tsLayout, s)
	if err != nil {
		return 0
	}
	return t.Unix()
}

func formatTS(sec int64) string {
	if sec == 0 {
		return ""
	}
	return time.Unix(sec, 0).UTC().Format(tsLayout)
}

// validNext is Mistral's state machine (mistral/workflow/states.py
// _VALID_TRANSITIONS). The tracker uses it to insert the state an entity
// must have passed through when an observation skips it, e.g. PAUSED→SUCCESS
// implies a resume (PAUSED→RUNNING→SUCCESS).
var validNext = map[string][]string{
	event.StateIdle:      {event.StateRunning, event.StateError, event.StateCancelled},
	event.StateWaiting:   {event.StateRunning},
	event.StateRunning:   {event.StatePaused, event.StateDelayed, event.StateSuccess, event.StateError, event.StateCancelled},
	event.StateDelayed:   {event.StateRunning, event.StateError, event.StateCancelled},
	event.StatePaused:    {event.StateRunning, event.StateError, event.StateCancelled},
	event.StateCancelled: {event.StateRunning},
	event.StateError:     {event.StateRunning, event.StateSkipped},
}

func valid(from, to string) bool {
	for _, s := range validNext[from] {
		if s == to {
			return true
		}
	}
	return false
}

// step is one derived transition of an entity, before it gets an id and a
// sequence number.
type step struct {
	typ      event.Type
	from, to string
	inferred bool
	// occurrence tells apart repeats of the same transition that Mistral
	// stamps with the same second (retry cycles).
	occurrence int
}

// policies is what a task's runtime_context says about Mistral's task
// policies: the retry counter and whether the wait-before and wait-after
// delays have happened (Mistral marks them {"skip": true} so a retry does not
// wait again).
type policies struct {
	retry      int
	waitBefore bool
	waitAfter  bool
	// joined: the task was triggered by more than one inbound task
	// (runtime_context.triggered_by), i.e. it is a join that waited in
	// WAITING, so its start is TASK_RESUMED, never TASK_LAUNCHED.
	joined bool
	// started is the task's started_at (Unix seconds). Mistral stamps it
	// anew when a task is rerun, so a later started_at on a task that was
	// already finished means it ran again, even if both sightings say ERROR.
	started int64
}

// pathFor returns the transitions an entity of kind k went through from
// state `from` (runtime context p0) to state `to` (runtime context p1),
// including the ones it must have passed through unseen. Only transitions
// Mistral's notifier names an event for produce steps; the rest (DELAYED,
// WAITING, IDLE targets) are walked silently. pending says that the entity
// sits in a wait-after delay whose first completion was never seen; the
// returned pending says the same of the new state.
//
// Unseen steps are marked inferred; the last step, which reaches the
// observed state, is not.
//
// The phases run in the order Mistral goes through them: first sighting,
// rerun, wait-before delay, retry cycles, wait-after delay, then whatever
// state the observation skipped on the way to `to`.
func pathFor(k event.Kind, from string, p0 policies, pending bool, to string, p1 policies) ([]step, bool) {
	w := walker{kind: k, cur: from, occ: p0.retry}
	task := k == event.KindTask
	newBefore := task && p1.waitBefore && !p0.waitBefore
	newAfter := task && p1.waitAfter && !p0.waitAfter

	if w.cur == "" && w.firstSighting(task && p1.joined, to, p1.retry == 0 && !newBefore) {
		return w.out, false
	}
	// A finished task seen again with a later started_at was rerun
	// in between (ERROR→RUNNING is TASK_RERUN).
	if task && event.Completed(w.cur) && p0.started != 0 && p1.started > p0.started {
		w.walk(event.StateRunning, true)
	}
	if newBefore {
		w.waitBefore(to)
	}
	w.retryCycles(p0.retry, p1.retry, to)
	if delayed, stillPending := w.waitAfter(newAfter, task && p1.waitAfter, pending, to); delayed {
		return finish(w.out, to), stillPending
	}
	w.skipped(task, to)
	w.walk(to, false)
	return finish(w.out, to), false
}

// walker is pathFor's cursor: the state reached so far, the occurrence
// the next steps belong to (it grows with each retry cycle) and the steps
// collected.
type walker struct {
	kind event.Kind
	cur  string
	occ  int
	out  []step
}

// walk moves to next, recording a step when Mistral's notifier names an
// event for the transition; staying put records nothing.
func (w *walker) walk(next string, inferred bool) {
	if w.cur == next {
		return
	}
	if t, ok := event.For(w.kind, w.cur, next); ok {
		w.out = append(w.out, step{typ: t, from: w.cur, to: next, inferred: inferred, occurrence: w.occ})
	}
	w.cur = next
}

// again emits the event of reaching `next` once more without moving:
// the first of the two completions around a wait-after delay.
func (w *walker) again(next string) {
	if t, ok := event.For(w.kind, event.StateRunning, next); ok {
		w.out = append(w.out, step{typ: t, from: event.StateRunning, to: next, inferred: true, occurrence: w.occ})
	}
}

// firstSighting starts the walk of an entity never seen before (cur ""),
// and reports whether the path is already complete. joined: a task that
// waited for several inbound tasks; plainLaunch: the observation shows a
// first run with no retry and no new wait-before delay.
func (w *walker) firstSighting(joined bool, to string, plainLaunch bool) (done bool) {
	if joined {
		w.cur = event.StateWaiting // a join waited unseen; no event for that
		return false
	}
	// Mistral's first notification is the launch, unless the entity is
	// still waiting to start (IDLE, WAITING) where it sends none. Anything
	// past RUNNING implies the launch happened unseen.
	switch {
	case to == event.StateIdle || to == event.StateWaiting:
		return true
	case to == event.StateRunning && plainLaunch:
		w.walk(event.StateRunning, false)
		return true
	default:
		w.walk(event.StateRunning, true)
		return false
	}
}

// waitBefore walks a wait-before delay that appeared since the last
// sighting: RUNNING → DELAYED → RUNNING, each RUNNING a TASK_LAUNCHED.
func (w *walker) waitBefore(to string) {
	if w.cur != event.StateRunning && w.cur != event.StateDelayed {
		w.walk(event.StateRunning, true)
	}
	w.walk(event.StateDelayed, true)
	if to != event.StateDelayed {
		w.walk(event.StateRunning, true)
	}
}

// retryCycles walks the retries that happened between the two
// observations (retry_no went from r0 to r1): each one is RUNNING → ERROR
// (TASK_FAILED) → DELAYED → RUNNING (TASK_LAUNCHED again), exactly what
// Mistral's notifier sends for `retry:`.
func (w *walker) retryCycles(r0, r1 int, to string) {
	for i := r0; i < r1; i++ {
		if w.cur == event.StateDelayed || w.cur == event.StateWaiting || w.cur == event.StateIdle {
			w.walk(event.StateRunning, true)
		}
		w.walk(event.StateError, true)
		w.walk(event.StateDelayed, true)
		w.occ = i + 1
		last := i == r1-1
		// Unless the observation caught the last cycle still delayed, it
		// ran again (and may have failed for good: retry_no stays at the
		// count of retries, so a final ERROR comes after a last RUNNING).
		if !last || to != event.StateDelayed {
			w.walk(event.StateRunning, true)
		}
	}
}

// waitAfter walks a task's wait-after delay: the task completes
// (TASK_SUCCEEDED), waits DELAYED, and completes again (a second
// TASK_SUCCEEDED), as Mistral's notifier does. newAfter: the delay
// appeared since the last sighting; hasAfter: the task has one now.
// delayed reports that the observation caught the task inside a new
// delay, which ends the path; stillPending then says its first
// completion was not seen.
func (w *walker) waitAfter(newAfter, hasAfter, pending bool, to string) (delayed, stillPending bool) {
	switch {
	case newAfter && event.Completed(to):
		if w.cur == event.StateDelayed {
			w.walk(event.StateRunning, true)
		}
		w.walk(to, true) // a no-op when the first completion was seen
		w.walk(event.StateDelayed, true)
		w.walk(to, false)
	case newAfter && to == event.StateDelayed:
		// Completed unseen; with what outcome shows when the delay ends.
		stillPending = !event.Completed(w.cur)
		w.walk(event.StateDelayed, false)
		return true, stillPending
	case hasAfter && w.cur == event.StateDelayed && event.Completed(to):
		if pending {
			w.again(to)
		}
		w.walk(to, false)
	}
	return false, false
}

// skipped inserts the RUNNING that an observation skipped on the way to
// `to`, where Mistral's engine must have gone through it.
func (w *walker) skipped(task bool, to string) {
	// A delayed task (wait-before, retry delay) that ends in ERROR ran
	// first: Mistral's map allows DELAYED→ERROR, but the engine only takes
	// that path when the execution is failed from outside, while a run
	// that fails after its delay sends TASK_LAUNCHED before TASK_FAILED.
	if task && w.cur == event.StateDelayed && to == event.StateError {
		w.walk(event.StateRunning, true)
	}
	if w.cur != to && !valid(w.cur, to) && w.cur != "" {
		// The observation skipped a state: go through RUNNING where
		// Mistral's state machine requires it (PAUSED→SUCCESS,
		// DELAYED→SUCCESS, ERROR→SUCCESS after a rerun...).
		if valid(w.cur, event.StateRunning) && valid(event.StateRunning, to) {
			w.walk(event.StateRunning, true)
		}
	}
}

// finish marks the step that reaches the observed state as seen, not
// deduced.
func finish(out []step, to string) []step {
	if n := len(out); n > 0 && out[n-1].to == to {
		out[n-1].inferred = false
	}
	return out
}

// policiesOf reads a task's runtime_context (a JSON-encoded string).
func policiesOf(rc *string) policies {
	if rc == nil || *rc == "" || (*rc)[0] != '{' || (!strings.Contains(*rc, "_policy") && !strings.Contains(*rc, "triggered_by")) {
		return policies{}
	}
	var v struct {
		Retry *struct {
			No int `json:"retry_no"`
		} `json:"retry_task_policy"`
		Before    *struct{}         `json:"wait_before_policy"`
		After     *struct{}         `json:"wait_after_policy"`
		Triggered []json.RawMessage `json:"triggered_by"`
	}
	if json.Unmarshal([]byte(*rc), &v) != nil {
		return policies{}
	}
	var p policies
	if v.Retry != nil && v.Retry.No > 0 {
		p.retry = v.Retry.No
	}
	p.waitBefore = v.Before != nil
	p.waitAfter = v.After != nil
	p.joined = len(v.Triggered) > 1
	return p
}
