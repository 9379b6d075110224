package config

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mistral-tap/mistral-tap/config/redact"
)

func TestSecretValues(t *testing.T) {
	c := Default()
	c.Upstream = "http://mistral:pass@127.0.0.1:8989"
	c.Watch.Headers = map[string]string{"X-Auth-Token": "watch-token"}
	c.Admin.Token = "admin-token"
	c.Callbacks = []Callback{{
		Name: "a", URL: "https://hook:hookpw@example.com/x?key=query-secret&format=json",
		Headers: map[string]string{"Authorization": "Bearer bearer-token"},
		Secret:  "sign-secret", Secrets: []string{"old-secret"},
	}}
	got := c.SecretValues()
	for _, want := range []string{"pass", "watch-token", "admin-token", "hookpw", "query-secret",
		"Bearer bearer-token", "bearer-token", "sign-secret", "old-secret"} {
		if !slices.Contains(got, want) {
			t.Errorf("SecretValues lacks %q: %q", want, got)
		}
	}
	// Plain words of a URL are not secrets (issue 11 #5).
	for _, not := range []string{"mistral", "hook", "json", "format", "example.com"} {
		if slices.Contains(got, not) {
			t.Errorf("SecretValues has the plain word %q: %q", not, got)
		}
	}
}

// TestURLSecretsFromEnv: only what came from ${NAME} (or is a credential
// by convention) is hidden; the user name next to ${PASS} and common
// words stay readable, in logs and in RedactedURL.
func TestURLSecretsFromEnv(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	const cfg = `
callbacks:
  - name: userinfo
    events: ["*"]
    url: http://user:${PASS}@hooks.example.com/p/${PATHSECRET}?q=${PLAINQ}&team=ops
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(Source{Path: path, Environ: environ("PASS=pa55word", "PATHSECRET=pathsecretvalue", "PLAINQ=plainqvalue")})
	if err != nil {
		t.Fatal(err)
	}
	cb := &c.Callbacks[0]
	if got, want := cb.RedactedURL(), "http://user:REDACTED@hooks.example.com/p/REDACTED?q=REDACTED&team=ops"; got != want {
		t.Errorf("RedactedURL = %q, want %q", got, want)
	}
	var buf bytes.Buffer
	log := slog.New(redact.Handler(slog.NewTextHandler(&buf, nil), c.SecretValues))
	log.Info("delivering", "callback", cb.Name, "url", cb.URL, "note", "user data for the team")
	out := buf.String()
	for _, s := range []string{"pa55word", "pathsecretvalue", "plainqvalue"} {
		if strings.Contains(out, s) {
			t.Errorf("log leaks %q: %s", s, out)
		}
	}
	for _, s := range []string{"callback=userinfo", "user data for the team", "http://user:REDACTED@", "team=ops"} {
		if !strings.Contains(out, s) {
			t.Errorf("log lacks %q (over-redaction): %s", s, out)
		}
	}
}
