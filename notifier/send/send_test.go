package send

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/sign"
	"github.com/mistral-tap/mistral-tap/notifier/ssrf"
)

var loopback = []string{"127.0.0.0/8", "::1"}

// fakeClock advances one second per reading, so consecutive attempts get
// distinct webhook-timestamps without sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(time.Second)
	return f.t
}

func newClient(t testing.TB, allow []string, now func() time.Time) *Client {
	t.Helper()
	c, err := New(Options{AllowNetworks: allow, Now: now, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func baseRequest(url string) Request {
	return Request{
		Callback:     "cb",
		Method:       http.MethodPost,
		URL:          url,
		Header:       http.Header{"Content-Type": {"application/json"}},
		Body:         []byte(`{"id": "x"}`),
		EventID:      "evt_1",
		Timeout:      5 * time.Second,
		Retries:      2,
		RetryWaitMin: time.Millisecond,
		RetryWaitMax: 5 * time.Millisecond,
	}
}

func TestStatusClasses(t *testing.T) {
	for _, tt := range []struct {
		status   int
		outcome  Outcome
		attempts int // with Retries: 2
	}{
		{200, Delivered, 1},
		{201, Delivered, 1},
		{204, Delivered, 1},
		{410, Gone, 1},
		{400, Permanent, 1},
		{401, Permanent, 1},
		{404, Permanent, 1},
		{422, Permanent, 1},
		{302, Permanent, 1},
		{408, Retryable, 3},
		{425, Retryable, 3},
		{429, Retryable, 3},
		{500, Retryable, 3},
		{501, Retryable, 3},
		{502, Retryable, 3},
		{503, Retryable, 3},
	} {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				if tt.status == 302 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tt.status)
				fmt.Fprint(w, "receiver says\nno")
			}))
			defer srv.Close()
			res := newClient(t, loopback, nil).Send(context.Background(), baseRequest(srv.URL+"/hook"))
			if res.Outcome != tt.outcome || res.Status != tt.status || res.Attempts != tt.attempts || int(hits.Load()) != tt.attempts {
				t.Errorf("got %v status %d attempts %d (server saw %d), want %v %d %d", res.Outcome, res.Status, res.Attempts, hits.Load(), tt.outcome, tt.status, tt.attempts)
			}
			if tt.outcome == Delivered {
				if res.Err != nil {
					t.Errorf("Err = %v on success", res.Err)
				}
				return
			}
			var se *StatusError
			if !errors.As(res.Err, &se) || se.Status != tt.status || se.Excerpt != "receiver says no" {
				t.Errorf("Err = %#v, want a StatusError with the body excerpt", res.Err)
			}
		})
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	var target atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/target", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/target", func(w http.ResponseWriter, r *http.Request) { target.Add(1) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	res := newClient(t, loopback, nil).Send(context.Background(), baseRequest(srv.URL+"/hook"))
	if res.Outcome != Permanent || res.Status != 307 || target.Load() != 0 {
		t.Errorf("got %v %d, target hit %d times; want permanent 307, target never hit", res.Outcome, res.Status, target.Load())
	}
}

// TestRetryAfterCapped: a 503 asking for an hour must not stall the
// delivery; the uncapped value is still reported for the outbox.
func TestRetryAfterCapped(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	r := baseRequest(srv.URL)
	r.Retries = 3
	r.RetryWaitMax = 20 * time.Millisecond
	// The deadline turns an uncapped wait into a clear failure (fewer
	// attempts) instead of a hung test.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := newClient(t, loopback, nil).Send(ctx, r)
	if res.Outcome != Retryable || res.Attempts != 4 {
		t.Fatalf("got %v after %d attempts, want retryable after 4", res.Outcome, res.Attempts)
	}
	if res.RetryAfter != time.Hour {
		t.Errorf("RetryAfter = %v, want 1h", res.RetryAfter)
	}
}

