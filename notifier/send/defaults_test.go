package send

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// hit is one attempt as the receiver saw it.
type hit struct {
	method string
	body   int
	at     time.Time
}

// deadlines records, per attempt, how far ahead the deadline of the
// request's context lies (http.Client.Timeout sets it).
type deadlines struct {
	next http.RoundTripper
	mu   sync.Mutex
	got  []time.Duration
}

func (d *deadlines) RoundTrip(r *http.Request) (*http.Response, error) {
	if dl, ok := r.Context().Deadline(); ok {
		d.mu.Lock()
		d.got = append(d.got, time.Until(dl))
		d.mu.Unlock()
	}
	return d.next.RoundTrip(r)
}

// TestRequestDefaults: a Request that leaves Method, Timeout, the retry
// waits or Retries at zero (or below) gets the documented defaults. Waits
// are checked as lower bounds on the receiver's gap between two attempts,
// which a busy machine can only lengthen.
func TestRequestDefaults(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(*Request)
		// status answers attempt n (0-based); Retry-After: 1 goes with a 503.
		status func(n int) int
		check  func(t *testing.T, res Result, hits []hit, deadlines []time.Duration)
	}{
		{
			name:   "empty method sends a POST with the body",
			edit:   func(r *Request) { r.Method = "" },
			status: func(int) int { return http.StatusNoContent },
			check: func(t *testing.T, res Result, hits []hit, _ []time.Duration) {
				if res.Outcome != Delivered || len(hits) != 1 || hits[0].method != http.MethodPost || hits[0].body == 0 {
					t.Errorf("got %v, hits %+v; want one POST with a body, delivered", res.Outcome, hits)
				}
			},
		},
		{
			name:   "zero timeout bounds each attempt by DefaultTimeout",
			edit:   func(r *Request) { r.Timeout = 0 },
			status: func(int) int { return http.StatusNoContent },
			check: func(t *testing.T, res Result, _ []hit, dl []time.Duration) {
				if res.Outcome != Delivered || len(dl) != 1 || dl[0] > DefaultTimeout || dl[0] < DefaultTimeout-time.Second {
					t.Errorf("got %v, attempt deadlines %v ahead; want one, about %v", res.Outcome, dl, DefaultTimeout)
				}
			},
		},
		{
			// A small RetryWaitMax: the jitter alone would wait less than
			// DefaultRetryWaitMin, and RetryWaitMax rises to it.
			name:   "zero RetryWaitMin waits at least DefaultRetryWaitMin",
			edit:   func(r *Request) { r.RetryWaitMin, r.RetryWaitMax, r.Retries = 0, 2*time.Millisecond, 1 },
			status: func(n int) int { return []int{500, 204}[n] },
			check:  wantGap(DefaultRetryWaitMin),
		},
		{
			name:   "RetryWaitMax below RetryWaitMin is raised to it",
			edit:   func(r *Request) { r.RetryWaitMin, r.RetryWaitMax, r.Retries = 50*time.Millisecond, time.Millisecond, 1 },
			status: func(n int) int { return []int{500, 204}[n] },
			check:  wantGap(50 * time.Millisecond),
		},
		{
			name:   "zero RetryWaitMax lets Retry-After wait up to DefaultRetryWaitMax",
			edit:   func(r *Request) { r.RetryWaitMin, r.RetryWaitMax, r.Retries = time.Millisecond, 0, 1 },
			status: func(n int) int { return []int{503, 204}[n] },
			check:  wantGap(time.Second),
		},
		{
			name:   "negative retries make one attempt",
			edit:   func(r *Request) { r.Retries = -1 },
			status: func(int) int { return 500 },
			check: func(t *testing.T, res Result, hits []hit, _ []time.Duration) {
				if res.Outcome != Retryable || res.Attempts != 1 || len(hits) != 1 {
					t.Errorf("got %v after %d attempts (receiver saw %d); want retryable after 1", res.Outcome, res.Attempts, len(hits))
				}
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var hits []hit
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				n := len(hits)
				hits = append(hits, hit{r.Method, len(b), time.Now()})
				mu.Unlock()
				s := tt.status(n)
				if s == http.StatusServiceUnavailable {
					w.Header().Set("Retry-After", "1")
				}
				w.WriteHeader(s)
			}))
			defer srv.Close()
			c := newClient(t, loopback, nil)
			rec := &deadlines{next: c.hc.Transport}
			c.hc.Transport = rec
			r := baseRequest(srv.URL)
			tt.edit(&r)
			res := c.Send(context.Background(), r)
			mu.Lock()
			defer mu.Unlock()
			rec.mu.Lock()
			defer rec.mu.Unlock()
			tt.check(t, res, hits, rec.got)
		})
	}
}

// wantGap checks a delivery on the second attempt, made at least `least`
// after the first.
func wantGap(least time.Duration) func(*testing.T, Result, []hit, []time.Duration) {
	return func(t *testing.T, res Result, hits []hit, _ []time.Duration) {
		t.Helper()
		if res.Outcome != Delivered || len(hits) != 2 {
			t.Fatalf("got %v after %d attempts (%v); want delivered on the second", res.Outcome, len(hits), res.Err)
		}
		if gap := hits[1].at.Sub(hits[0].at); gap < least {
			t.Errorf("second attempt %v after the first, want at least %v", gap, least)
		}
	}
}

// TestAttemptLog: with debug enabled, every attempt is logged with its
// number and the redacted URL, never a secret; above debug nothing is.
func TestAttemptLog(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer srv.Close()
	const password, concealed = "hunter2", "pathsecretvalue"
	for _, tt := range []struct {
		level slog.Level
		want  []float64 // attempt numbers logged
	}{
		{slog.LevelDebug, []float64{1, 2}},
		{slog.LevelInfo, nil},
	} {
		t.Run(tt.level.String(), func(t *testing.T) {
			var buf bytes.Buffer
			c, err := New(Options{AllowNetworks: loopback, Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: tt.level}))})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			r := baseRequest(strings.Replace(srv.URL, "http://", "http://user:"+password+"@", 1) + "/p/" + concealed)
			r.Conceal, r.Retries = []string{concealed}, 1
			if res := c.Send(context.Background(), r); res.Outcome != Retryable || res.Attempts != 2 {
				t.Fatalf("got %v after %d attempts (%v)", res.Outcome, res.Attempts, res.Err)
			}
			var got []float64
			for line := range strings.Lines(buf.String()) {
				var rec map[string]any
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("log line %q: %v", line, err)
				}
				if rec["msg"] != "webhook attempt" || rec["callback"] != "cb" || rec["event_id"] != "evt_1" || rec["method"] != "POST" ||
					!strings.HasSuffix(rec["url"].(string), "/p/REDACTED") {
					t.Errorf("log line %s", line)
				}
				got = append(got, rec["attempt"].(float64))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("attempts logged %v, want %v", got, tt.want)
			}
			for _, s := range []string{password, concealed} {
				if strings.Contains(buf.String(), s) {
					t.Errorf("log leaks %q: %s", s, buf.String())
				}
			}
		})
	}
}
