package ops

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/tap/event"
	"github.com/mistral-tap/mistral-tap/tap/proxy"
	"github.com/mistral-tap/mistral-tap/tap/track"
	"github.com/mistral-tap/mistral-tap/tap/watch"
)

// namespace prefixes every metric name.
const namespace = "mistral_tap"

// Sources are the snapshot functions the scrape-time collectors read. Any
// nil field leaves its metrics out (e.g. Watch when the watcher is off is
// still fine to pass: its counters simply stay zero).
type Sources struct {
	// Proxy returns the proxy's counters (proxy.Proxy.Stats).
	Proxy func() proxy.Stats
	// Watch returns the watcher's counters (watch.Watcher.Stats).
	Watch func() watch.Stats
	// LastContact is when the engine last answered mistral-tap
	// (mistral.Client.LastContact).
	LastContact func() time.Time
	// Tracker returns the tracker's counters (track.Tracker.Stats).
	Tracker func() track.Stats
	// Callbacks returns every callback's delivery state
	// (notifier.Dispatcher.Status).
	Callbacks func() []notifier.CallbackStatus
}

// Metrics is mistral-tap's metric registry. It owns a private
// prometheus.Registry (never the global default, so tests and embedders do
// not collide) with the Go and process collectors. Create it with
// NewMetrics; the zero value is not usable.
type Metrics struct {
	reg *prometheus.Registry

	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	observations    *prometheus.CounterVec
	events          *prometheus.CounterVec
	deliveries      *prometheus.CounterVec
	deliveryLatency *prometheus.HistogramVec
	attempts        *prometheus.CounterVec
	reloads         *prometheus.CounterVec
	reloadSuccess   prometheus.Gauge
	reloadTime      prometheus.Gauge
	now             func() time.Time

	// Children of requests and requestDuration already resolved, so that
	// a proxied request costs a map read instead of the vector's label
	// hashing, its lock and the formatting of the status code. The label
	// sets are bounded (route class, method label, status code), so the
	// caches are too.
	reqChildren sync.Map // reqKey → prometheus.Counter
	durChildren sync.Map // route class → prometheus.Observer
}

// reqKey is one label set of proxy_requests_total; code 0 is "hijacked".
type reqKey struct {
	route, method string
	code          int
}

// NewMetrics registers every metric on a new registry. Version is exported
// as mistral_tap_build_info{version}.
func NewMetrics(version string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), now: time.Now}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "proxy_requests_total",
		Help: "Requests proxied to Mistral, by route class, method and response status code.",
	}, []string{"route", "method", "code"})
	m.requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "proxy_request_duration_seconds",
		Help: "Time from receiving a request to the end of its response body, by route class.",
		// Mistral answers lists in milliseconds but starts executions
		// with a synchronous RPC that may take many seconds.
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
	}, []string{"route"})
	m.observations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "observations_total",
		Help: "Executions and tasks handed to the tracker, by source (tap: proxied responses; watch: the watcher's polls and fetches).",
	}, []string{"source"})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "events_total",
		Help: "Lifecycle events derived and durably recorded, by Mistral event type, whether inferred, and the source that revealed them.",
	}, []string{"type", "inferred", "source"})
	m.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "deliveries_total",
		Help: "Delivery sends (each with its in-process retries) by callback and outcome (delivered, retryable, permanent, gone).",
	}, []string{"callback", "outcome"})
	m.deliveryLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "delivery_duration_seconds",
		Help:    "Wall time of one delivery send including in-process retries, by callback and outcome.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"callback", "outcome"})
	m.attempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "delivery_attempts_total",
		Help: "HTTP attempts made to receivers, by callback.",
	}, []string{"callback"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "config_reloads_total",
		Help: "Configuration reload attempts by result (success, failure).",
	}, []string{"result"})
	m.reloadSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "config_last_reload_successful",
		Help: "1 if the last configuration reload attempt succeeded (or none was made yet), 0 if it failed and the previous configuration is in force.",
	})
	m.reloadTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "config_last_reload_success_timestamp_seconds",
		Help: "Unix time the configuration in force was loaded.",
	})
	m.reloadSuccess.Set(1)
	m.reloadTime.Set(float64(m.now().UnixNano()) / 1e9)
	for _, r := range []string{"success", "failure"} {
		m.reloads.WithLabelValues(r)
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info", Help: "Always 1; the version label says which build runs.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	info.Set(1)
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.requestDuration, m.observations, m.events,
		m.deliveries, m.deliveryLatency, m.attempts,
		m.reloads, m.reloadSuccess, m.reloadTime, info,
	)
	return m
}

