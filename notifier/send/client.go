package send

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	retryablehttp "github.com/hashicorp/go-retryablehttp"

	"github.com/mistral-tap/mistral-tap/notifier/sign"
	"github.com/mistral-tap/mistral-tap/notifier/ssrf"
)

// Defaults applied where a Request or Options leaves a value at zero.
const (
	DefaultTimeout             = 10 * time.Second
	DefaultRetryWaitMin        = 200 * time.Millisecond
	DefaultRetryWaitMax        = 5 * time.Second
	DefaultMaxIdleConnsPerHost = 32
	// MaxDrain is how much of a response body is read (and discarded) so
	// that the connection can be reused; larger bodies cost a connection.
	MaxDrain = 64 << 10
	// MaxExcerpt is how much of a failed response's body goes into
	// Result.Err, for dead-letter diagnostics.
	MaxExcerpt = 512
)

// Options configures a Client.
type Options struct {
	// AllowNetworks lists CIDRs (or addresses) that may be reached although
	// internal; see notifier/ssrf. Everything internal is refused otherwise.
	AllowNetworks []string
	// Logger receives debug lines per attempt; nil discards. URLs are
	// redacted and header values are never logged.
	Logger *slog.Logger
	// Now is the clock for webhook-timestamp and Retry-After dates; nil
	// means time.Now.
	Now func() time.Time
	// Version goes into User-Agent: mistral-tap/<Version>; "" means "dev".
	Version string
	// RootCAs verifies https receivers; nil means the system roots.
	RootCAs *x509.CertPool
	// MaxIdleConnsPerHost sizes the keep-alive pool per receiver; 0 means
	// DefaultMaxIdleConnsPerHost.
	MaxIdleConnsPerHost int
}

// Client sends webhooks. It holds one connection pool for every callback,
// whose dialer refuses internal addresses at connect time. It is safe for
// concurrent use; Close releases idle connections.
type Client struct {
	hc  *http.Client
	tr  *http.Transport
	log *slog.Logger
	now func() time.Time
	ua  string
}

