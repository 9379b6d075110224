package e2e

// mistral-tap's own Keystone tokens in the real world: renewal before
// expiry, Keystone down, a wrong password, a revoked service token. Each
// test puts a ksProxy between mistral-tap and the real Keystone to count
// and steer token requests.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// metric reads one unlabelled counter from mistral-tap's /metrics.
func metric(ctx context.Context, ops, name string) (float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ops+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if n, val, ok := strings.Cut(sc.Text(), " "); ok && n == name {
			return strconv.ParseFloat(val, 64)
		}
	}
	return 0, nil
}

// readyz returns /readyz's status and body.
func readyz(ctx context.Context, ops string) (int, string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ops+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// withOps gives mistral-tap an ops listener and returns its address.
func withOps(t *testing.T) (string, func(*TapConfig)) {
	t.Helper()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ops := fmt.Sprintf("127.0.0.1:%d", port)
	return ops, func(c *TapConfig) { c.Ops = ops }
}

// runToEnd starts wf directly in project p and waits until mistral-tap
// delivered its terminal workflow event.
func (e *env) runToEnd(t *testing.T, p *authProject, wf string) {
	t.Helper()
	pe := e.as(p)
	s := &sc{t: t, e: pe, name: t.Name(), ctx: ctxFor(t, 2*time.Minute)}
	ex := s.start(pe.direct, wf, nil, nil)
	s.wait(ex.ID, Terminal...)
	err := poll(s.ctx, "mistral-tap's terminal event of "+wf, func() (bool, error) {
		for _, b := range decodeHooks(t, e.tapHook.Requests()) {
			if b.ID == ex.ID && isTerminal(b.Event) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, Tail(e.tap.Log, 20))
	}
}

func countLines(path, substr string) int {
	data, _ := os.ReadFile(path)
	return strings.Count(string(data), substr)
}

// TestAuthTokenRenewedBeforeExpiry runs mistral-tap against the Keystone
// twin whose tokens live MISTRAL_E2E_AUTH_SHORT_EXPIRATION seconds: the
// service token is renewed before it expires, and events keep flowing
// across the expiry without a failed poll.
func TestAuthTokenRenewedBeforeExpiry(t *testing.T) {
	w := authFromEnv(t)
	if w.shortKeystone == "" {
		t.Skip("MISTRAL_E2E_AUTH_SHORT_KEYSTONE_URL not set")
	}
	life, err := strconv.Atoi(os.Getenv("MISTRAL_E2E_AUTH_SHORT_EXPIRATION"))
	if err != nil || life <= 0 {
		t.Fatalf("MISTRAL_E2E_AUTH_SHORT_EXPIRATION=%q", os.Getenv("MISTRAL_E2E_AUTH_SHORT_EXPIRATION"))
	}
	ks := newKSProxy(t, w.shortKeystone)
	e := newAuthEnv(t, w, ks.URL(), "", nil)
	demo := w.project("demo")
	if err := e.as(demo).api.DefineWorkflows(ctxFor(t, time.Minute), authDSL("demo")); err != nil {
		t.Fatal(err)
	}
	e.runToEnd(t, demo, "auth_demo_ok")

	// Renewal: a second service token, issued before the first expired.
	ctx := ctxFor(t, time.Duration(3*life)*time.Second)
	if err := poll(ctx, "a renewed service token", func() (bool, error) { return len(ks.issuedAt("service")) >= 2, nil }); err != nil {
		t.Fatal(err)
	}
	at := ks.issuedAt("service")
	if gap := at[1].Sub(at[0]); gap >= time.Duration(life)*time.Second {
		t.Errorf("renewed %s after the first token, which lived %ds", gap, life)
	}
	// Past the first token's expiry, events still flow.
	if err := poll(ctx, "the first token's expiry", func() (bool, error) {
		return time.Since(at[0]) > time.Duration(life+2)*time.Second, nil
	}); err != nil {
		t.Fatal(err)
	}
	e.runToEnd(t, demo, "auth_demo_fail")
	if n := countLines(e.tap.Log, "watcher cannot poll"); n != 0 {
		t.Errorf("%d failed polls across the renewal:\n%s", n, Tail(e.tap.Log, 20))
	}
	report(t, "AUTH renewal: token life %ds, renewed after %s", life, at[1].Sub(at[0]).Round(100*time.Millisecond))
}

// TestAuthKeystoneDown: with Keystone down the watcher backs off and logs
// once, /readyz says why, the proxy keeps serving clients (their own
// tokens are validated by Mistral, not by mistral-tap), and all recovers
// when Keystone is back.
func TestAuthKeystoneDown(t *testing.T) {
	w := authFromEnv(t)
	ks := newKSProxy(t, w.keystone)
	ks.down.Store(true)
	ops, tune := withOps(t)
	e := newAuthEnv(t, w, ks.URL(), "", tune)
	ctx := ctxFor(t, 2*time.Minute)

	var body string
	err := poll(ctx, "/readyz naming Keystone", func() (bool, error) {
		code, b, err := readyz(ctx, ops)
		body = b
		return err == nil && code == http.StatusServiceUnavailable && strings.Contains(b, "keystone"), nil
	})
	if err != nil {
		t.Fatalf("%v; last /readyz: %s", err, body)
	}
	report(t, "AUTH keystone down: /readyz %s", strings.TrimSpace(body))
	// Three failed polls (1 + 2 + 4 s of back-off), one warning.
	if err := poll(ctx, "three failed polls", func() (bool, error) {
		n, err := metric(ctx, ops, "mistral_tap_watch_poll_errors_total")
		return n >= 3, err
	}); err != nil {
		t.Fatal(err)
	}
	if n := countLines(e.tap.Log, "watcher cannot poll"); n != 1 {
		t.Errorf("the failure was logged %d times, want once", n)
	}
	// The proxy is unaffected.
	demo := w.project("demo")
	if _, _, err := e.as(demo).api.Do(ctx, http.MethodGet, "/v2/executions?limit=1", nil, ""); err != nil {
		t.Errorf("the proxy failed while Keystone is down: %v", err)
	}

	ks.down.Store(false)
	if err := poll(ctx, "/readyz ready again", func() (bool, error) {
		code, b, err := readyz(ctx, ops)
		body = b
		return err == nil && code == http.StatusOK, nil
	}); err != nil {
		t.Fatalf("%v; last /readyz: %s", err, body)
	}
	if err := e.as(demo).api.DefineWorkflows(ctx, authDSL("demo")); err != nil {
		t.Fatal(err)
	}
	e.runToEnd(t, demo, "auth_demo_ok")
	if n := countLines(e.tap.Log, "watcher reaches the engine again"); n != 1 {
		t.Errorf("recovery logged %d times, want once", n)
	}
}

// TestAuthWrongPassword: a clear error naming the user and Keystone's
// answer, on /readyz and once in the log, and no tight loop of logins.
func TestAuthWrongPassword(t *testing.T) {
	w := authFromEnv(t)
	ks := newKSProxy(t, w.keystone)
	ops, tune := withOps(t)
	const wrong = "not-the-password-e2e"
	e := newAuthEnv(t, w, ks.URL(), "", func(c *TapConfig) {
		tune(c)
		c.Watch = w.authWatch(ks.URL(), wrong)
	})
	ctx := ctxFor(t, 2*time.Minute)
	var body string
	if err := poll(ctx, "/readyz naming the refusal", func() (bool, error) {
		code, b, err := readyz(ctx, ops)
		body = b
		return err == nil && code == http.StatusServiceUnavailable && strings.Contains(b, "answered 401"), nil
	}); err != nil {
		t.Fatalf("%v; last /readyz: %s", err, body)
	}
	if !strings.Contains(body, `user \"`+w.serviceUser+`\"`) && !strings.Contains(body, `user "`+w.serviceUser+`"`) {
		t.Errorf("/readyz does not name the user: %s", body)
	}
	report(t, "AUTH wrong password: /readyz %s", strings.TrimSpace(body))
	if err := poll(ctx, "three failed polls", func() (bool, error) {
		n, err := metric(ctx, ops, "mistral_tap_watch_poll_errors_total")
		return n >= 3, err
	}); err != nil {
		t.Fatal(err)
	}
	// Keystone remembers a refusal for 10 s: the watcher's three polls and
	// the workbook resolver's refresh cost one login, two at most when
	// the 10 s ran out meanwhile.
	if n := ks.tokenPosts(); n > 2 {
		t.Errorf("%d logins with a wrong password within three polls, want <= 2", n)
	}
	if n := countLines(e.tap.Log, "watcher cannot poll"); n != 1 {
		t.Errorf("the failure was logged %d times, want once", n)
	}
	if strings.Contains(mustRead(t, e.tap.Log), wrong) {
		t.Errorf("the wrong password appears in the log")
	}
}

// TestAuthRevokedServiceTokenReplaced: revoking the service token at
// Keystone (Mistral's token_cache_time is -1 in the test deployment, so the
// revocation bites at once) makes Mistral answer 401; mistral-tap gets a new
// token and events keep flowing.
func TestAuthRevokedServiceTokenReplaced(t *testing.T) {
	w := authFromEnv(t)
	ks := newKSProxy(t, w.keystone)
	e := newAuthEnv(t, w, ks.URL(), "", nil)
	demo, admin := w.project("demo"), w.project("admin")
	ctx := ctxFor(t, 2*time.Minute)
	if err := e.as(demo).api.DefineWorkflows(ctx, authDSL("demo")); err != nil {
		t.Fatal(err)
	}
	e.runToEnd(t, demo, "auth_demo_ok")
	first := ks.tokens("service")
	if len(first) != 1 {
		t.Fatalf("%d service tokens issued, want one (home and per-project Sources share it)", len(first))
	}
	for _, tok := range first {
		req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, w.keystone+"/auth/tokens", nil)
		req.Header.Set("X-Auth-Token", admin.Token)
		req.Header.Set("X-Subject-Token", tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("revoking the service token: status %d", resp.StatusCode)
		}
	}
	e.runToEnd(t, demo, "auth_demo_fail")
	if got := ks.tokens("service"); len(got) <= len(first) {
		t.Errorf("no new service token after the revocation (%d issued)", len(got))
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
