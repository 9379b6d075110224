package ops

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/tap/event"
	"github.com/mistral-tap/mistral-tap/tap/proxy"
	"github.com/mistral-tap/mistral-tap/tap/track"
	"github.com/mistral-tap/mistral-tap/tap/watch"
)

func classByPath(r *http.Request) string { return proxy.RouteClass("", r.Method, r.URL.Path) }

func TestInstrumentProxyCountsByRouteAndCode(t *testing.T) {
	m := NewMetrics("test")
	h := m.InstrumentProxy(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/executions":
			w.WriteHeader(http.StatusCreated)
		case "/v2/tasks/1":
			w.WriteHeader(http.StatusNotFound)
		default:
			io.WriteString(w, "implicit 200")
		}
	}), classByPath)
	srv := httptest.NewServer(h)
	defer srv.Close()
	tests := []struct {
		method, path string
		route, code  string
	}{
		{"POST", "/v2/executions", "executions", "201"},
		{"GET", "/v2/tasks/1", "task", "404"},
		{"GET", "/v2/executions/abc", "execution", "200"},
		{"BREW", "/v2/executions/abc", "execution", "200"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for _, tt := range tests {
		method := tt.method
		if method == "BREW" {
			method = "other"
		}
		if got := toFloat(t, m.requests.WithLabelValues(tt.route, method, tt.code)); got != 1 {
			t.Errorf("proxy_requests_total{route=%q,method=%q,code=%q} = %v, want 1", tt.route, method, tt.code, got)
		}
	}
	if n := count(m.requestDuration); n != 3 {
		t.Errorf("duration series = %d, want 3 route classes", n)
	}
}

// hijackRecorder is a ResponseWriter that can flush and hijack, like
// net/http's.
type hijackRecorder struct {
	*httptest.ResponseRecorder
	hijacked bool
}

func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h.hijacked = true
	c1, c2 := net.Pipe()
	c2.Close()
	return c1, bufio.NewReadWriter(bufio.NewReader(c1), bufio.NewWriter(c1)), nil
}

func TestInstrumentProxyKeepsFlusherAndHijacker(t *testing.T) {
	m := NewMetrics("test")
	var flushOK, hijackOK bool
	h := m.InstrumentProxy(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f, ok := w.(http.Flusher); ok {
			flushOK = true
			w.Write([]byte("chunk"))
			f.Flush()
		}
		if hj, ok := w.(http.Hijacker); ok {
			c, _, err := hj.Hijack()
			if err == nil {
				hijackOK = true
				c.Close()
			}
		}
	}), classByPath)
	rec := &hijackRecorder{ResponseRecorder: httptest.NewRecorder()}
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v2/executions", nil))
	if !flushOK || !rec.Flushed {
		t.Errorf("Flusher not delegated: asserted=%v flushed=%v", flushOK, rec.Flushed)
	}
	if !hijackOK || !rec.hijacked {
		t.Errorf("Hijacker not delegated: asserted=%v hijacked=%v", hijackOK, rec.hijacked)
	}
	if got := toFloat(t, m.requests.WithLabelValues("executions", "GET", "hijacked")); got != 1 {
		t.Errorf("hijacked request count = %v, want 1", got)
	}
}

// TestInstrumentProxyStreams checks that a flushed chunk reaches the client
// before the handler returns, through a real server.
func TestInstrumentProxyStreams(t *testing.T) {
	m := NewMetrics("test")
	release := make(chan struct{})
	h := m.InstrumentProxy(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "second\n")
	}), classByPath)
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer close(release)
	resp, err := http.Get(srv.URL + "/v2/executions")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first chunk = %q, %v", line, err)
	}
}

type sinkFunc func(ctx context.Context, evs []event.Event, st []event.EntityState) error

func (f sinkFunc) Accept(ctx context.Context, evs []event.Event, st []event.EntityState) error {
	return f(ctx, evs, st)
}

func TestCountEventsOnlyOnSuccess(t *testing.T) {
	m := NewMetrics("test")
	fail := true
	s := m.CountEvents(sinkFunc(func(context.Context, []event.Event, []event.EntityState) error {
		if fail {
			return errors.New("disk full")
		}
		return nil
	}))
	evs := []event.Event{
		{Type: event.WorkflowLaunched, Inferred: true, Source: event.SourceWatch},
		{Type: event.TaskSucceeded, Source: event.SourceTap},
		{Type: event.TaskSucceeded, Source: event.SourceTap},
	}
	if err := s.Accept(context.Background(), evs, nil); err == nil {
		t.Fatal("error not passed through")
	}
	fail = false
	if err := s.Accept(context.Background(), evs, nil); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		typ, inferred, source string
		want                  float64
	}{
		{"WORKFLOW_LAUNCHED", "true", "watch", 1},
		{"TASK_SUCCEEDED", "false", "tap", 2},
	} {
		if got := toFloat(t, m.events.WithLabelValues(tt.typ, tt.inferred, tt.source)); got != tt.want {
			t.Errorf("events_total{%s,%s,%s} = %v, want %v", tt.typ, tt.inferred, tt.source, got, tt.want)
		}
	}
}

type fakeObserver struct{ n int }

func (f *fakeObserver) Observe(event.Observation)        { f.n++ }
func (f *fakeObserver) ObserveAll(o []event.Observation) { f.n += len(o) }
func (f *fakeObserver) ObserveSync(_ context.Context, o []event.Observation) error {
	f.n += len(o)
	return nil
}

