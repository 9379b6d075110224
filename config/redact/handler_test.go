package redact

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

type stringer string

func (s stringer) String() string { return string(s) }

func TestHandler(t *testing.T) {
	const tok = "s3cr3t-token-value"
	secrets := func() []string { return []string{tok, "ab"} }
	tests := []struct {
		name string
		log  func(l *slog.Logger)
		keep string // must still appear
	}{
		{"message", func(l *slog.Logger) { l.Info("token is " + tok) }, "token is REDACTED"},
		{"string attr", func(l *slog.Logger) { l.Info("x", "url", "https://h/?t="+tok) }, "t=REDACTED"},
		{"error attr", func(l *slog.Logger) {
			l.Error("send failed", "err", fmt.Errorf("post: %w", errors.New("bad header "+tok)))
		}, "bad header REDACTED"},
		{"stringer", func(l *slog.Logger) { l.Info("x", "v", stringer("a"+tok)) }, "aREDACTED"},
		{"group", func(l *slog.Logger) { l.Info("x", slog.Group("g", "inner", tok)) }, "g.inner=REDACTED"},
		{"with attrs", func(l *slog.Logger) { l.With("k", tok).Info("x") }, "k=REDACTED"},
		{"with group", func(l *slog.Logger) { l.WithGroup("grp").Info("x", "k", tok) }, "grp.k=REDACTED"},
		{"sensitive key", func(l *slog.Logger) { l.Info("x", "Authorization", "Bearer unknown-to-config") }, "Authorization=REDACTED"},
		{"x-auth-token key", func(l *slog.Logger) { l.Info("x", "X-Auth-Token", "zz") }, "X-Auth-Token=REDACTED"},
		{"header map", func(l *slog.Logger) {
			l.Info("x", "headers", http.Header{"X-Auth-Token": {"other"}, "Accept": {"json"}})
		}, "json"},
		{"string map", func(l *slog.Logger) { l.Info("x", "h", map[string]string{"X": tok}) }, "REDACTED"},
		{"url", func(l *slog.Logger) {
			u, _ := url.Parse("https://user:pw@h/p?q=1")
			l.Info("x", "u", u)
		}, "REDACTED"},
		{"slice", func(l *slog.Logger) { l.Info("x", "list", []string{"a", tok}) }, "REDACTED"},
		{"short value untouched", func(l *slog.Logger) { l.Info("x", "v", "abc ab") }, "v=\"abc ab\""},
		{"numbers untouched", func(l *slog.Logger) { l.Info("x", "n", 42) }, "n=42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := slog.New(Handler(slog.NewTextHandler(&buf, nil), secrets))
			tt.log(l)
			out := buf.String()
			for _, s := range []string{tok, "unknown-to-config", "other", "pw@"} {
				if strings.Contains(out, s) {
					t.Errorf("output leaks %q: %s", s, out)
				}
			}
			if !strings.Contains(out, tt.keep) {
				t.Errorf("output lacks %q: %s", tt.keep, out)
			}
		})
	}
}

func TestHandlerFollowsSecretChanges(t *testing.T) {
	var cur atomic.Pointer[[]string]
	first := []string{"first-secret"}
	cur.Store(&first)
	var buf bytes.Buffer
	l := slog.New(Handler(slog.NewJSONHandler(&buf, nil), func() []string { return *cur.Load() }))
	l.Info("a first-secret")
	second := []string{"first-secret", "second-secret"}
	cur.Store(&second)
	l.Info("b second-secret first-secret")
	if out := buf.String(); strings.Contains(out, "-secret") {
		t.Errorf("leak after update: %s", out)
	}
}
