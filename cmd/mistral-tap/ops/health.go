package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Check is one readiness condition. Run returns nil when it holds; its
// error text is shown in /readyz's body, so it must not contain secrets.
type Check struct {
	// Name keys the check in the JSON body, e.g. "engine".
	Name string
	// Run evaluates the check; it gets a context bounded by Health's
	// timeout.
	Run func(ctx context.Context) error
	// Informational checks are reported in the body but do not make the
	// process unready (a shared database outage must not take every
	// replica's proxy out of service).
	Informational bool
}

// Health serves /healthz and /readyz. Create it with NewHealth.
type Health struct {
	checks  []Check
	timeout time.Duration
}

// DefaultCheckTimeout bounds each readiness check when NewHealth gets 0.
const DefaultCheckTimeout = 2 * time.Second

// NewHealth returns the health endpoints over checks, each bounded by
// timeout (0 means DefaultCheckTimeout).
func NewHealth(timeout time.Duration, checks ...Check) *Health {
	if timeout <= 0 {
		timeout = DefaultCheckTimeout
	}
	return &Health{checks: checks, timeout: timeout}
}

// healthBody is /readyz's and /healthz's JSON answer.
type healthBody struct {
	Status string            `json:"status"` // "ok" or "unavailable"
	Checks map[string]string `json:"checks,omitempty"`
	Failed []string          `json:"failed,omitempty"`
}

// Live answers 200 while the process can serve HTTP at all: liveness must
// not depend on the engine or receivers, or an engine outage would get the
// sidecar restarted in a loop.
func (h *Health) Live(w http.ResponseWriter, _ *http.Request) {
	writeHealth(w, http.StatusOK, healthBody{Status: "ok"})
}

// Ready runs every check (concurrently) and answers 200 if all hold, 503
// otherwise, with each check's result and the names of the failed ones.
func (h *Health) Ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	res := make([]error, len(h.checks))
	var wg sync.WaitGroup
	for i, c := range h.checks {
		wg.Go(func() { res[i] = c.Run(ctx) })
	}
	wg.Wait()
	b := healthBody{Status: "ok", Checks: map[string]string{}}
	for i, c := range h.checks {
		if res[i] != nil {
			b.Checks[c.Name] = res[i].Error()
			if !c.Informational {
				b.Failed = append(b.Failed, c.Name)
			}
			continue
		}
		b.Checks[c.Name] = "ok"
	}
	code := http.StatusOK
	if len(b.Failed) > 0 {
		b.Status, code = "unavailable", http.StatusServiceUnavailable
	}
	writeHealth(w, code, b)
}

func writeHealth(w http.ResponseWriter, code int, b healthBody) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(b)
}

// RecentContact is a check that holds when last() is within maxAge of now:
// the watcher reached the engine recently. A zero time fails ("never").
func RecentContact(last func() time.Time, maxAge time.Duration, now func() time.Time) func(context.Context) error {
	if now == nil {
		now = time.Now
	}
	return func(context.Context) error {
		t := last()
		if t.IsZero() {
			return fmt.Errorf("engine not reached yet")
		}
		if age := now().Sub(t); age > maxAge {
			return fmt.Errorf("engine last reached %s ago (limit %s)", age.Round(time.Second), maxAge)
		}
		return nil
	}
}

// Prober checks the engine with a cheap GET when the watcher is off, and
// caches the answer so that frequent readiness probes do not load Mistral.
// Create it with NewProber; it is safe for concurrent use.
type Prober struct {
	url    string
	client *http.Client
	ttl    time.Duration
	header http.Header
	now    func() time.Time

	mu      sync.Mutex
	at      time.Time
	lastErr error
}

// NewProber probes url (Mistral's version document, "/") with client
// (nil: a client with a 2s timeout and no proxy from the environment) at
// most once per ttl (0 means 5s), sending header (e.g. X-Auth-Token).
func NewProber(url string, client *http.Client, ttl time.Duration, header http.Header) *Prober {
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	}
	if ttl <= 0 {
		ttl = 5 * time.Second
	}
	return &Prober{url: url, client: client, ttl: ttl, header: header, now: time.Now}
}

// Check probes (or returns the cached result): any answer below 500 counts
// as reachable, since "/" may want auth yet proves the API is up.
func (p *Prober) Check(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.at.IsZero() && p.now().Sub(p.at) < p.ttl {
		return p.lastErr
	}
	p.lastErr = p.probe(ctx)
	p.at = p.now()
	return p.lastErr
}

func (p *Prober) probe(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return fmt.Errorf("engine probe: %w", err)
	}
	for k, v := range p.header {
		req.Header[k] = v
	}
	resp, err := p.client.Do(req)
	if err != nil {
		// The URL error may carry userinfo; keep only the cause.
		return fmt.Errorf("engine unreachable: %w", unwrapURLError(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("engine answered %d", resp.StatusCode)
	}
	return nil
}

// unwrapURLError drops *url.Error's "Get <url>:" prefix: the URL may carry
// credentials, and the probe's target is known anyway.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Handler is the ops listener's mux: /metrics (when m is not nil),
// /healthz and /readyz.
func Handler(m *Metrics, h *Health) http.Handler {
	mux := http.NewServeMux()
	if m != nil {
		mux.Handle("GET /metrics", m.Handler())
	}
	mux.HandleFunc("GET /healthz", h.Live)
	mux.HandleFunc("GET /readyz", h.Ready)
	return mux
}
