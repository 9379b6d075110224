package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// DefaultMaxTapBody is the largest body the tap copies when
// Options.MaxTapBody is 0.
const DefaultMaxTapBody = 8 << 20

// Observer receives every execution or task parsed from a tapped response.
// Observe must not block: it is called from the proxy's parse goroutines.
type Observer interface{ Observe(event.Observation) }

// BatchObserver is an Observer that also takes all the resources of one
// response at once (the tracker does); the proxy prefers it, so that a list
// of 1,000 executions costs one hand-over instead of 1,000.
type BatchObserver interface {
	Observer
	ObserveAll([]event.Observation)
}

// WorkbookWatcher is told when a 2xx POST/PUT/DELETE on /v2/workbooks or
// /v2/workflows passed through, so that workbook membership is refreshed.
type WorkbookWatcher interface{ WorkbooksChanged() }

// Options configure a Proxy. They map to config.Proxy plus the wiring.
type Options struct {
	// Upstream is Mistral's API root (the part before /v2). It may carry a
	// base path, which is joined with every request path. Required.
	Upstream *url.URL
	// PathPrefix is where the client sees the API: with "/workflow", routes
	// are classified after stripping it (/workflow/v2/executions). It does
	// not change what is forwarded. Default "" (/v2 at the root).
	PathPrefix string
	// MaxTapBody is the largest response body copied for parsing, in bytes;
	// bigger bodies pass through untouched and are counted in Stats.
	// Default 8 MiB.
	MaxTapBody int64
	// Transport performs the round trips to Mistral. Default
	// NewTransport(TransportOptions{}).
	Transport http.RoundTripper
	// Observer receives tapped executions and tasks. nil turns tapping off.
	Observer Observer
	// Workbooks is told about workbook and workflow changes. Optional.
	Workbooks WorkbookWatcher
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock for Observation.RequestedAt. Default time.Now.
	Now func() time.Time
}

// Proxy is the tapping reverse proxy; it is an http.Handler. Create it with
// New; one per process.
type Proxy struct {
	up        *url.URL
	prefix    string
	maxTap    int64
	rt        http.RoundTripper
	obs       Observer
	workbooks WorkbookWatcher
	log       *slog.Logger
	now       func() time.Time
	gp        *goproxy.ProxyHttpServer
	// toMistral is p.roundTrip as goproxy's RoundTripper, made once: a
	// method value converted per request would allocate per request.
	toMistral goproxy.RoundTripper
	// last remembers, per request target, the hash of the last body that
	// was parsed and observed (see unchanged).
	last lastBodies
	// inflight counts parse and notify goroutines, see Wait.
	inflight sync.WaitGroup
	c        counters
}

// Stats are the proxy's counters since New.
type Stats struct {
	// Requests is every request received, refused ones included.
	Requests uint64
	// Refused counts CONNECT and absolute-URL requests for foreign hosts,
	// request targets that are not a path, and paths whose ".." segments
	// climb above the API root.
	Refused uint64
	// UpstreamErrors counts round trips that failed (answered 502).
	UpstreamErrors uint64
	// UpstreamCut counts responses whose upstream body failed before its
	// end; the client's response was aborted, not completed.
	UpstreamCut uint64
	// Tapped counts bodies captured whole and parsed without error.
	Tapped uint64
	// Observations counts resources passed to the Observer.
	Observations uint64
	// SkippedTooLarge counts tap-route bodies larger than MaxTapBody.
	SkippedTooLarge uint64
	// SkippedStatus counts non-2xx responses on tap routes.
	SkippedStatus uint64
	// SkippedNotJSON counts tap-route responses with a non-JSON type.
	SkippedNotJSON uint64
	// SkippedIncomplete counts tapped bodies that did not reach EOF: the
	// client aborted or the upstream cut the body short.
	SkippedIncomplete uint64
	// SkippedResources counts resources lacking id or state (e.g. a
	// fields= trimmed list) or with fields of the wrong JSON type.
	SkippedResources uint64
	// ParseErrors counts tapped bodies that were not the expected JSON.
	ParseErrors uint64
	// Unchanged counts tapped bodies byte-identical to the previous one
	// for the same request, not parsed again (see lastBodies).
	Unchanged uint64
}