// Read registers the scrape-time collectors over src. The counting
// wrappers (CountEvents, TimeDeliveries, ...) are needed while the
// components are built, the sources only once they exist, so this is a
// separate step; call it once.
func (m *Metrics) Read(src Sources) {
	m.reg.MustRegister(&snapshotCollector{src: src})
}

// Registry is the private registry, for tests and for adding metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	// ContinueOnError: one failing collector (e.g. /proc hidden by a
	// sandbox) must not blank the whole scrape.
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry: m.reg, MaxRequestsInFlight: 4, ErrorHandling: promhttp.ContinueOnError,
	})
}

// ObserveReload records a configuration reload attempt; it has the
// signature of config.Reloader.Observe. nil means success (or no change).
func (m *Metrics) ObserveReload(err error) {
	if err != nil {
		m.reloads.WithLabelValues("failure").Inc()
		m.reloadSuccess.Set(0)
		return
	}
	m.reloads.WithLabelValues("success").Inc()
	m.reloadSuccess.Set(1)
	m.reloadTime.Set(float64(m.now().UnixNano()) / 1e9)
}

// InstrumentProxy wraps the proxy's handler: it counts requests by
// class(r), method and status code and times them to the end of the body.
// The ResponseWriter handed on keeps http.Flusher and http.Hijacker (and
// Unwrap for http.ResponseController), because goproxy type-asserts them
// to stream responses and to refuse or tunnel connections.
func (m *Metrics) InstrumentProxy(next http.Handler, class func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := m.now()
		rc := class(r)
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			// A hijacked connection has no status we can see.
			code := 0
			if !sw.hijacked {
				code = sw.code()
			}
			m.requestCounter(reqKey{rc, methodLabel(r.Method), code}).Inc()
			m.durationObserver(rc).Observe(m.now().Sub(start).Seconds())
		}()
		next.ServeHTTP(sw, r)
	})
}

// requestCounter returns the proxy_requests_total child for k, resolving
// it once.
func (m *Metrics) requestCounter(k reqKey) prometheus.Counter {
	if c, ok := m.reqChildren.Load(k); ok {
		return c.(prometheus.Counter)
	}
	code := "hijacked"
	if k.code != 0 {
		code = strconv.Itoa(k.code)
	}
	c, _ := m.reqChildren.LoadOrStore(k, m.requests.WithLabelValues(k.route, k.method, code))
	return c.(prometheus.Counter)
}

// durationObserver returns the proxy_request_duration_seconds child for a
// route class, resolving it once.
func (m *Metrics) durationObserver(route string) prometheus.Observer {
	if o, ok := m.durChildren.Load(route); ok {
		return o.(prometheus.Observer)
	}
	o, _ := m.durChildren.LoadOrStore(route, m.requestDuration.WithLabelValues(route))
	return o.(prometheus.Observer)
}

// methodLabel keeps the method label bounded: clients may send anything.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect:
		return m
	}
	return "other"
}

// statusWriter records the status code and delegates the optional
// interfaces goproxy and net/http rely on.
type statusWriter struct {
	http.ResponseWriter
	status   int
	hijacked bool
}

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK // nothing written: net/http sends 200
	}
	return w.status
}