// New builds a Client. The error names a bad allow_networks entry.
func New(o Options) (*Client, error) {
	guard, err := ssrf.New(o.AllowNetworks)
	if err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	perHost := o.MaxIdleConnsPerHost
	if perHost <= 0 {
		perHost = DefaultMaxIdleConnsPerHost
	}
	dialer := &net.Dialer{
		Timeout:   10 * time.Second, // the attempt timeout usually fires first
		KeepAlive: 30 * time.Second,
		// The guard checks the resolved address of every connection,
		// including each address tried by Happy Eyeballs.
		Control: guard.Control,
	}
	tr := &http.Transport{
		// Never an environment proxy: it would bypass the dial-time guard
		// (we would check the proxy's address, not the receiver's).
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          8 * perHost,
		MaxIdleConnsPerHost:   perHost,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	version := o.Version
	if version == "" {
		version = "dev"
	}
	return &Client{
		hc: &http.Client{
			Transport: keepPool{tr},
			// Redirects are not followed: a 3xx is the receiver's answer
			// (a permanent failure), and following it could lead anywhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		tr:  tr,
		log: log,
		now: now,
		ua:  "mistral-tap/" + version,
	}, nil
}

// The notifier's Sender interface, as design.md states it.
var _ interface {
	Send(context.Context, Request) Result
} = (*Client)(nil)

// Close closes idle connections. Sends in flight are not affected.
func (c *Client) Close() { c.tr.CloseIdleConnections() }

// keepPool hides the transport's CloseIdleConnections from http.Client:
// retryablehttp calls HTTPClient.CloseIdleConnections on every give-up path
// (even with an ErrorHandler), which would empty the pool shared by every
// callback each time one receiver fails (go-retryablehttp #98, #237).
type keepPool struct{ rt http.RoundTripper }

func (k keepPool) RoundTrip(r *http.Request) (*http.Response, error) { return k.rt.RoundTrip(r) }

// Send makes up to 1+r.Retries attempts to deliver r and classifies the
// result. Each attempt carries webhook-id (r.EventID, the same every time),
// its own webhook-timestamp and, with secrets, its own webhook-signature.
// Send never panics on a bad request: it reports Permanent. ctx bounds the
// whole series, waits included; cancelling it yields Retryable.
func (c *Client) Send(ctx context.Context, r Request) Result {
	start := time.Now()
	hide := newConcealer(r.Conceal)
	res := c.send(ctx, r, hide)
	res.Err = hide.err(res.Err)
	res.Duration = time.Since(start)
	return res
}

// send validates r, runs the series of attempts and classifies what the
// last one got: a response (classifyResponse) or a transport error
// (classifyError). Send conceals the secrets of the returned error.
func (c *Client) send(ctx context.Context, r Request, hide concealer) Result {
	o, err := c.prepare(ctx, r, hide)
	if err != nil {
		return Result{Outcome: Permanent, Err: err}
	}
	var attempts atomic.Int32
	resp, err := c.retrier(ctx, r, o, &attempts).Do(o.req)
	res := Result{Attempts: int(attempts.Load())}
	if resp != nil {
		return c.classifyResponse(res, resp, o.method, o.redacted)
	}
	return classifyError(res, err, hide, o.method, o.redacted)
}

// outgoing is a validated Request ready for the series of attempts.
type outgoing struct {
	req    *retryablehttp.Request
	method string // r.Method, POST when empty
	// body is what each attempt sends and signs: nil for the methods
	// that carry none (noBody), whatever Request.Body holds.
	body     []byte
	signer   *sign.Signer
	redacted string // the URL as errors and logs may show it
}

// prepare checks r and builds its request. An error makes the delivery
// Permanent: the same request would fail the same way every time.
func (c *Client) prepare(ctx context.Context, r Request, hide concealer) (outgoing, error) {
	o := outgoing{method: r.Method, body: r.Body, redacted: hide.url(r.URL)}
	if o.method == "" {
		o.method = http.MethodPost
	}
	if err := checkURL(r.URL, o.redacted); err != nil {
		return outgoing{}, err
	}
	if noBody(o.method) {
		o.body = nil
	}
	signer, err := sign.NewSigner(r.Secrets)
	if err != nil {
		return outgoing{}, fmt.Errorf("send: %w", err)
	}
	o.signer = signer
	req, err := retryablehttp.NewRequestWithContext(ctx, o.method, r.URL, o.body)
	if err != nil {
		return outgoing{}, fmt.Errorf("send: building %s request to %s: %w", o.method, o.redacted, hide.err(err))
	}
	// Copies of the callback's header values: every delivery of the
	// callback shares r.Header, and the attempts write to this map.
	for k, vs := range r.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	if o.body == nil {
		req.Header.Del("Content-Type")
	}
	req.Header.Set("User-Agent", c.ua)
	if r.EventID != "" {
		req.Header.Set("webhook-id", r.EventID)
	}
	o.req = req
	return o, nil
}

// checkURL accepts absolute http and https URLs. Its errors show the
// redacted URL only: url.Parse's own error would quote the raw one.
func checkURL(raw, redacted string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("send: invalid URL %s", redacted)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("send: URL %s: want an absolute http or https URL", redacted)
	}
	return nil
}

// retrier configures the series of attempts for r: its timeout, waits
// and retries, our retry and backoff policies, and the per-attempt stamp,
// which counts the attempts into attempts.
func (c *Client) retrier(ctx context.Context, r Request, o outgoing, attempts *atomic.Int32) *retryablehttp.Client {
	minWait, maxWait := retryWaits(r.RetryWaitMin, r.RetryWaitMax)
	return &retryablehttp.Client{
		HTTPClient:   c.attemptClient(r.Timeout),
		Logger:       nil, // its default logger spams; we log per attempt (stamp)
		RetryWaitMin: minWait,
		RetryWaitMax: maxWait,
		RetryMax:     max(r.Retries, 0),
		CheckRetry:   checkRetry,
		Backoff:      c.backoff,
		// Return the last response instead of draining it, so its status,
		// Retry-After and body excerpt reach the Result.
		ErrorHandler: func(resp *http.Response, err error, _ int) (*http.Response, error) { return resp, err },
		// RequestLogHook runs before every attempt, the first included
		// (PrepareRetry only before retries), on the request about to be
		// sent: the place to stamp and sign each attempt.
		RequestLogHook: c.stamp(ctx, r, o, attempts),
	}
}

// attemptClient is a copy of the shared client with this callback's
// timeout (DefaultTimeout when not positive): Timeout on http.Client
// bounds each attempt (headers and body), while ctx bounds the series.
// The copy shares the transport, hence the pool.
func (c *Client) attemptClient(timeout time.Duration) *http.Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	hc := *c.hc
	hc.Timeout = timeout
	return &hc
}

// retryWaits applies the defaults to a Request's backoff bounds, and
// raises a maximum below the minimum to it (backoff caps at the maximum).
func retryWaits(minWait, maxWait time.Duration) (time.Duration, time.Duration) {
	if minWait <= 0 {
		minWait = DefaultRetryWaitMin
	}
	if maxWait <= 0 {
		maxWait = DefaultRetryWaitMax
	}
	if maxWait < minWait {
		maxWait = minWait
	}
	return minWait, maxWait
}

// stamp returns the hook that readies each attempt: it counts it, gives it
// its own webhook-timestamp and, with secrets, its own webhook-signature
// (a receiver rejects stale timestamps, so a retry cannot reuse the first
// attempt's), and logs it at debug level.
func (c *Client) stamp(ctx context.Context, r Request, o outgoing, attempts *atomic.Int32) retryablehttp.RequestLogHook {
	return func(_ retryablehttp.Logger, hr *http.Request, i int) {
		attempts.Add(1)
		if i > 0 {
			// The header map is shared with the previous attempt's
			// request, which the transport may still hold: write to a
			// copy. The first attempt owns the map built by prepare.
			hr.Header = hr.Header.Clone()
		}
		ts := c.now()
		hr.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
		if sig := o.signer.Sign(r.EventID, ts, o.body); sig != "" {
			hr.Header.Set("webhook-signature", sig)
		}
		// Guarded: the arguments would be boxed on every attempt even
		// with debug off.
		if c.log.Enabled(ctx, slog.LevelDebug) {
			c.log.Debug("webhook attempt", "callback", r.Callback, "event_id", r.EventID, "attempt", i+1, "method", o.method, "url", o.redacted)
		}
	}
}

