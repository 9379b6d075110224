package matcher

import (
	"fmt"
	"strings"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// Event selector names a callback's `events:` list accepts besides the
// fifteen event.Types.
const (
	SelectAll                 = "*"
	SelectOnExecutionStart    = "on-execution-start"
	SelectOnExecutionComplete = "on-execution-complete"
	SelectOnTaskStart         = "on-task-start"
	SelectOnTaskComplete      = "on-task-complete"
)

// EventNames is the canonical list of accepted `events:` entries, in the
// order error messages show them.
func EventNames() []string {
	out := make([]string, 0, len(event.Types)+7)
	for _, t := range event.Types {
		out = append(out, string(t))
	}
	return append(out, string(event.KindExecution), string(event.KindTask),
		SelectOnExecutionStart, SelectOnExecutionComplete,
		SelectOnTaskStart, SelectOnTaskComplete, SelectAll)
}

// ExpandEvent returns the event types one `events:` entry selects.
// Matching is case-insensitive ("task_failed" and "On-Task-Start" are
// accepted) because the names are unambiguous in any case and a case typo
// is not worth a failed start; error messages show the canonical spelling.
func ExpandEvent(name string) ([]event.Type, error) {
	var pick func(event.Type) bool
	switch n := strings.TrimSpace(name); {
	case n == SelectAll:
		pick = func(event.Type) bool { return true }
	case strings.EqualFold(n, string(event.KindExecution)):
		pick = func(t event.Type) bool { return t.Kind() == event.KindExecution }
	case strings.EqualFold(n, string(event.KindTask)):
		pick = func(t event.Type) bool { return t.Kind() == event.KindTask }
	case strings.EqualFold(n, SelectOnExecutionStart):
		pick = func(t event.Type) bool { return t.Kind() == event.KindExecution && t.Start() }
	case strings.EqualFold(n, SelectOnExecutionComplete):
		pick = func(t event.Type) bool { return t.Kind() == event.KindExecution && t.Terminal() }
	case strings.EqualFold(n, SelectOnTaskStart):
		pick = func(t event.Type) bool { return t.Kind() == event.KindTask && t.Start() }
	case strings.EqualFold(n, SelectOnTaskComplete):
		pick = func(t event.Type) bool { return t.Kind() == event.KindTask && t.Terminal() }
	default:
		for _, t := range event.Types {
			if strings.EqualFold(n, string(t)) {
				return []event.Type{t}, nil
			}
		}
		return nil, fmt.Errorf("unknown event %q (want one of %s)", name, strings.Join(EventNames(), ", "))
	}
	var out []event.Type
	for _, t := range event.Types {
		if pick(t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// EventSet expands a whole `events:` list into the set of selected types.
// It returns the first unknown name's error; Compile reports all of them.
func EventSet(names []string) (map[event.Type]bool, error) {
	set := make(map[event.Type]bool)
	for _, n := range names {
		ts, err := ExpandEvent(n)
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			set[t] = true
		}
	}
	return set, nil
}

// typeSet is a set of event.Types, one bit per entry of event.Types: a
// callback's selection costs one word, not a map, however many callbacks
// there are.
type typeSet uint64

// typeBit maps each event.Type to its bit.
var typeBit = func() map[event.Type]typeSet {
	m := make(map[event.Type]typeSet, len(event.Types))
	for i, t := range event.Types {
		m[t] = 1 << i
	}
	return m
}()

func (s typeSet) with(t event.Type) typeSet { return s | typeBit[t] }
func (s typeSet) has(t event.Type) bool     { return s&typeBit[t] != 0 }