func (w *statusWriter) WriteHeader(code int) {
	// 1xx are informational; the final status comes later.
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush delegates to the underlying writer; streaming responses depend on
// it.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack delegates to the underlying writer.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("ops: the underlying ResponseWriter cannot hijack")
	}
	c, rw, err := h.Hijack()
	if err == nil {
		w.hijacked = true
	}
	return c, rw, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Sink is what the tracker hands derived events to (track.Sink), restated
// here so that ops depends on the method only.
type Sink interface {
	Accept(ctx context.Context, events []event.Event, states []event.EntityState) error
}

// CountEvents returns a Sink that counts the events next accepted, by type,
// inferred and source. Only successful Accepts count: the tracker retries a
// failed one with the same events, which would otherwise count twice.
func (m *Metrics) CountEvents(next Sink) Sink { return eventCounter{next: next, m: m} }

type eventCounter struct {
	next Sink
	m    *Metrics
}

func (c eventCounter) Accept(ctx context.Context, events []event.Event, states []event.EntityState) error {
	if err := c.next.Accept(ctx, events, states); err != nil {
		return err
	}
	for i := range events {
		ev := &events[i]
		c.m.events.WithLabelValues(string(ev.Type), strconv.FormatBool(ev.Inferred), string(ev.Source)).Inc()
	}
	return nil
}

// Observer is the tracker's intake as both the proxy (Observe and
// ObserveAll, must not block) and the watcher (ObserveSync) use it.
type Observer interface {
	Observe(o event.Observation)
	ObserveAll(obs []event.Observation)
	ObserveSync(ctx context.Context, obs []event.Observation) error
}

// CountObservations returns an Observer that counts observations by their
// Source before handing them to next. It adds no blocking and keeps
// ObserveAll, so the proxy still hands whole lists over at once.
func (m *Metrics) CountObservations(next Observer) Observer { return obsCounter{next: next, m: m} }

type obsCounter struct {
	next Observer
	m    *Metrics
}

func (c obsCounter) Observe(o event.Observation) {
	c.m.observations.WithLabelValues(sourceLabel(o.Source)).Inc()
	c.next.Observe(o)
}

func (c obsCounter) ObserveAll(obs []event.Observation) {
	c.count(obs)
	c.next.ObserveAll(obs)
}

func (c obsCounter) count(obs []event.Observation) {
	if len(obs) == 0 {
		return
	}
	// One list comes from one source; add per run of equal sources.
	src, n := obs[0].Source, 0
	for i := range obs {
		if obs[i].Source != src {
			c.m.observations.WithLabelValues(sourceLabel(src)).Add(float64(n))
			src, n = obs[i].Source, 0
		}
		n++
	}
	c.m.observations.WithLabelValues(sourceLabel(src)).Add(float64(n))
}

func (c obsCounter) ObserveSync(ctx context.Context, obs []event.Observation) error {
	c.count(obs)
	return c.next.ObserveSync(ctx, obs)
}

func sourceLabel(s event.Source) string {
	if s == "" {
		return "unknown"
	}
	return string(s)
}

// Sender is one delivery (notifier.Sender), restated so that ops depends on
// the method only.
type Sender interface {
	Send(ctx context.Context, r send.Request) send.Result
}

// TimeDeliveries returns a Sender that records each send's callback,
// outcome, attempts and latency. The callback label is the configured
// name: bounded by the configuration, never an execution id or URL.
func (m *Metrics) TimeDeliveries(next Sender) Sender { return sendTimer{next: next, m: m} }

type sendTimer struct {
	next Sender
	m    *Metrics
}

func (s sendTimer) Send(ctx context.Context, r send.Request) send.Result {
	start := s.m.now()
	res := s.next.Send(ctx, r)
	d := res.Duration
	if d <= 0 {
		d = s.m.now().Sub(start)
	}
	out := res.Outcome.String()
	s.m.deliveries.WithLabelValues(r.Callback, out).Inc()
	s.m.deliveryLatency.WithLabelValues(r.Callback, out).Observe(d.Seconds())
	if res.Attempts > 0 {
		s.m.attempts.WithLabelValues(r.Callback).Add(float64(res.Attempts))
	}
	return res
}
