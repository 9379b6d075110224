// Package redact is the one place that decides how secrets are hidden in
// what mistral-tap writes: logs, error texts, the outbox's last_error, the
// disabled_callbacks table and admin output. Its contract:
//
//   - Marker ("REDACTED") replaces every hidden value.
//   - URL hides the parts of a URL that carry credentials by convention
//     (userinfo password, a lone user name, sensitive or token-like query
//     values, token-like path segments, the fragment) plus every value the
//     caller knows to be secret (what came from ${NAME} or secret_file),
//     wherever it appears in the URL.
//   - URLSecrets lists the values URL hides by convention, so that the
//     same values are hidden in free text (NewReplacer).
//   - A plain word of a URL that is not a credential (the user name next
//     to a password, "format=json") is not a secret: hiding it everywhere
//     would mangle every log line that contains the word.
package redact

import (
	"cmp"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Marker replaces a secret.
const Marker = "REDACTED"

// MinLen is the shortest value NewReplacer hides inside other text:
// shorter values ("1", "ab") would mangle ordinary text.
const MinLen = 4

// sensitiveKey matches query parameter names that usually carry secrets.
var sensitiveKey = regexp.MustCompile(`(?i)token|key|secret|sig|passw|pwd|auth|credential|session|code|access|jwt|bearer`)

// LooksLikeToken reports whether s is a long opaque string (letters and
// digits mixed, 16+ characters), such as the last path segment of a Slack
// incoming-webhook URL.
func LooksLikeToken(s string) bool {
	if len(s) < 16 {
		return false
	}
	var letter, digit bool
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			letter = true
		case c >= '0' && c <= '9':
			digit = true
		case strings.ContainsRune("-_.~+/=", c):
		default:
			return false
		}
	}
	return letter && digit
}

// URL returns raw with its conventional credentials and every one of
// secrets replaced by Marker (see the package doc). A URL that does not
// parse becomes Marker alone: nobody knows where its secret is.
func URL(raw string, secrets ...string) string {
	if raw == "" {
		return ""
	}
	raw = NewReplacer(secrets, 1).Replace(raw)
	u, err := url.Parse(raw)
	if err != nil {
		return Marker
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Marker)
		} else {
			// A lone user name is often the token itself (https://TOKEN@host).
			u.User = url.User(Marker)
		}
	}
	u.Fragment, u.RawFragment = "", ""
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			u.RawQuery = Marker
		} else {
			for k, vs := range q {
				for i, v := range vs {
					if sensitiveQuery(k, v) {
						vs[i] = Marker
					}
				}
			}
			u.RawQuery = q.Encode()
		}
	}
	segs := strings.Split(u.Path, "/")
	changed := false
	for i, s := range segs {
		if LooksLikeToken(s) {
			segs[i], changed = Marker, true
		}
	}
	if changed {
		u.Path, u.RawPath = strings.Join(segs, "/"), ""
	}
	return u.String()
}

func sensitiveQuery(k, v string) bool {
	return v != "" && v != Marker && (sensitiveKey.MatchString(k) || LooksLikeToken(v))
}

// URLSecrets lists the values URL hides by convention in raw: the
// userinfo password (or a lone user name), sensitive query values and
// token-like path segments.
func URLSecrets(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil {
		return nil
	}
	var out []string
	if u.User != nil {
		if p, has := u.User.Password(); has {
			out = append(out, p)
		} else {
			out = append(out, u.User.Username())
		}
	}
	if q, err := url.ParseQuery(u.RawQuery); err == nil {
		for k, vs := range q {
			for _, v := range vs {
				if sensitiveQuery(k, v) {
					out = append(out, v)
				}
			}
		}
	}
	for _, s := range strings.Split(u.Path, "/") {
		if LooksLikeToken(s) {
			out = append(out, s)
		}
	}
	return out
}

// NewReplacer returns a replacer of every value of secrets at least
// minLen bytes long by Marker, the longest first so that a secret that
// contains another is replaced whole. minLen below 1 is 1.
func NewReplacer(secrets []string, minLen int) *strings.Replacer {
	minLen = max(minLen, 1)
	vals := make([]string, 0, len(secrets))
	for _, v := range secrets {
		if len(v) >= minLen {
			vals = append(vals, v)
		}
	}
	slices.SortFunc(vals, func(a, b string) int { return cmp.Or(len(b)-len(a), strings.Compare(a, b)) })
	vals = slices.Compact(vals)
	args := make([]string, 0, 2*len(vals))
	for _, v := range vals {
		args = append(args, v, Marker)
	}
	return strings.NewReplacer(args...)
}
