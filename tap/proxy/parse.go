package proxy

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// parsed is what one tapped body yielded.
type parsed struct {
	obs []event.Observation
	// skipped counts resources that could not be used: lacking id or
	// state (e.g. a fields= trimmed list) or of the wrong JSON shape.
	skipped int
}

// parseBody extracts the executions or tasks of a tapped body. Unknown
// fields are ignored; a malformed body is an error, a malformed element of a
// list only skips that element.
func parseBody(rt route, body []byte, at time.Time) (parsed, error) {
	if !rt.list {
		o, ok, err := parseOne(rt.kind, body, at)
		if err != nil {
			return parsed{}, err
		}
		if !ok {
			return parsed{skipped: 1}, nil
		}
		return parsed{obs: []event.Observation{o}}, nil
	}

	if p, ok := parseListFast(rt, body, at); ok {
		return p, nil
	}
	// Slow path: some element is not an object of the expected shape (or
	// the body is malformed). Decode element by element so that one bad
	// element only skips itself.
	var env map[string]json.RawMessage
	if err := json.Unmarshal(body, &env); err != nil {
		return parsed{}, fmt.Errorf("decoding %s list envelope: %w", rt.listKey(), err)
	}
	raw, ok := env[rt.listKey()]
	if !ok {
		return parsed{}, fmt.Errorf("list envelope has no %q member", rt.listKey())
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return parsed{}, fmt.Errorf("decoding %q member: %w", rt.listKey(), err)
	}
	var p parsed
	p.obs = make([]event.Observation, 0, len(items))
	for _, it := range items {
		o, ok, err := parseOne(rt.kind, it, at)
		if err != nil || !ok {
			p.skipped++
			continue
		}
		p.obs = append(p.obs, o)
	}
	return p, nil
}

// parseListFast decodes a well-formed list in one pass, straight into the
// event types (Mistral's lists are always well-formed; the element-wise
// path costs about twice as much). ok is false when the body needs the slow
// path to find out what is wrong.
func parseListFast(rt route, body []byte, at time.Time) (parsed, bool) {
	var p parsed
	if rt.kind == event.KindTask {
		var env struct {
			Tasks *[]*event.Task `json:"tasks"`
		}
		if json.Unmarshal(body, &env) != nil || env.Tasks == nil {
			return p, false
		}
		p.obs = make([]event.Observation, 0, len(*env.Tasks))
		for _, t := range *env.Tasks {
			if t == nil || t.ID == "" || t.State == "" {
				p.skipped++
				continue
			}
			p.obs = append(p.obs, event.Observation{Source: event.SourceTap, RequestedAt: at, Task: t})
		}
		return p, true
	}
	var env struct {
		Executions *[]*event.Execution `json:"executions"`
	}
	if json.Unmarshal(body, &env) != nil || env.Executions == nil {
		return p, false
	}
	p.obs = make([]event.Observation, 0, len(*env.Executions))
	for _, e := range *env.Executions {
		if e == nil || e.ID == "" || e.State == "" {
			p.skipped++
			continue
		}
		p.obs = append(p.obs, event.Observation{Source: event.SourceTap, RequestedAt: at, Execution: e})
	}
	return p, true
}

// parseOne decodes a single resource; ok is false when it lacks id or state.
func parseOne(k event.Kind, b []byte, at time.Time) (o event.Observation, ok bool, err error) {
	o = event.Observation{Source: event.SourceTap, RequestedAt: at}
	if k == event.KindTask {
		var t event.Task
		if err := json.Unmarshal(b, &t); err != nil {
			return o, false, fmt.Errorf("decoding task: %w", err)
		}
		if t.ID == "" || t.State == "" {
			return o, false, nil
		}
		o.Task = &t
		return o, true, nil
	}
	var e event.Execution
	if err := json.Unmarshal(b, &e); err != nil {
		return o, false, fmt.Errorf("decoding execution: %w", err)
	}
	if e.ID == "" || e.State == "" {
		return o, false, nil
	}
	o.Execution = &e
	return o, true, nil
}
