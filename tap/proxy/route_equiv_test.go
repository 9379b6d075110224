package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// classifySplit is classify as it was written with strings.Split, kept as
// the reference that the allocation-free version must agree with.
func classifySplit(prefix, method, path string) route {
	if prefix != "" {
		rest, ok := strings.CutPrefix(path, prefix)
		if !ok || (rest != "" && rest[0] != '/') {
			return route{}
		}
		path = rest
	}
	path = strings.TrimSuffix(path, "/")
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return route{}
	}
	seg := strings.Split(rest, "/")
	for _, s := range seg {
		if s == "" {
			return route{}
		}
	}
	switch seg[0] {
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
	if seg[0] == "tasks" {
		kind = event.KindTask
	}
	switch len(seg) {
	case 1:
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
			switch seg[2] {
			case "tasks":
				return route{kind: event.KindTask, list: true}
			case "executions":
				return route{kind: event.KindExecution, list: true}
			}
		}
	}
	return route{}
}

// TestClassifyMatchesSplitReference compares classify with the reference
// on every path of up to four segments drawn from a set that includes the
// routed names, ids and empty segments, with and without a trailing slash
// and a prefix.
func TestClassifyMatchesSplitReference(t *testing.T) {
	parts := []string{"", "executions", "tasks", "workbooks", "workflows", "x1", "v2"}
	var paths []string
	var gen func(p string, depth int)
	gen = func(p string, depth int) {
		paths = append(paths, p, p+"/")
		if depth == 4 {
			return
		}
		for _, s := range parts {
			gen(p+"/"+s, depth+1)
		}
	}
	gen("/v2", 0)
	gen("", 1)
	methods := []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodHead}
	n := 0
	for _, prefix := range []string{"", "/workflow"} {
		for _, p := range paths {
			for _, m := range methods {
				path := p
				if prefix != "" {
					path = prefix + p
				}
				got, want := classify(prefix, m, path), classifySplit(prefix, m, path)
				if got != want {
					t.Errorf("classify(%q, %s, %q) = %+v, reference %+v", prefix, m, path, got, want)
				}
				n++
			}
		}
	}
	if n < 10000 {
		t.Fatalf("only %d cases", n)
	}
}