type counters struct {
	requests, refused, upstreamErrors, upstreamCut, tapped, observations,
	tooLarge, status, notJSON, incomplete, resources, parseErrors, unchanged atomic.Uint64
}

// exchangeKey keys the per-request exchange in the request context.
type exchangeKey struct{}

// exchange is the proxy's state for one request, carried from ServeHTTP
// through goproxy to the transport.
type exchange struct {
	received time.Time
	route    route
	w        http.ResponseWriter
	// body is the tap installed on the response, allocated with the
	// exchange (one request has one response).
	body tapBody
}

var _ http.Handler = (*Proxy)(nil)

// New builds a Proxy. goproxy's own (debug-level) request lines are enabled
// only if opts.Logger has debug enabled at this point: they cost a few
// allocations per request, so a level raised later does not turn them on.
func New(opts Options) (*Proxy, error) {
	up := opts.Upstream
	if up == nil {
		return nil, errors.New("proxy upstream is not set")
	}
	if up.Scheme != "http" && up.Scheme != "https" {
		return nil, fmt.Errorf("proxy upstream %q: scheme must be http or https", up.Redacted())
	}
	if up.Host == "" {
		return nil, fmt.Errorf("proxy upstream %q has no host", up.Redacted())
	}
	if up.User != nil || up.RawQuery != "" || up.Fragment != "" {
		return nil, fmt.Errorf("proxy upstream %q: only scheme, host and path are allowed", up.Redacted())
	}
	if opts.MaxTapBody < 0 {
		return nil, fmt.Errorf("proxy max tap body %d is negative", opts.MaxTapBody)
	}
	p := &Proxy{
		up:        &url.URL{Scheme: up.Scheme, Host: up.Host, Path: strings.TrimSuffix(up.Path, "/"), RawPath: strings.TrimSuffix(up.RawPath, "/")},
		prefix:    normalizePrefix(opts.PathPrefix),
		maxTap:    opts.MaxTapBody,
		rt:        opts.Transport,
		obs:       opts.Observer,
		workbooks: opts.Workbooks,
		log:       opts.Logger,
		now:       opts.Now,
	}
	if p.maxTap == 0 {
		p.maxTap = DefaultMaxTapBody
	}
	if p.log == nil {
		p.log = discard
	}
	if p.now == nil {
		p.now = time.Now
	}
	var tr *http.Transport
	if p.rt == nil {
		t, err := NewTransport(TransportOptions{})
		if err != nil {
			return nil, err
		}
		p.rt, tr = t, t
	} else if t, ok := p.rt.(*http.Transport); ok {
		tr = t
	} else {
		// Every round trip goes through ctx.RoundTripper; goproxy's Tr is
		// only a fallback that must not be the env-honouring default.
		tr, _ = NewTransport(TransportOptions{})
	}

	gp := goproxy.NewProxyHttpServer()
	gp.Tr = tr
	gp.Logger = goproxyLogger{p.log}
	gp.Verbose = p.log.Enabled(context.Background(), slog.LevelDebug)
	gp.NonproxyHandler = http.HandlerFunc(p.toUpstream)
	// ServeHTTP refuses CONNECT before goproxy sees it; this is the second
	// lock on the same door.
	gp.OnRequest().HandleConnect(goproxy.AlwaysReject)
	gp.OnRequest().DoFunc(p.onRequest)
	gp.OnResponse().DoFunc(p.onResponse)
	p.gp = gp
	p.toMistral = goproxy.RoundTripperFunc(p.roundTrip)
	return p, nil
}

// Stats returns a snapshot of the counters.
func (p *Proxy) Stats() Stats {
	c := &p.c
	return Stats{
		Requests:          c.requests.Load(),
		Refused:           c.refused.Load(),
		UpstreamErrors:    c.upstreamErrors.Load(),
		UpstreamCut:       c.upstreamCut.Load(),
		Tapped:            c.tapped.Load(),
		Observations:      c.observations.Load(),
		SkippedTooLarge:   c.tooLarge.Load(),
		SkippedStatus:     c.status.Load(),
		SkippedNotJSON:    c.notJSON.Load(),
		SkippedIncomplete: c.incomplete.Load(),
		SkippedResources:  c.resources.Load(),
		ParseErrors:       c.parseErrors.Load(),
		Unchanged:         c.unchanged.Load(),
	}
}