func TestBackoff(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newClient(t, nil, func() time.Time { return now })
	resp := func(status int, ra string) *http.Response {
		h := http.Header{}
		if ra != "" {
			h.Set("Retry-After", ra)
		}
		return &http.Response{StatusCode: status, Header: h}
	}
	minW, maxW := 100*time.Millisecond, 2*time.Second
	for _, tt := range []struct {
		name   string
		n      int
		resp   *http.Response
		lo, hi time.Duration
	}{
		{"first", 0, nil, minW, minW},
		{"second", 1, resp(500, ""), minW, 200 * time.Millisecond},
		{"third", 2, resp(500, ""), 200 * time.Millisecond, 400 * time.Millisecond},
		{"capped", 10, resp(500, ""), time.Second, maxW},
		{"huge n", 200, nil, time.Second, maxW},
		{"retry-after seconds", 0, resp(429, "1"), time.Second, time.Second},
		{"retry-after capped", 0, resp(503, "3600"), maxW, maxW},
		{"retry-after date", 0, resp(503, now.Add(1500*time.Millisecond).Format(http.TimeFormat)), time.Second, time.Second}, // HTTP dates have whole seconds
		{"retry-after past date", 0, resp(503, now.Add(-time.Hour).Format(http.TimeFormat)), minW, minW},
		{"retry-after ignored on 500", 0, resp(500, "3600"), minW, minW},
		{"retry-after garbage", 0, resp(503, "soon"), minW, minW},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for range 50 {
				if d := c.backoff(minW, maxW, tt.n, tt.resp); d < tt.lo || d > tt.hi {
					t.Fatalf("backoff = %v, want in [%v, %v]", d, tt.lo, tt.hi)
				}
			}
		})
	}
}

// TestSignedPerAttempt: every attempt carries the same webhook-id, its own
// timestamp, and a signature that verifies for that timestamp.
func TestSignedPerAttempt(t *testing.T) {
	secrets := []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "old-raw-secret"}
	type seen struct{ id, ts, sig, ua, ct, custom string }
	var mu sync.Mutex
	var got []seen
	var bodies [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"),
			r.Header.Get("User-Agent"), r.Header.Get("Content-Type"), r.Header.Get("X-Custom")})
		bodies = append(bodies, body)
		n := len(got)
		mu.Unlock()
		if n < 3 {
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	defer srv.Close()
	clock := &fakeClock{t: time.Unix(1_767_225_600, 0)}
	r := baseRequest(srv.URL)
	r.Secrets = secrets
	r.Header.Set("X-Custom", "yes")
	res := newClient(t, loopback, clock.Now).Send(context.Background(), r)
	if res.Outcome != Delivered || res.Attempts != 3 {
		t.Fatalf("got %v after %d attempts (%v)", res.Outcome, res.Attempts, res.Err)
	}
	if len(got) != 3 {
		t.Fatalf("server saw %d attempts", len(got))
	}
	stamps := map[string]bool{}
	for i, s := range got {
		if s.id != "evt_1" || s.ua != "mistral-tap/test" || s.ct != "application/json" || s.custom != "yes" {
			t.Errorf("attempt %d headers: %+v", i+1, s)
		}
		if string(bodies[i]) != string(r.Body) {
			t.Errorf("attempt %d body %q", i+1, bodies[i])
		}
		stamps[s.ts] = true
		ts, _ := strconv.ParseInt(s.ts, 10, 64)
		for _, sec := range secrets {
			if err := sign.Verify([]string{sec}, s.id, s.ts, bodies[i], s.sig, time.Minute, time.Unix(ts, 0)); err != nil {
				t.Errorf("attempt %d, secret %q: %v", i+1, sec[:4], err)
			}
		}
	}
	if len(stamps) != 3 {
		t.Errorf("timestamps %v: want one per attempt", got)
	}
}