func TestCountObservationsBySource(t *testing.T) {
	m := NewMetrics("test")
	inner := &fakeObserver{}
	o := m.CountObservations(inner)
	o.Observe(event.Observation{Source: event.SourceTap})
	o.ObserveSync(context.Background(), []event.Observation{{Source: event.SourceWatch}, {Source: event.SourceWatch}})
	o.ObserveAll([]event.Observation{{Source: event.SourceTap}, {Source: event.SourceTap}, {Source: event.SourceTap}})
	if inner.n != 6 {
		t.Errorf("inner saw %d observations, want 6", inner.n)
	}
	if _, ok := o.(proxy.BatchObserver); !ok {
		t.Error("the counter hides proxy.BatchObserver")
	}
	if got := toFloat(t, m.observations.WithLabelValues("tap")); got != 4 {
		t.Errorf("tap = %v", got)
	}
	if got := toFloat(t, m.observations.WithLabelValues("watch")); got != 2 {
		t.Errorf("watch = %v", got)
	}
}

type senderFunc func(context.Context, send.Request) send.Result

func (f senderFunc) Send(ctx context.Context, r send.Request) send.Result { return f(ctx, r) }

func TestTimeDeliveries(t *testing.T) {
	m := NewMetrics("test")
	s := m.TimeDeliveries(senderFunc(func(_ context.Context, r send.Request) send.Result {
		if r.Callback == "bad" {
			return send.Result{Outcome: send.Retryable, Attempts: 4, Duration: 2 * time.Second}
		}
		return send.Result{Outcome: send.Delivered, Attempts: 1, Duration: 10 * time.Millisecond}
	}))
	s.Send(context.Background(), send.Request{Callback: "good"})
	s.Send(context.Background(), send.Request{Callback: "bad"})
	s.Send(context.Background(), send.Request{Callback: "bad"})
	for _, tt := range []struct {
		cb, outcome string
		want        float64
	}{{"good", "delivered", 1}, {"bad", "retryable", 2}, {"bad", "delivered", 0}} {
		if got := toFloat(t, m.deliveries.WithLabelValues(tt.cb, tt.outcome)); got != tt.want {
			t.Errorf("deliveries_total{%s,%s} = %v, want %v", tt.cb, tt.outcome, got, tt.want)
		}
	}
	if got := toFloat(t, m.attempts.WithLabelValues("bad")); got != 8 {
		t.Errorf("attempts{bad} = %v, want 8", got)
	}
}

func TestObserveReload(t *testing.T) {
	m := NewMetrics("test")
	m.now = func() time.Time { return time.Unix(1000, 0) }
	m.ObserveReload(errors.New("bad yaml"))
	if got := toFloat(t, m.reloadSuccess); got != 0 {
		t.Errorf("after failure success gauge = %v", got)
	}
	m.ObserveReload(nil)
	if got := toFloat(t, m.reloadSuccess); got != 1 {
		t.Errorf("after success gauge = %v", got)
	}
	if got := toFloat(t, m.reloadTime); got != 1000 {
		t.Errorf("timestamp = %v, want 1000", got)
	}
	if got := toFloat(t, m.reloads.WithLabelValues("failure")); got != 1 {
		t.Errorf("failures = %v", got)
	}
}

// TestScrape reads the snapshots through the /metrics handler, as
// Prometheus does, and lints the exposition.
func TestScrape(t *testing.T) {
	m := NewMetrics("v1.2.3")
	m.Read(Sources{
		Proxy:       func() proxy.Stats { return proxy.Stats{Requests: 7, Tapped: 5, SkippedTooLarge: 2} },
		Watch:       func() watch.Stats { return watch.Stats{Polls: 3, Errors: 1, Lag: 1500 * time.Millisecond} },
		LastContact: func() time.Time { return time.Unix(42, 0) },
		Tracker: func() track.Stats {
			return track.Stats{Events: 10, Inferred: 4, Tracked: 6, UnknownStates: 2, FutureTimestamps: 1}
		},
		Callbacks: func() []notifier.CallbackStatus {
			return []notifier.CallbackStatus{{Name: "ops", Pending: 3, OldestPendingAge: 90 * time.Second, Breaker: notifier.BreakerOpen}}
		},
	})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	for _, want := range []string{
		`mistral_tap_tap_requests_total 7`,
		`mistral_tap_tap_bodies_parsed_total 5`,
		`mistral_tap_tap_bodies_skipped_total{reason="too_large"} 2`,
		`mistral_tap_watch_polls_total 3`,
		`mistral_tap_watch_poll_errors_total 1`,
		`mistral_tap_watch_lag_seconds 1.5`,
		`mistral_tap_engine_last_contact_timestamp_seconds 42`,
		`mistral_tap_tracker_events_total{inferred="false"} 6`,
		`mistral_tap_tracker_events_total{inferred="true"} 4`,
		`mistral_tap_tracker_entities 6`,
		`mistral_tap_tracker_observations_rejected_total{reason="unknown_state"} 2`,
		`mistral_tap_tracker_observations_rejected_total{reason="future_timestamp"} 1`,
		`mistral_tap_delivery_queue_pending{callback="ops"} 3`,
		`mistral_tap_delivery_oldest_pending_age_seconds{callback="ops"} 90`,
		`mistral_tap_delivery_breaker_open{callback="ops"} 1`,
		`mistral_tap_build_info{version="v1.2.3"} 1`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if _, err := m.Registry().Gather(); err != nil {
		t.Errorf("gather: %v", err)
	}
}
