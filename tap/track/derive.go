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
func pathFor(k event.Kind, from string, p0 policies, pending bool, to string, p1 policies) ([]step, bool) {
	var out []step
	cur := from
	occ := p0.retry
	walk := func(next string, inferred bool) {
		if cur == next {
			return
		}
		if t, ok := event.For(k, cur, next); ok {
			out = append(out, step{typ: t, from: cur, to: next, inferred: inferred, occurrence: occ})
		}
		cur = next
	}
	// again emits the event of reaching `to` once more without moving:
	// the first of the two completions around a wait-after delay.
	again := func(next string) {
		if t, ok := event.For(k, event.StateRunning, next); ok {
			out = append(out, step{typ: t, from: event.StateRunning, to: next, inferred: true, occurrence: occ})
		}
	}
	task := k == event.KindTask
	newBefore := task && p1.waitBefore && !p0.waitBefore
	newAfter := task && p1.waitAfter && !p0.waitAfter

	if cur == "" && task && p1.joined {
		cur = event.StateWaiting // a join waited unseen; no event for that
	}
	if cur == "" {
		// First sighting: Mistral's first notification is the launch, unless
		// the entity is still waiting to start (IDLE, WAITING) where it sends
		// none. Anything past RUNNING implies the launch happened unseen.
		switch {
		case to == event.StateIdle || to == event.StateWaiting:
			return nil, false
		case to == event.StateRunning && p1.retry == 0 && !newBefore:
			walk(event.StateRunning, false)
			return out, false
		default:
			walk(event.StateRunning, true)
		}
	}

	// A finished task seen again with a later started_at was rerun
	// in between (ERROR→RUNNING is TASK_RERUN).
	if task && event.Completed(cur) && p0.started != 0 && p1.started > p0.started {
		walk(event.StateRunning, true)
	}

	// wait-before: RUNNING → DELAYED → RUNNING, each RUNNING a TASK_LAUNCHED.
	if newBefore {
		if cur != event.StateRunning && cur != event.StateDelayed {
			walk(event.StateRunning, true)
		}
		walk(event.StateDelayed, true)
		if to != event.StateDelayed {
			walk(event.StateRunning, true)
		}
	}

	// Retry cycles that happened between the two observations: each one
	// is RUNNING → ERROR (TASK_FAILED) → DELAYED → RUNNING (TASK_LAUNCHED
	// again), exactly what Mistral's notifier sends for `retry:`.
	for i := p0.retry; i < p1.retry; i++ {
		if cur == event.StateDelayed || cur == event.StateWaiting || cur == event.StateIdle {
			walk(event.StateRunning, true)
		}
		walk(event.StateError, true)
		walk(event.StateDelayed, true)
		occ = i + 1
		last := i == p1.retry-1
		// Unless the observation caught the last cycle still delayed, it
		// ran again (and may have failed for good: retry_no stays at the
		// count of retries, so a final ERROR comes after a last RUNNING).
		if !last || to != event.StateDelayed {
			walk(event.StateRunning, true)
		}
	}

	// wait-after: the task completes (TASK_SUCCEEDED), waits DELAYED, and
	// completes again (a second TASK_SUCCEEDED), as Mistral's notifier does.
	switch {
	case newAfter && event.Completed(to):
		if cur == event.StateDelayed {
			walk(event.StateRunning, true)
		}
		walk(to, true) // a no-op when the first completion was seen
		walk(event.StateDelayed, true)
		walk(to, false)
	case newAfter && to == event.StateDelayed:
		// Completed unseen; with what outcome shows when the delay ends.
		pending = !event.Completed(cur)
		walk(event.StateDelayed, false)
		return finish(out, to), pending
	case task && p1.waitAfter && cur == event.StateDelayed && event.Completed(to):
		if pending {
			again(to)
		}
		walk(to, false)
	}

	// A delayed task (wait-before, retry delay) that ends in ERROR ran
	// first: Mistral's map allows DELAYED→ERROR, but the engine only takes
	// that path when the execution is failed from outside, while a run
	// that fails after its delay sends TASK_LAUNCHED before TASK_FAILED.
	if task && cur == event.StateDelayed && to == event.StateError {
		walk(event.StateRunning, true)
	}
	if cur != to && !valid(cur, to) && cur != "" {
		// The observation skipped a state: go through RUNNING where
		// Mistral's state machine requires it (PAUSED→SUCCESS,
		// DELAYED→SUCCESS, ERROR→SUCCESS after a rerun...).
		if valid(cur, event.StateRunning) && valid(event.StateRunning, to) {
			walk(event.StateRunning, true)
		}
	}
	walk(to, false)
	return finish(out, to), false
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