func TestUnsignedHasIDAndTimestamp(t *testing.T) {
	var h http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h = r.Header.Clone() }))
	defer srv.Close()
	res := newClient(t, loopback, nil).Send(context.Background(), baseRequest(srv.URL))
	if res.Outcome != Delivered {
		t.Fatal(res.Err)
	}
	if h.Get("webhook-id") != "evt_1" || h.Get("webhook-timestamp") == "" || h.Get("webhook-signature") != "" {
		t.Errorf("headers %v", h)
	}
}

func TestPerAttemptTimeout(t *testing.T) {
	release := make(chan struct{})
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	r := baseRequest(srv.URL)
	r.Timeout = 100 * time.Millisecond
	r.Retries = 1
	res := newClient(t, loopback, nil).Send(context.Background(), r)
	if res.Outcome != Retryable || res.Attempts != 2 || res.Status != 0 {
		t.Fatalf("got %v status %d after %d attempts (%v)", res.Outcome, res.Status, res.Attempts, res.Err)
	}
	var ne net.Error
	if !errors.As(res.Err, &ne) || !ne.Timeout() {
		t.Errorf("Err = %v, want a timeout", res.Err)
	}
	if res.Duration > 10*time.Second {
		t.Errorf("took %v: the attempt timeout did not apply", res.Duration)
	}
}

func TestContextCancelled(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := newClient(t, loopback, nil).Send(ctx, baseRequest(srv.URL))
	if res.Outcome != Retryable || !errors.Is(res.Err, context.Canceled) {
		t.Errorf("got %v, %v; want retryable, context.Canceled", res.Outcome, res.Err)
	}
}

func TestSSRFRefused(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, url := range []string{srv.URL, "http://localhost:" + port} {
		res := newClient(t, nil, nil).Send(context.Background(), baseRequest(url))
		if res.Outcome != Permanent || res.Attempts != 1 || !errors.Is(res.Err, ssrf.ErrForbidden) {
			t.Errorf("%s: got %v after %d attempts (%v); want permanent SSRF refusal, no retry", url, res.Outcome, res.Attempts, res.Err)
		}
	}
	if hits.Load() != 0 {
		t.Errorf("receiver reached %d times", hits.Load())
	}
}

func TestInvalidRequests(t *testing.T) {
	c := newClient(t, loopback, nil)
	for _, tt := range []struct {
		name string
		r    func(Request) Request
	}{
		{"scheme", func(r Request) Request { r.URL = "ftp://example.com/x"; return r }},
		{"relative", func(r Request) Request { r.URL = "/hook"; return r }},
		{"unparseable", func(r Request) Request { r.URL = "http://[::1"; return r }},
		{"method", func(r Request) Request { r.Method = "BAD METHOD"; return r }},
		{"secret", func(r Request) Request { r.Secrets = []string{"whsec_%%%"}; return r }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := c.Send(context.Background(), tt.r(baseRequest("http://127.0.0.1:1/hook")))
			if res.Outcome != Permanent || res.Attempts != 0 || res.Err == nil {
				t.Errorf("got %v after %d attempts (%v); want permanent, no attempt", res.Outcome, res.Attempts, res.Err)
			}
			if strings.Contains(res.Err.Error(), "%%%") {
				t.Errorf("error leaks the secret: %v", res.Err)
			}
		})
	}
}

func TestErrorsRedacted(t *testing.T) {
	// A closed port: connection refused on every attempt.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r := baseRequest("http://user:hunter2@" + addr + "/hooks/T0001/abcdEFGH1234ijklMNOP5678?token=tok-secret-1&team=ops&x=AbCdEfGh12345678IjKl")
	r.Header.Set("Authorization", "Bearer header-secret")
	r.Retries = 1
	res := newClient(t, loopback, nil).Send(context.Background(), r)
	if res.Outcome != Retryable || res.Attempts != 2 {
		t.Fatalf("got %v after %d attempts (%v)", res.Outcome, res.Attempts, res.Err)
	}
	msg := res.Err.Error()
	for _, secret := range []string{"hunter2", "tok-secret-1", "header-secret", "abcdEFGH1234ijklMNOP5678", "AbCdEfGh12345678IjKl"} {
		if strings.Contains(msg, secret) {
			t.Errorf("error leaks %q: %s", secret, msg)
		}
	}
	for _, kept := range []string{"token=REDACTED", "team=ops", "/hooks/T0001/", "refused"} {
		if !strings.Contains(msg, kept) {
			t.Errorf("error lacks %q: %s", kept, msg)
		}
	}
}

