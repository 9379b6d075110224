package proxy

import (
	"net/http"
	"strings"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// route is what the tap does with a response, decided from the request's
// method and path alone.
type route struct {
	kind event.Kind // "" when the response is not tapped
	list bool       // body is {"executions"|"tasks": [...], ...}
	// workbooks is set for a change to workbooks or workflows, which
	// changes the workbook membership the matcher relies on.
	workbooks bool
}

// tapped reports whether the response body is parsed for observations.
func (r route) tapped() bool { return r.kind != "" }

// listKey is the member of a list envelope that holds the resources.
func (r route) listKey() string {
	if r.kind == event.KindTask {
		return "tasks"
	}
	return "executions"
}

// normalizePrefix turns a configured path prefix into "" or "/a/b".
func normalizePrefix(p string) string {
	p = strings.Trim(p, "/")
	if p == "" {
		return ""
	}
	return "/" + p
}

// classify maps a client-side request to a route. prefix is the normalized
// path prefix under which the client sees /v2; a path outside it is never
// tapped (it is still forwarded).
func classify(prefix, method, path string) route {
	if prefix != "" {
		rest, ok := strings.CutPrefix(path, prefix)
		if !ok || (rest != "" && rest[0] != '/') {
			return route{}
		}
		path = rest
	}
	if hasDotSegment(path) {
		return route{}
	}
	// Pecan accepts a trailing slash; so do we.
	path = strings.TrimSuffix(path, "/")
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return route{}
	}
	// No strings.Split: this runs for every request, and only the number
	// of segments, the first and the third matter. An empty segment ("//",
	// or a slash left at either end) leaves the path untapped.
	if rest == "" || rest[0] == '/' || rest[len(rest)-1] == '/' || strings.Contains(rest, "//") {
		return route{}
	}
	first, tail, _ := strings.Cut(rest, "/")
	nseg := strings.Count(rest, "/") + 1

	switch first {
	case "workbooks", "workflows":
		switch method {
		case http.MethodPost, http.MethodPut, http.MethodDelete:
			return route{workbooks: true}
		}
		return route{}
	case "executions", "tasks":
	default:
		return route{}
	}

	get := method == http.MethodGet
	write := method == http.MethodPost || method == http.MethodPut
	if !get && !write {
		return route{}
	}
	kind := event.KindExecution
	if first == "tasks" {
		kind = event.KindTask
	}
	switch nseg {
	case 1:
		// GET lists; POST /v2/executions creates one and returns it.
		if get {
			return route{kind: kind, list: true}
		}
		if method == http.MethodPost && kind == event.KindExecution {
			return route{kind: kind}
		}
	case 2:
		return route{kind: kind}
	case 3:
		if kind == event.KindExecution && get {
			_, third, _ := strings.Cut(tail, "/")
			switch third {
			case "tasks":
				return route{kind: event.KindTask, list: true}
			case "executions":
				// Sub-workflow executions of an execution.
				return route{kind: event.KindExecution, list: true}
			}
		}
	}
	return route{}
}
