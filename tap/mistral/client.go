package mistral

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Options configure a Client.
type Options struct {
	// BaseURL is Mistral's API root, the part before /v2 (upstream plus
	// proxy.path_prefix). Required.
	BaseURL *url.URL
	// Headers are set on every request (e.g. a static X-Auth-Token).
	// Secrets. Default none.
	Headers map[string]string
	// Keystone, when its AuthURL is set, authenticates every request.
	// Default: no Keystone.
	Keystone Keystone
	// PageSize is the `limit` of every list request. Default 500.
	PageSize int
	// DialTimeout bounds connecting to Mistral and Keystone when
	// HTTPClient is nil. Default 5s.
	DialTimeout time.Duration
	// HTTPClient makes the requests to Mistral and Keystone. Default: a
	// client with a 30s timeout that ignores HTTP_PROXY (a sidecar must not
	// loop through a proxy) and keeps up to 4 idle connections.
	HTTPClient *http.Client
	// Now is the clock of LastContact and of token renewal. Default
	// time.Now.
	Now func() time.Time
}

// DefaultPageSize is Options.PageSize's default.
const DefaultPageSize = 500

// maxPages bounds one list so that a misbehaving engine (a marker that never
// advances) cannot trap its caller.
const maxPages = 10000

// maxBody bounds one response: a page is at most PageSize small rows, a
// workbook one definition.
const maxBody = 256 << 20

// Client talks to Mistral's API. Create it with New.
type Client struct {
	base     url.URL
	headers  map[string]string
	pageSize int
	http     *http.Client
	tokens   *tokenSource // nil without Keystone
	now      func() time.Time
	shared   *shared // common to the Client and its InProject clients
}

// shared is the state a Client and the clients InProject derives from it
// have in common.
type shared struct {
	creds Keystone // the home credentials; AuthURL "" without Keystone
	home  *Client

	mu          sync.Mutex
	lastContact time.Time
	projects    map[string]*Client // project id → its client
	names       map[string]string  // Projects' last answer, id → name
	namesAt     time.Time
}

// New checks the options and returns a Client.
func New(o Options) (*Client, error) {
	if o.BaseURL == nil || o.BaseURL.Host == "" {
		return nil, errors.New("mistral: BaseURL with a host is required")
	}
	if o.PageSize <= 0 {
		o.PageSize = DefaultPageSize
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{
			Timeout: 30 * time.Second,
			Transport: &http.Transport{
				Proxy:               nil,
				DialContext:         (&net.Dialer{Timeout: o.DialTimeout}).DialContext,
				MaxIdleConnsPerHost: 4,
				IdleConnTimeout:     90 * time.Second,
			},
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Client{base: *o.BaseURL, headers: o.Headers, pageSize: o.PageSize, http: o.HTTPClient, now: o.Now}
	c.base.Path = strings.TrimSuffix(c.base.Path, "/")
	c.shared = &shared{creds: o.Keystone, home: c, projects: map[string]*Client{}}
	if o.Keystone.AuthURL != "" {
		c.tokens = newTokenSource(o.Keystone, o.HTTPClient, o.Now)
	}
	return c, nil
}

// LastContact is when the engine last answered a request with a 2xx; zero
// before the first.
func (c *Client) LastContact() time.Time {
	c.shared.mu.Lock()
	defer c.shared.mu.Unlock()
	return c.shared.lastContact
}

// Error is a non-2xx answer from Mistral.
type Error struct {
	Path   string // request path as sent, without the query
	Status int
	// Fault is Mistral's faultstring, or a short excerpt of the body.
	Fault string
}

func (e *Error) Error() string {
	if e.Fault == "" {
		return fmt.Sprintf("mistral: GET %s: engine answered %d", e.Path, e.Status)
	}
	return fmt.Sprintf("mistral: GET %s: engine answered %d: %s", e.Path, e.Status, e.Fault)
}

// queryReplacer keeps ':' and ',' readable in queries (they are legal
// there) and spells a space %20 rather than '+': Mistral parses
// "updated_at=gte:2024-05-01 10:00:00" either way, but %20 is what its own
// next links and the CLI use.
var queryReplacer = strings.NewReplacer("+", "%20", "%3A", ":", "%2C", ",")

// get does GET <base>/v2<path>?q, path escaped, and decodes the JSON body
// into out.
func (c *Client) get(ctx context.Context, path string, q url.Values, out any) error {
	u := c.base
	u.RawPath = c.base.EscapedPath() + "/v2" + path
	p, err := url.PathUnescape(u.RawPath)
	if err != nil {
		return fmt.Errorf("mistral: bad path %q: %w", u.RawPath, err)
	}
	u.Path = p
	u.RawQuery = queryReplacer.Replace(q.Encode())
	resp, err := c.send(ctx, u.String())
	if err == nil && resp.StatusCode == http.StatusUnauthorized && c.tokens != nil {
		// A token revoked before its expiry: renew and retry once.
		drain(resp)
		c.tokens.invalidate()
		resp, err = c.send(ctx, u.String())
	}
	if err != nil {
		return fmt.Errorf("mistral: GET %s: %w", u.EscapedPath(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("mistral: reading GET %s: %w", u.EscapedPath(), err)
	}
	if resp.StatusCode/100 != 2 {
		return &Error{Path: u.EscapedPath(), Status: resp.StatusCode, Fault: faultString(body)}
	}
	c.shared.mu.Lock()
	c.shared.lastContact = c.now()
	c.shared.mu.Unlock()
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("mistral: GET %s: malformed JSON from the engine: %w", u.EscapedPath(), err)
	}
	return nil
}

// send makes one request with the headers and the current token.
func (c *Client) send(ctx context.Context, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "mistral-tap")
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	if c.tokens != nil {
		tok, err := c.tokens.token(ctx)
		if err != nil {
			return nil, err
		}
		req.Header.Set("X-Auth-Token", tok)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// url.Error repeats the URL with its query; the path is named by
		// the caller.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("engine unreachable: %w", err)
	}
	return resp, nil
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
}

// faultString extracts Mistral's error message, or a short excerpt.
func faultString(body []byte) string {
	var f struct {
		Fault string `json:"faultstring"`
	}
	if json.Unmarshal(body, &f) == nil && f.Fault != "" {
		return f.Fault
	}
	if len(body) > 200 {
		body = body[:200]
	}
	return strings.TrimSpace(string(body))
}
