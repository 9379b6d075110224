package send

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
)

// Redacted replaces secret parts of URLs in errors and logs.
const Redacted = "REDACTED"

// sensitiveKey matches query parameter names that usually carry secrets.
var sensitiveKey = regexp.MustCompile(`(?i)token|key|secret|sig|passw|pwd|auth|credential|session|code|access|jwt|bearer`)

// looksLikeToken reports whether s is a long opaque string (letters and
// digits mixed, 16+ characters), such as the last path segment of a Slack
// incoming-webhook URL.
func looksLikeToken(s string) bool {
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

// RedactURL returns raw without what may be a secret: userinfo is dropped,
// the fragment is dropped, query values whose name looks sensitive (token,
// key, secret, sig, auth, ...) or whose value looks like a token become
// REDACTED, and so do long opaque path segments. Webhook URLs often embed
// credentials, and error messages end up in logs and the dead-letter table.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparseable URL>"
	}
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			u.RawQuery = Redacted
		} else {
			for k, vs := range q {
				for i, v := range vs {
					if sensitiveKey.MatchString(k) || looksLikeToken(v) {
						vs[i] = Redacted
					}
				}
			}
			// Encode escapes the marker's nothing; keep it readable.
			u.RawQuery = q.Encode()
		}
	}
	segs := strings.Split(u.Path, "/")
	changed := false
	for i, s := range segs {
		if looksLikeToken(s) {
			segs[i], changed = Redacted, true
		}
	}
	if changed {
		u.Path, u.RawPath = strings.Join(segs, "/"), ""
	}
	return u.String()
}

// redactErr rewrites the URL inside every *url.Error in err's chain, in
// place (the errors are ours, freshly made by this attempt).
func redactErr(err error) error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if ue, ok := e.(*url.Error); ok {
			ue.URL = RedactURL(ue.URL)
		}
	}
	return err
}