// Wait blocks until every tapped body has been parsed and observed and
// every WorkbooksChanged call has returned. Call it after the server has
// stopped, so that the last observations reach the tracker.
func (p *Proxy) Wait() { p.inflight.Wait() }

// ServeHTTP forwards r to Mistral. It refuses what would make the sidecar
// an open proxy, then hands goproxy the request already pointed at the
// upstream (see toUpstream), so goproxy runs the hooks and the round trip
// in a single pass.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.c.requests.Add(1)
	received := p.now()
	if r.Method == http.MethodConnect {
		p.c.refused.Add(1)
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		p.writeFault(w, http.StatusMethodNotAllowed, "Client", "CONNECT is not supported: this is a reverse proxy for Mistral only")
		return
	}
	u := r.URL
	if u.IsAbs() || u.Host != "" {
		rel, ok := p.relative(u)
		if !ok {
			p.c.refused.Add(1)
			p.log.Debug("refused absolute-URL request for a foreign host", "method", r.Method, "host", u.Host)
			p.writeFault(w, http.StatusForbidden, "Client", "not an open proxy: only "+p.up.Host+" is served")
			return
		}
		u = rel
	}
	if !strings.HasPrefix(u.Path, "/") {
		p.c.refused.Add(1)
		p.writeFault(w, http.StatusBadRequest, "Client", "request target must be a path")
		return
	}
	if climbsAboveRoot(u) {
		p.c.refused.Add(1)
		p.log.Debug("refused a request path that climbs above the API root", "method", r.Method)
		p.writeFault(w, http.StatusBadRequest, "Client", "request path climbs above the API root with '..' segments")
		return
	}
	x := &exchange{received: received, route: classify(p.prefix, r.Method, u.Path), w: w}
	// WithContext is a shallow copy: the server's request is not mutated.
	out := r.WithContext(context.WithValue(r.Context(), exchangeKey{}, x))
	out.URL = u
	p.toUpstream(w, out)
	if err := x.body.upErr; err != nil {
		p.abortCut(w, out, err)
	}
}

