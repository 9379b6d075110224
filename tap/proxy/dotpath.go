package proxy

import (
	"net/url"
	"strings"
)

// maxDecodes is how many rounds of percent-decoding a segment or path is
// read through: one by Mistral's WSGI server, more by a sloppy component
// on the way (an ingress that decodes before forwarding, say).
const maxDecodes = 3

// climbsAboveRoot reports whether some server on the way to Mistral could
// resolve the dot segments of the request path to a place above its root,
// that is outside the upstream's base path once the path is joined to it
// (upstream http://engine/workflow and /../other-app/secret). The proxy
// forwards paths without resolving them, so it checks every reading a
// server may apply:
//
//   - the path decoded once, %2F turned into a separator (Go, WSGI);
//   - the path as sent, split at literal slashes and each segment decoded
//     (a server that keeps %2F inside a segment);
//   - the path decoded again and again (double decoding).
//
// In each, a segment that decodes to ".." climbs a level, and empty
// segments add none (a server that merges slashes: the reading in which
// ".." climbs furthest).
func climbsAboveRoot(u *url.URL) bool {
	p := u.Path
	if !strings.ContainsAny(p, ".%") {
		// No dot, decoded or not, and nothing left to decode.
		return false
	}
	if climbs(p) {
		return true
	}
	if raw := u.EscapedPath(); raw != p && climbs(raw) {
		return true
	}
	for range maxDecodes {
		if !strings.Contains(p, "%") {
			return false
		}
		d, err := url.PathUnescape(p)
		if err != nil || d == p {
			return false
		}
		if p = d; climbs(p) {
			return true
		}
	}
	return false
}

// climbs walks the segments of path and reports whether ".." segments
// ever outnumber the segments they go back over.
func climbs(path string) bool {
	depth := 0
	for rest := path; rest != ""; {
		var seg string
		seg, rest, _ = strings.Cut(rest, "/")
		switch {
		case seg == "":
		case dotSegment(seg) == "..":
			if depth--; depth < 0 {
				return true
			}
		case dotSegment(seg) == ".":
		default:
			depth++
		}
	}
	return false
}

// dotSegment returns "." or ".." if seg is, or decodes to, one of them
// within maxDecodes rounds, and "" otherwise.
func dotSegment(seg string) string {
	for range maxDecodes + 1 {
		switch seg {
		case ".", "..":
			return seg
		}
		// A round of decoding leaves at least a third of the bytes, so
		// only 2·3^maxDecodes bytes or fewer can end as "..".
		if len(seg) > 54 || !strings.Contains(seg, "%") {
			return ""
		}
		d, err := url.PathUnescape(seg)
		if err != nil {
			return ""
		}
		seg = d
	}
	return ""
}

// hasDotSegment reports whether the (decoded) path has a "." or ".."
// segment. Such a path is forwarded as it is when it stays under the root,
// but not tapped: which resource it names depends on how the upstream
// resolves it.
func hasDotSegment(path string) bool {
	if !strings.Contains(path, "/.") {
		return false
	}
	for rest := path; rest != ""; {
		var seg string
		seg, rest, _ = strings.Cut(rest, "/")
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}
