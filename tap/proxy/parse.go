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