// abortCut ends a response whose upstream body was cut short. What arrived
// is flushed to the client, then the handler panics with
// http.ErrAbortHandler, so the server closes the connection without ending
// the response: the client sees the truncated body fail (a missing last
// chunk, or fewer bytes than Content-Length) exactly as it would from
// Mistral directly, never a shorter body that looks complete.
func (p *Proxy) abortCut(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() == nil {
		p.c.upstreamCut.Add(1)
		p.log.Warn("upstream cut the response body short; aborting the response", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	_ = http.NewResponseController(w).Flush()
	panic(http.ErrAbortHandler)
}

// relative turns an absolute-form request target (a client using the
// sidecar as a forward proxy) into the client-side relative path, if it
// names the upstream and lies under its base path.
func (p *Proxy) relative(u *url.URL) (*url.URL, bool) {
	if u.Scheme != "" && u.Scheme != "http" && u.Scheme != "https" {
		return nil, false
	}
	if hostPort(u.Scheme, u.Host) != hostPort(p.up.Scheme, p.up.Host) {
		return nil, false
	}
	path := u.Path
	if p.up.Path != "" {
		rest, ok := strings.CutPrefix(path, p.up.Path)
		if !ok || (rest != "" && rest[0] != '/') {
			return nil, false
		}
		path = rest
	}
	if path == "" {
		path = "/"
	}
	return &url.URL{Path: path, RawQuery: u.RawQuery}, true
}

// hostPort canonicalizes host[:port] for comparison.
func hostPort(scheme, host string) string {
	host = strings.ToLower(host)
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	port := "80"
	if scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port)
}

// toUpstream points a relative request (which it owns) at the upstream and
// passes it to goproxy, which runs the hooks and the round trip. ServeHTTP
// calls it directly: going through goproxy's NonproxyHandler first (the
// idiom of goproxy's examples/transparent, issue #261) would cost a second
// pass through goproxy's handler per request (a ProxyCtx and the arguments
// of its request log line, URL.String() included, which goproxy evaluates
// even when not verbose). It stays the NonproxyHandler so that a relative
// request reaching goproxy by any other way is still forwarded, never
// answered with goproxy's text 500.
// r.Host keeps the client's value so Mistral's `next` links name the proxy.
func (p *Proxy) toUpstream(w http.ResponseWriter, r *http.Request) {
	u := *r.URL
	u.Scheme, u.Host = p.up.Scheme, p.up.Host
	u.Path, u.RawPath = joinURLPath(p.up, r.URL)
	r.URL = &u
	p.gp.ServeHTTP(w, r)
}

// joinURLPath joins the upstream base path and the request path without
// cleaning either (url.JoinPath would resolve dot segments and change what
// Mistral receives). From net/http/httputil.
func joinURLPath(a, b *url.URL) (path, rawpath string) {
	if a.RawPath == "" && b.RawPath == "" {
		return singleJoiningSlash(a.Path, b.Path), ""
	}
	apath, bpath := a.EscapedPath(), b.EscapedPath()
	aslash, bslash := strings.HasSuffix(apath, "/"), strings.HasPrefix(bpath, "/")
	switch {
	case aslash && bslash:
		return a.Path + b.Path[1:], apath + bpath[1:]
	case !aslash && !bslash:
		return a.Path + "/" + b.Path, apath + "/" + bpath
	}
	return a.Path + b.Path, apath + bpath
}

func singleJoiningSlash(a, b string) string {
	aslash, bslash := strings.HasSuffix(a, "/"), strings.HasPrefix(b, "/")
	switch {
	case aslash && bslash:
		return a + b[1:]
	case !aslash && !bslash:
		return a + "/" + b
	}
	return a + b
}

// onRequest strips hop-by-hop request headers (goproxy keeps Keep-Alive and
// the headers named in Connection, then deletes Connection itself, so this
// must run first) and routes the round trip through p.roundTrip.
func (p *Proxy) onRequest(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	removeHopByHop(r.Header)
	ctx.RoundTripper = p.toMistral
	return r, nil
}

// roundTrip sends the request to Mistral, strips hop-by-hop response
// headers and installs the tap on the body.
func (p *Proxy) roundTrip(req *http.Request, _ *goproxy.ProxyCtx) (*http.Response, error) {
	if req.URL.Host != p.up.Host || req.URL.Scheme != p.up.Scheme {
		// Unreachable through ServeHTTP; refuse rather than proxy anywhere.
		return nil, fmt.Errorf("refusing to proxy to %s", req.URL.Host)
	}
	resp, err := p.rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	removeHopByHop(resp.Header)
	x, _ := req.Context().Value(exchangeKey{}).(*exchange)
	if x != nil {
		p.tap(x, req, resp)
	}
	return resp, nil
}

// tap decides, from the response head, whether the body is captured for
// parsing and whether it must be flushed as it streams.
func (p *Proxy) tap(x *exchange, req *http.Request, resp *http.Response) {
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if ok && x.route.workbooks && p.workbooks != nil {
		p.inflight.Add(1)
		go func() {
			defer p.inflight.Done()
			p.workbooks.WorkbooksChanged()
		}()
	}
	bodyless := req.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent ||
		resp.StatusCode == http.StatusNotModified || resp.StatusCode < 200
	capture := false
	if x.route.tapped() && p.obs != nil && !bodyless {
		switch {
		case !ok:
			p.c.status.Add(1)
		case !jsonType(resp.Header.Get("Content-Type")):
			p.c.notJSON.Add(1)
		case resp.ContentLength > p.maxTap:
			p.c.tooLarge.Add(1)
		default:
			capture = true
		}
	}
	if bodyless {
		// Nothing can be cut short, and a 101's body is the upgraded
		// connection, which goproxy needs unwrapped.
		return
	}
	stream := resp.ContentLength < 0
	b := &x.body
	*b = tapBody{rc: resp.Body, capture: capture, max: p.maxTap}
	if stream {
		rc := http.NewResponseController(x.w)
		b.flush = func() { _ = rc.Flush() }
	}
	if capture {
		b.buf = getBuf(resp.ContentLength)
		b.p, b.route, b.at = p, x.route, x.received
		b.key = req.Method + " " + req.URL.RequestURI()
	}
	resp.Body = b
}

// jsonType reports whether a Content-Type may hold Mistral's JSON. Mistral
// labels some JSON text/plain; an absent type is given the benefit of the
// doubt.
func jsonType(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "text/plain" || strings.HasSuffix(mt, "+json")
}

// inlineCheckMax is the largest tapped body whose unchanged check runs on
// the request's goroutine (see tapped); bigger ones are hashed with the
// parse, off the response path.
const inlineCheckMax = 4 << 10

// tapped runs when a captured body ended. Only a body read to io.EOF is
// parsed, and in a goroutine: the client's last bytes may still be in the
// server's buffers and must not wait for parsing.
func (p *Proxy) tapped(rt route, key string, at time.Time, buf []byte, truncated bool, err error) {
	switch {
	case err != io.EOF:
		p.c.incomplete.Add(1)
		putBuf(buf)
		return
	case truncated:
		p.c.tooLarge.Add(1)
		return
	}
	// A small body is checked against the last one right here: hashing a
	// single execution takes well under a microsecond, less than starting
	// and scheduling a goroutine, and a polled resource that did not
	// change then costs no goroutine at all.
	small := len(buf) <= inlineCheckMax
	if small && p.last.unchanged(key, buf) {
		putBuf(buf)
		p.c.unchanged.Add(1)
		return
	}
	p.inflight.Add(1)
	go func() {
		defer p.inflight.Done()
		if !small && p.last.unchanged(key, buf) {
			putBuf(buf)
			p.c.unchanged.Add(1)
			return
		}
		res, err := parseBody(rt, buf, at)
		// Decoded strings are copies: the buffer is free again.
		putBuf(buf)
		if err != nil {
			p.c.parseErrors.Add(1)
			p.log.Debug("tapped body is not the expected JSON", "kind", rt.kind, "list", rt.list, "bytes", len(buf), "err", err)
			return
		}
		p.c.tapped.Add(1)
		p.c.resources.Add(uint64(res.skipped))
		if bo, ok := p.obs.(BatchObserver); ok {
			bo.ObserveAll(res.obs)
		} else {
			for _, o := range res.obs {
				p.obs.Observe(o)
			}
		}
		p.c.observations.Add(uint64(len(res.obs)))
	}()
}

// onResponse maps a failed round trip (goproxy passes resp == nil, with the
// error in ctx.Error) to a Mistral-style 502 instead of goproxy's text 500.
func (p *Proxy) onResponse(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
	if resp != nil {
		return resp
	}
	reason := "no response from the Mistral API"
	if ctx.Error != nil {
		err := ctx.Error
		// url.Error repeats the URL, query string included; keep the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		reason = "Mistral API unreachable: " + err.Error()
	}
	if ctx.Req.Context().Err() != nil {
		// The client went away; nobody reads this answer.
		p.log.Debug("client left before the upstream answered", "method", ctx.Req.Method, "path", ctx.Req.URL.Path)
	} else {
		p.c.upstreamErrors.Add(1)
		p.log.Warn("upstream round trip failed", "method", ctx.Req.Method, "path", ctx.Req.URL.Path, "err", reason)
	}
	return goproxy.NewResponse(ctx.Req, "application/json", http.StatusBadGateway, faultBody("Server", reason))
}

// faultBody renders Mistral's error body (WSME format_exception), with the
// faultstring marked as coming from mistral-tap.
func faultBody(code, reason string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode("mistral-tap: " + reason) // a string always encodes
	return fmt.Sprintf(`{"faultcode": %q, "faultstring": %s, "debuginfo": null}`, code, bytes.TrimSpace(b.Bytes()))
}

func (p *Proxy) writeFault(w http.ResponseWriter, status int, code, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, faultBody(code, reason))
}
