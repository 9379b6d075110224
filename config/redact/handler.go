package redact

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// sensitiveKeys are attribute keys (and header names inside logged header
// maps) whose value is always masked, compared case-insensitively.
var sensitiveKeys = map[string]bool{
	"authorization": true, "proxy-authorization": true, "x-auth-token": true,
	"x-subject-token": true, "x-api-key": true, "api-key": true, "api_key": true,
	"apikey": true, "cookie": true, "set-cookie": true, "token": true,
	"password": true, "secret": true, "secrets": true, "webhook-signature": true,
}

// Handler wraps h so that every record's message and attribute
// values (strings, errors, Stringers, groups, and anything else as
// formatted) have each value returned by secrets replaced by Marker,
// and attributes keyed like a credential (Authorization, X-Auth-Token,
// token, secret, ...) masked whole. secrets is called for each record, so
// it may change (reload); it should be cheap, e.g. an atomic load. Values
// shorter than MinLen are not searched for.
func Handler(h slog.Handler, secrets func() []string) slog.Handler {
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
	c.rep = NewReplacer(s, MinLen)
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
		return slog.String(a.Key, Marker)
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
				v = Marker
			}
			out[k] = rep.Replace(v)
		}
		return slog.AnyValue(out)
	case *url.URL:
		if t == nil {
			return slog.AnyValue(nil)
		}
		return slog.StringValue(rep.Replace(URL(t.String())))
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
				nv[i] = Marker
				continue
			}
			nv[i] = rep.Replace(v)
		}
		out[k] = nv
	}
	return out
}