// TestNoPoolFlushOnGiveUp: giving up on a failing receiver must not close
// the idle connections of the shared pool (retryablehttp does by default).
func TestNoPoolFlushOnGiveUp(t *testing.T) {
	var newConns atomic.Int32
	fail := atomic.Bool{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			newConns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := newClient(t, loopback, nil)
	send := func(want Outcome) {
		t.Helper()
		r := baseRequest(srv.URL)
		r.Retries = 1
		if res := c.Send(context.Background(), r); res.Outcome != want {
			t.Fatalf("got %v (%v), want %v", res.Outcome, res.Err, want)
		}
	}
	send(Delivered)
	fail.Store(true)
	send(Retryable) // gives up after 2 attempts
	fail.Store(false)
	send(Delivered)
	if n := newConns.Load(); n != 1 {
		t.Errorf("%d connections opened, want 1 (pool flushed on give-up?)", n)
	}
}

func TestNewBadAllowList(t *testing.T) {
	if _, err := New(Options{AllowNetworks: []string{"10.0.0.0/99"}}); err == nil || !strings.Contains(err.Error(), "10.0.0.0/99") {
		t.Errorf("New = %v, want an error naming the CIDR", err)
	}
}

func BenchmarkSend(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	c := newClient(b, loopback, nil)
	r := baseRequest(srv.URL)
	r.Secrets = []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
	r.Body = []byte(strings.Repeat("x", 400))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if res := c.Send(context.Background(), r); res.Outcome != Delivered {
				b.Errorf("send: %v", res.Err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

func TestTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	defer srv.Close()
	// Unknown CA: not retried in-process (same answer every time), but
	// retryable from the outbox (the receiver can fix its certificate).
	res := newClient(t, loopback, nil).Send(context.Background(), baseRequest(srv.URL))
	if res.Outcome != Retryable || res.Attempts != 1 {
		t.Errorf("unknown CA: got %v after %d attempts (%v), want retryable after 1", res.Outcome, res.Attempts, res.Err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	c, err := New(Options{AllowNetworks: loopback, RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if res := c.Send(context.Background(), baseRequest(srv.URL)); res.Outcome != Delivered {
		t.Errorf("trusted CA: got %v (%v)", res.Outcome, res.Err)
	}
}

// TestConcealedSecrets: values of Request.Conceal (what came from ${NAME}
// in the callback's URL) never reach the error text, in the path, the
// query or the host, whatever the failure.
func TestConcealedSecrets(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such hook "+r.URL.Path, http.StatusNotFound)
	}))
	defer srv.Close()
	const pathSecret, querySecret, hostSecret = "pathsecretvalue", "plainqvalue", "secret-host.invalid"
	for _, base := range []string{"http://" + addr, srv.URL, "http://" + hostSecret} {
		r := baseRequest(base + "/p/" + pathSecret + "?q=" + querySecret)
		r.Conceal = []string{pathSecret, querySecret, hostSecret}
		res := newClient(t, loopback, nil).Send(context.Background(), r)
		if res.Err == nil {
			t.Fatalf("%s: no error", base)
		}
		msg := res.Err.Error()
		for _, s := range r.Conceal {
			if strings.Contains(msg, s) {
				t.Errorf("error leaks %q: %s", s, msg)
			}
		}
		if !strings.Contains(msg, "/p/REDACTED?q=REDACTED") {
			t.Errorf("error lacks the redacted URL: %s", msg)
		}
	}
}
