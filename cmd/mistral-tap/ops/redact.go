package ops

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/mistral-tap/mistral-tap/config"
)

// Redacted replaces a secret in log output.
const Redacted = "REDACTED"

// MinSecretLen is the shortest configured value RedactingHandler looks for
// inside other text: shorter values ("1", "ab") would mangle ordinary log
// lines. Attributes whose key names a credential are masked whatever their
// length.
const MinSecretLen = 4

// sensitiveKeys are attribute keys (and header names inside logged header
// maps) whose value is always masked, compared case-insensitively.
var sensitiveKeys = map[string]bool{
	"authorization": true, "proxy-authorization": true, "x-auth-token": true,
	"x-subject-token": true, "x-api-key": true, "api-key": true, "api_key": true,
	"apikey": true, "cookie": true, "set-cookie": true, "token": true,
	"password": true, "secret": true, "secrets": true, "webhook-signature": true,
}

// RedactingHandler wraps h so that every record's message and attribute
// values (strings, errors, Stringers, groups, and anything else as
// formatted) have each value returned by secrets replaced by "REDACTED",
// and attributes keyed like a credential (Authorization, X-Auth-Token,
// token, secret, ...) masked whole. secrets is called for each record, so
// it may change (reload); it should be cheap, e.g. an atomic load. Values
// shorter than MinSecretLen are not searched for.
func RedactingHandler(h slog.Handler, secrets func() []string) slog.Handler {
	if secrets == nil {
		secrets = func() []string { return nil }
	}
	return &redactor{h: h, r: &replacerCache{secrets: secrets}}
}

type redactor struct {
	h slog.Handler
	r *replacerCache
}

// replacerCache rebuilds the strings.Replacer only when the secret list
// changes.
type replacerCache struct {
	secrets func() []string
	mu      sync.Mutex
	last    []string
	rep     *strings.Replacer
}

func (c *replacerCache) get() *strings.Replacer {
	s := c.secrets()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rep != nil && slices.Equal(s, c.last) {
		return c.rep
	}
	c.last = slices.Clone(s)
	// Longest first: a secret that contains another is replaced whole.
	vals := make([]string, 0, len(s))
	for _, v := range s {
		if len(v) >= MinSecretLen {
			vals = append(vals, v)
		}
	}
	slices.SortFunc(vals, func(a, b string) int { return len(b) - len(a) })
	vals = slices.Compact(vals)
	args := make([]string, 0, 2*len(vals))
	for _, v := range vals {
		args = append(args, v, Redacted)
	}
	c.rep = strings.NewReplacer(args...)
	return c.rep
}

func (r *redactor) Enabled(ctx context.Context, l slog.Level) bool { return r.h.Enabled(ctx, l) }

func (r *redactor) Handle(ctx context.Context, rec slog.Record) error {
	rep := r.r.get()
	out := slog.NewRecord(rec.Time, rec.Level, rep.Replace(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(rep, a))
		return true
	})
	return r.h.Handle(ctx, out)
}

func (r *redactor) WithAttrs(as []slog.Attr) slog.Handler {
	rep := r.r.get()
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = redactAttr(rep, a)
	}
	return &redactor{h: r.h.WithAttrs(red), r: r.r}
}

func (r *redactor) WithGroup(name string) slog.Handler {
	return &redactor{h: r.h.WithGroup(name), r: r.r}
}

func redactAttr(rep *strings.Replacer, a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if sensitiveKeys[strings.ToLower(a.Key)] && !isEmpty(v) {
		return slog.String(a.Key, Redacted)
	}
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, rep.Replace(v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, x := range g {
			out[i] = redactAttr(rep, x)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindAny:
		return slog.Attr{Key: a.Key, Value: redactAny(rep, v.Any())}
	}
	return slog.Attr{Key: a.Key, Value: v} // numbers, bools, times, durations
}

func isEmpty(v slog.Value) bool {
	return v.Kind() == slog.KindString && v.String() == ""
}

// redactAny handles the values code actually logs: errors (their text may
// quote a URL or header), Stringers, header maps, URLs; anything else is
// kept as is unless its formatted text contains a secret, in which case
// the redacted text replaces it.
func redactAny(rep *strings.Replacer, x any) slog.Value {
	switch t := x.(type) {
	case nil:
		return slog.AnyValue(nil)
	case error:
		return slog.StringValue(rep.Replace(t.Error()))
	case http.Header:
		return slog.AnyValue(maskHeader(rep, t))
	case map[string]string:
		out := make(map[string]string, len(t))
		for k, v := range t {
			if sensitiveKeys[strings.ToLower(k)] && v != "" {
				v = Redacted
			}
			out[k] = rep.Replace(v)
		}
		return slog.AnyValue(out)
	case *url.URL:
		if t == nil {
			return slog.AnyValue(nil)
		}
		return slog.StringValue(rep.Replace(config.RedactURL(t.String())))
	case fmt.Stringer:
		return slog.StringValue(rep.Replace(t.String()))
	}
	s := fmt.Sprint(x)
	if r := rep.Replace(s); r != s {
		return slog.StringValue(r)
	}
	return slog.AnyValue(x)
}

func maskHeader(rep *strings.Replacer, h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, vs := range h {
		nv := make([]string, len(vs))
		for i, v := range vs {
			if sensitiveKeys[strings.ToLower(k)] && v != "" {
				nv[i] = Redacted
				continue
			}
			nv[i] = rep.Replace(v)
		}
		out[k] = nv
	}
	return out
}

// ConfigSecrets lists every secret value in c, for RedactingHandler: the
// callbacks' header values, secrets and URL credentials (userinfo and
// query values), the watcher's header values, the admin token and the
// upstream's credentials, the store DSN's password. Empty values are left out.
func ConfigSecrets(c *config.Config) []string {
	if c == nil {
		return nil
	}
	var out []string
	add := func(vs ...string) {
		for _, v := range vs {
			if v != "" {
				out = append(out, v)
			}
		}
	}
	addURL := func(raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		if u.User != nil {
			add(u.User.Username())
			p, _ := u.User.Password()
			add(p, u.User.String())
		}
		for _, vs := range u.Query() {
			add(vs...)
		}
	}
	for _, v := range c.Watch.Headers {
		add(v)
		add(bearerToken(v))
	}
	add(c.Admin.Token)
	add(c.Watch.Keystone.Password)
	add(config.DSNPassword(c.Store.DSN))
	addURL(c.Upstream)
	for _, cb := range c.Callbacks {
		for _, v := range cb.Headers {
			add(v)
			add(bearerToken(v))
		}
		add(cb.Secret)
		add(cb.Secrets...)
		addURL(cb.URL)
		addURL(cb.AMQP.URL)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// bearerToken returns the credential of "Bearer X"/"Basic X" header values,
// so that a log line quoting the token alone is redacted too.
func bearerToken(v string) string {
	if _, tok, ok := strings.Cut(v, " "); ok {
		return strings.TrimSpace(tok)
	}
	return ""
}
