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
	rest, ok := v2Rest(prefix, path)
	if !ok {
		return route{}
	}
	first, tail, _ := strings.Cut(rest, "/")
	switch first {
	case "workbooks", "workflows":
		return definitionRoute(method)
	case "executions", "tasks":
		return entityRoute(first, tail, method, strings.Count(rest, "/")+1)
	}
	return route{}
}

// v2Rest returns what follows /v2/ in a client path under prefix, and
// false for any path that must not be tapped: outside the prefix, with a
// dot segment, or with an empty segment.
func v2Rest(prefix, path string) (string, bool) {
	if prefix != "" {
		rest, ok := strings.CutPrefix(path, prefix)
		if !ok || (rest != "" && rest[0] != '/') {
			return "", false
		}
		path = rest
	}
	if hasDotSegment(path) {
		return "", false
	}
	// Pecan accepts a trailing slash; so do we.
	path = strings.TrimSuffix(path, "/")
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return "", false
	}
	// No strings.Split: this runs for every request, and only the number
	// of segments, the first and the third matter. An empty segment ("//",
	// or a slash left at either end) leaves the path untapped.
	if rest == "" || rest[0] == '/' || rest[len(rest)-1] == '/' || strings.Contains(rest, "//") {
		return "", false
	}
	return rest, true
}

// definitionRoute: only writes to workbooks and workflows matter (they
// change which workflow belongs to which workbook); reads are not tapped.
func definitionRoute(method string) route {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodDelete:
		return route{workbooks: true}
	}
	return route{}
}

// entityRoute routes a request under /v2/executions or /v2/tasks (first),
// whose path after first is tail and which has nseg segments in all. Only
// GET, POST and PUT can carry states worth tapping.
func entityRoute(first, tail, method string, nseg int) route {
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
			return subListRoute(tail)
		}
	}
	return route{}
}

// subListRoute routes GET /v2/executions/<id>/<third> (tail is
// "<id>/<third>"): the lists of an execution's tasks and of its
// sub-workflow executions.
func subListRoute(tail string) route {
	_, third, _ := strings.Cut(tail, "/")
	switch third {
	case "tasks":
		return route{kind: event.KindTask, list: true}
	case "executions":
		// Sub-workflow executions of an execution.
		return route{kind: event.KindExecution, list: true}
	}
	return route{}
}