// classifyError classifies a series that ended without a response. Only
// an SSRF refusal is Permanent: the guard answers the same every time.
func classifyError(res Result, err error, hide concealer, method, redacted string) Result {
	if err == nil {
		err = errors.New("no response") // not expected from retryablehttp
	}
	err = hide.err(err)
	res.Err = fmt.Errorf("send: %s %s failed after %d attempt(s): %w", method, redacted, res.Attempts, err)
	switch {
	case errors.Is(err, ssrf.ErrForbidden):
		res.Outcome = Permanent
	default:
		// Connection errors, timeouts, TLS failures (a receiver can fix its
		// certificate) and a cancelled ctx (shutdown): try again later.
		res.Outcome = Retryable
	}
	return res
}

func (c *Client) classifyResponse(res Result, resp *http.Response, method, redacted string) Result {
	defer resp.Body.Close()
	res.Status = resp.StatusCode
	if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), c.now()); ok {
		res.RetryAfter = d
	}
	buf := make([]byte, MaxExcerpt)
	n, _ := io.ReadFull(resp.Body, buf)
	// Drain a bounded amount so the connection goes back to the pool.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxDrain-int64(n)))

	s := resp.StatusCode
	switch {
	case s >= 200 && s < 300:
		res.Outcome = Delivered
		return res
	case s == http.StatusGone:
		res.Outcome = Gone
	case retryableStatus(s):
		res.Outcome = Retryable
	default:
		res.Outcome = Permanent
	}
	res.Err = &StatusError{Method: method, URL: redacted, Status: s, Attempts: res.Attempts, Excerpt: excerpt(buf[:n])}
	return res
}

// noBody reports the methods whose requests carry no body: the facts go
// into a templated URL instead (GET http://host/log?execution_id=...).
func noBody(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodDelete
}

// StatusError is Result.Err for a non-2xx answer.
type StatusError struct {
	Method, URL string // URL is redacted
	Status      int
	Attempts    int
	// Excerpt is the start of the response body, made printable.
	Excerpt string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("send: %s %s: receiver answered %d %s after %d attempt(s)", e.Method, e.URL, e.Status, http.StatusText(e.Status), e.Attempts)
	if e.Excerpt != "" {
		msg += ": " + strconv.Quote(e.Excerpt)
	}
	return msg
}

func excerpt(b []byte) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

// retryableStatus: 408 Request Timeout, 425 Too Early, 429 Too Many
// Requests and every 5xx. 501 Not Implemented is included although it is
// rarely transient: for a webhook it usually means a receiver being
// deployed or misrouted, and the outbox's max_age bounds the cost.
func retryableStatus(s int) bool {
	return s == http.StatusRequestTimeout || s == http.StatusTooEarly ||
		s == http.StatusTooManyRequests || (s >= 500 && s <= 599)
}

// checkRetry decides whether retryablehttp makes another attempt.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		return retryableErr(err), nil
	}
	return retryableStatus(resp.StatusCode), nil
}

// retryableErr: connection errors and timeouts are retried; an SSRF
// refusal or a certificate problem gives the same answer every time.
func retryableErr(err error) bool {
	if errors.Is(err, ssrf.ErrForbidden) {
		return false
	}
	var (
		unknownCA   x509.UnknownAuthorityError
		invalidCert x509.CertificateInvalidError
		hostname    x509.HostnameError
		verify      *tls.CertificateVerificationError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &invalidCert) || errors.As(err, &hostname) || errors.As(err, &verify) {
		return false
	}
	return true
}

// backoff is a jittered exponential backoff: attempt n waits a random
// duration in [d/2, d] with d = min·2ⁿ capped at max, and never less than
// min. A Retry-After on a 429 or 503 replaces it, but is capped at max too
// (retryablehttp's own backoffs would wait an hour for "Retry-After: 3600").
func (c *Client) backoff(minWait, maxWait time.Duration, n int, resp *http.Response) time.Duration {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), c.now()); ok {
			return min(max(d, minWait), maxWait)
		}
	}
	d := maxWait
	if n < 32 {
		if e := minWait << n; e > 0 && e < maxWait {
			d = e
		}
	}
	d = d/2 + rand.N(d/2+1)
	return min(max(d, minWait), maxWait)
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date
// (RFC 9110 10.2.3). A date in the past gives 0.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0, false
		}
		const maxSeconds = int64(1<<63-1) / int64(time.Second)
		return time.Duration(min(s, maxSeconds)) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}
