package track

import (
	"encoding/json"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// tsLayout is Mistral's timestamp format: UTC, whole seconds, a space.
const tsLayout = "2006-01-02 15:04:05"

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

// pathFor returns the transitions an entity of kind k went through from
// state `from` (with retry counter r0) to state `to` (retry counter r1),
// including the ones it must have passed through unseen. Only transitions
// Mistral's notifier names an event for produce steps; the rest (DELAYED,
// WAITING, IDLE targets) are walked silently.
//
// Unseen steps are marked inferred; the last step, which reaches the
// observed state, is not, unless from == "" (first sighting), where only a
// start event the observation itself shows (the entity is RUNNING) is not
// inferred.
func pathFor(k event.Kind, from string, r0 int, to string, r1 int) []step {
	var out []step
	cur := from
	occ := r0
	walk := func(next string, inferred bool) {
		if cur == next {
			return
		}
		if t, ok := event.For(k, cur, next); ok {
			out = append(out, step{typ: t, from: cur, to: next, inferred: inferred, occurrence: occ})
		}
		cur = next
	}

	if cur == "" {
		// First sighting: Mistral's first notification is the launch, unless
		// the entity is still waiting to start (IDLE, WAITING) where it sends
		// none. Anything past RUNNING implies the launch happened unseen.
		switch to {
		case event.StateIdle, event.StateWaiting:
			return nil
		case event.StateRunning:
			if r1 == 0 {
				walk(event.StateRunning, false)
				return out
			}
			walk(event.StateRunning, true)
		default:
			walk(event.StateRunning, true)
		}
	}

	// Retry cycles that happened between the two observations: each one
	// is RUNNING → ERROR (TASK_FAILED) → DELAYED → RUNNING (TASK_LAUNCHED
	// again), exactly what Mistral's notifier sends for `retry:`.
	for i := r0; i < r1; i++ {
		if cur == event.StateDelayed || cur == event.StateWaiting || cur == event.StateIdle {
			walk(event.StateRunning, true)
		}
		walk(event.StateError, true)
		walk(event.StateDelayed, true)
		occ = i + 1
		last := i == r1-1
		// Unless the observation caught the last cycle still delayed, it
		// ran again (and may have failed for good: retry_no stays at the
		// count of retries, so a final ERROR comes after a last RUNNING).
		if !last || to != event.StateDelayed {
			walk(event.StateRunning, true)
		}
	}

	// A delayed task (wait-before, retry delay) that ends in ERROR ran
	// first: Mistral's map allows DELAYED→ERROR, but the engine only takes
	// that path when the execution is failed from outside, while a run
	// that fails after its delay sends TASK_LAUNCHED before TASK_FAILED.
	if k == event.KindTask && cur == event.StateDelayed && to == event.StateError {
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
	// Whatever step reaches the observed state was seen, not deduced.
	if n := len(out); n > 0 && out[n-1].to == to {
		out[n-1].inferred = false
	}
	return out
}

// retryNo extracts runtime_context.retry_task_policy.retry_no, the number
// of retry cycles Mistral has run for a task; 0 when absent.
func retryNo(rc *string) int {
	if rc == nil || *rc == "" || (*rc)[0] != '{' {
		return 0
	}
	var v struct {
		Retry struct {
			No int `json:"retry_no"`
		} `json:"retry_task_policy"`
	}
	if json.Unmarshal([]byte(*rc), &v) != nil || v.Retry.No < 0 {
		return 0
	}
	return v.Retry.No
}
