package listeners

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/mistral-tap/mistral-tap/matcher"
	"github.com/mistral-tap/mistral-tap/notifier/payload"
	"github.com/mistral-tap/mistral-tap/notifier/sign"
	"github.com/mistral-tap/mistral-tap/tap/event"

	"golang.org/x/net/http/httpguts"
)

// Scope kinds: the body field that names what a listener listens to.
const (
	ScopeExecution = "execution_id"      // the execution, its tasks, its sub-workflows and theirs
	ScopeTask      = "task_execution_id" // one task execution's events
	ScopeWorkflow  = "workflow_name"     // a glob on workflow_name (path.Match), as file callbacks
	ScopeWorkbook  = "workbook_name"     // workflows named "<workbook>.<name>"
)

// ScopeKinds lists the scope fields in the order error messages show them.
var ScopeKinds = []string{ScopeExecution, ScopeTask, ScopeWorkflow, ScopeWorkbook}

// Scope is what a listener listens to: one of the Scope* kinds and its value.
type Scope struct{ Kind, Value string }

// Limits of a listener body. A header map is small: it carries a token or
// two, and it is sealed and stored per listener.
const (
	MaxBody        = 64 << 10
	maxHeaders     = 32
	maxHeaderName  = 256
	maxHeaderValue = 4096
	maxHeaderTotal = 16 << 10
	maxURL         = 2048
	maxSecret      = 512
	maxScopeValue  = 255 // Mistral's names and ids are at most 255 characters
	maxEvents      = 64
)

// Methods a listener may use: the body is the event, so the method must
// carry one.
var Methods = []string{"POST", "PUT", "PATCH"}

// Formats a listener may use. "template" needs a body template and "oslo"
// an AMQP transport, neither of which an API listener has.
var Formats = []string{payload.FormatMistral, payload.FormatEnvelope, payload.FormatCloudEvents}

// hop-by-hop and transport headers a listener may not set (RFC 9110
// §7.6.1), and the signature headers mistral-tap sets itself.
var forbiddenHeaders = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-authenticate": true, "proxy-authorization": true,
	"proxy-connection": true, "te": true, "trailer": true, "transfer-encoding": true, "upgrade": true,
	"host": true, "content-length": true,
	"webhook-id": true, "webhook-timestamp": true, "webhook-signature": true,
}

// Body is a listener as a client posts it.
type Body struct {
	ExecutionID     *string           `json:"execution_id"`
	TaskExecutionID *string           `json:"task_execution_id"`
	WorkflowName    *string           `json:"workflow_name"`
	WorkbookName    *string           `json:"workbook_name"`
	Events          []string          `json:"events"`
	URL             string            `json:"url"`
	Method          string            `json:"method"`
	Headers         map[string]string `json:"headers"`
	Format          string            `json:"format"`
	Secret          *string           `json:"secret"`
	ExpiresAt       *string           `json:"expires_at"`
}

// Request is a checked Body: what a registration stores, once authorized.
type Request struct {
	Scope     Scope
	Events    []string // as written, trimmed
	Spec      Spec
	ExpiresAt time.Time // zero: never
	// SecretGenerated is true when the client gave no secret and Spec.Secret
	// was generated: the create response shows it, once.
	SecretGenerated bool
}

// TTL bounds a listener's lifetime.
type TTL struct {
	// Default applies when the body has no expires_at; 0: none (then Max
	// applies, if set).
	Default time.Duration
	// Max caps expires_at; 0: no cap.
	Max time.Duration
}

// BadRequest is a body that cannot be a listener; Error is the fault
// string. It never quotes a header value, the secret, or the URL's
// credentials.
type BadRequest struct{ Msg string }

func (e *BadRequest) Error() string { return e.Msg }

func bad(format string, a ...any) error { return &BadRequest{Msg: fmt.Sprintf(format, a...)} }

// Decode reads one JSON object into a Body, strictly: unknown fields,
// trailing data and wrong types are refused with a message naming them.
func Decode(data []byte) (Body, error) {
	var b Body
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return Body{}, decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Body{}, bad("malformed JSON: data after the listener object")
	}
	return b, nil
}

func decodeError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch msg := err.Error(); {
	case errors.As(err, &syn):
		return bad("malformed JSON at byte %d: %s", syn.Offset, strings.TrimPrefix(msg, "json: "))
	case errors.As(err, &typ):
		if typ.Field == "" {
			return bad("malformed JSON: the body must be a JSON object")
		}
		return bad("field %s: want %s, got JSON %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return bad("malformed JSON: the body is empty or cut short")
	case strings.HasPrefix(msg, "json: unknown field "):
		f := strings.TrimPrefix(msg, "json: unknown field ")
		return bad("unknown field %s (a listener has one scope of %s, and events, url, method, headers, format, secret, expires_at)",
			f, strings.Join(ScopeKinds, ", "))
	default:
		return bad("malformed JSON: %s", strings.TrimPrefix(msg, "json: "))
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "slice":
		return "a list"
	case "map":
		return "an object"
	case "ptr", "string":
		return "a string"
	}
	return goKind
}

// Check validates b at time now and returns the request to store. It
// reports the first problem, naming the field.
func (b Body) Check(now time.Time, ttl TTL) (Request, error) {
	var r Request
	var err error
	if r.Scope, err = b.scope(); err != nil {
		return Request{}, err
	}
	if r.Events, err = checkEvents(b.Events); err != nil {
		return Request{}, err
	}
	if err := checkURL(b.URL); err != nil {
		return Request{}, err
	}
	r.Spec = Spec{URL: b.URL, Method: strings.ToUpper(strings.TrimSpace(b.Method)), Headers: b.Headers, Format: strings.TrimSpace(b.Format)}
	if r.Spec.Method == "" {
		r.Spec.Method = "POST"
	}
	if !slices.Contains(Methods, r.Spec.Method) {
		return Request{}, bad("method %q: want one of %s", b.Method, strings.Join(Methods, ", "))
	}
	if r.Spec.Format == "" {
		r.Spec.Format = payload.FormatMistral
	}
	if !slices.Contains(Formats, r.Spec.Format) {
		return Request{}, bad("format %q: want one of %s", b.Format, strings.Join(Formats, ", "))
	}
	if err := checkHeaders(b.Headers); err != nil {
		return Request{}, err
	}
	if r.Spec.Secret, r.SecretGenerated, err = checkSecret(b.Secret); err != nil {
		return Request{}, err
	}
	if r.ExpiresAt, err = checkExpiry(b.ExpiresAt, now, ttl); err != nil {
		return Request{}, err
	}
	// The payload package has the last word on what it can render.
	if _, err := payload.New(payload.Spec{Format: r.Spec.Format, Method: r.Spec.Method, Headers: r.Spec.Headers, URL: r.Spec.URL}); err != nil {
		var se *payload.SpecError
		if errors.As(err, &se) && strings.HasPrefix(se.Field, "headers.") {
			return Request{}, bad("header %s: refused", strings.TrimPrefix(se.Field, "headers."))
		}
		return Request{}, bad("cannot render this listener's requests: %v", err)
	}
	return r, nil
}

func (b Body) scope() (Scope, error) {
	var found []Scope
	for _, s := range []struct {
		kind string
		v    *string
	}{{ScopeExecution, b.ExecutionID}, {ScopeTask, b.TaskExecutionID}, {ScopeWorkflow, b.WorkflowName}, {ScopeWorkbook, b.WorkbookName}} {
		if s.v != nil {
			found = append(found, Scope{s.kind, strings.TrimSpace(*s.v)})
		}
	}
	switch {
	case len(found) == 0:
		return Scope{}, bad("no scope: give exactly one of %s", strings.Join(ScopeKinds, ", "))
	case len(found) > 1:
		return Scope{}, bad("two scopes (%s and %s): give exactly one of %s", found[0].Kind, found[1].Kind, strings.Join(ScopeKinds, ", "))
	}
	s := found[0]
	switch {
	case s.Value == "":
		return Scope{}, bad("%s must not be empty", s.Kind)
	case len(s.Value) > maxScopeValue:
		return Scope{}, bad("%s is longer than %d characters", s.Kind, maxScopeValue)
	case strings.ContainsAny(s.Value, "/?#\x00\r\n"):
		// The value goes into a path segment of Mistral's API.
		return Scope{}, bad("%s %q contains a character Mistral's names and ids do not have", s.Kind, s.Value)
	}
	if s.Kind == ScopeWorkflow {
		if err := checkGlob(s.Value); err != nil {
			return Scope{}, err
		}
	}
	return s, nil
}

func checkEvents(names []string) ([]string, error) {
	if names == nil {
		return []string{matcher.SelectAll}, nil
	}
	if len(names) == 0 {
		return nil, bad(`events must list at least one event (e.g. ["*"]); leave it out for every event`)
	}
	if len(names) > maxEvents {
		return nil, bad("events lists %d entries, at most %d", len(names), maxEvents)
	}
	out := make([]string, len(names))
	for i, n := range names {
		if _, err := matcher.ExpandEvent(n); err != nil {
			return nil, bad("events: %v", err)
		}
		out[i] = strings.TrimSpace(n)
	}
	return out, nil
}

func checkURL(raw string) error {
	if strings.TrimSpace(raw) == "" {
		return bad("url is required")
	}
	if len(raw) > maxURL {
		return bad("url is longer than %d characters", maxURL)
	}
	if strings.Contains(raw, "{{") {
		return bad("url must be literal (templates are for file callbacks)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the URL, which may carry credentials.
		var ue *url.Error
		msg := "invalid"
		if errors.As(err, &ue) {
			msg = ue.Err.Error()
		}
		return bad("url is not a URL: %s", msg)
	}
	switch host := u.Hostname(); {
	case u.Scheme != "http" && u.Scheme != "https":
		return bad("url scheme %q: want an absolute http or https URL", u.Scheme)
	case host == "":
		return bad("url has no host")
	case ambiguousIPv4(host):
		return bad("url host %q is an ambiguous numeric IPv4 form; write a dotted quad such as 192.0.2.1, or a DNS name", host)
	}
	return nil
}

// ambiguousIPv4 reports a host some parsers read as an IPv4 address in
// decimal, octal or hex parts ("2130706433", "0x7f.1"), which Go's
// resolver does not: such a listener would only fail.
func ambiguousIPv4(host string) bool {
	labels := strings.Split(strings.TrimSuffix(host, "."), ".")
	last := strings.ToLower(labels[len(labels)-1])
	numeric := last != "" && strings.Trim(last, "0123456789") == ""
	if h, ok := strings.CutPrefix(last, "0x"); ok {
		numeric = strings.Trim(h, "0123456789abcdef") == ""
	}
	if !numeric {
		return false
	}
	a, err := netip.ParseAddr(host)
	return err != nil || !a.Is4()
}

func checkHeaders(h map[string]string) error {
	if len(h) > maxHeaders {
		return bad("headers has %d entries, at most %d", len(h), maxHeaders)
	}
	total := 0
	seen := make(map[string]string, len(h))
	for _, name := range slices.Sorted(maps.Keys(h)) {
		v := h[name]
		total += len(name) + len(v)
		canon := strings.ToLower(name)
		if prev, dup := seen[canon]; dup {
			return bad("headers %s and %s are the same header (names are case-insensitive)", prev, name)
		}
		seen[canon] = name
		switch {
		case !httpguts.ValidHeaderFieldName(name) || len(name) > maxHeaderName:
			return bad("header name %q is not a valid header name", truncate(name, 64))
		case forbiddenHeaders[strings.ToLower(name)]:
			return bad("header %s is set by mistral-tap or the connection, not by a listener", name)
		case len(v) > maxHeaderValue:
			return bad("value of header %s is longer than %d bytes", name, maxHeaderValue)
		case strings.ContainsAny(v, "\r\n\x00"):
			return bad("value of header %s contains a line break or NUL", name)
		case strings.Contains(v, "{{"):
			return bad("value of header %s must be literal (templates are for file callbacks)", name)
		}
	}
	if total > maxHeaderTotal {
		return bad("headers total %d bytes, at most %d", total, maxHeaderTotal)
	}
	return nil
}

func checkSecret(s *string) (string, bool, error) {
	if s == nil {
		g, err := NewSecret()
		return g, true, err
	}
	switch v := *s; {
	case v == "":
		return "", false, bad("secret must not be empty (leave it out to have one generated)")
	case len(v) > maxSecret:
		return "", false, bad("secret is longer than %d bytes", maxSecret)
	case strings.ContainsAny(v, "\r\n\x00"):
		return "", false, bad("secret contains a line break or NUL")
	default:
		if _, err := sign.Key(v); err != nil {
			// sign.Key's errors never quote the secret.
			return "", false, bad("secret: %v", err)
		}
		return v, false, nil
	}
}

// NewSecret returns a Standard Webhooks secret: "whsec_" and the base64 of
// 24 random bytes.
func NewSecret() (string, error) {
	var k [24]byte
	if _, err := rand.Read(k[:]); err != nil {
		return "", fmt.Errorf("listeners: generating a secret: %w", err)
	}
	return sign.Prefix + base64.StdEncoding.EncodeToString(k[:]), nil
}

// ParseTime reads expires_at: Mistral's format (UTC, "2006-01-02
// 15:04:05") or RFC 3339.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(event.TimeLayout, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither Mistral's time format (2006-01-02 15:04:05, UTC) nor RFC 3339", truncate(s, 64))
}

func checkExpiry(raw *string, now time.Time, ttl TTL) (time.Time, error) {
	if raw == nil || *raw == "" {
		switch {
		case ttl.Default > 0:
			return now.Add(ttl.Default).UTC().Truncate(time.Second), nil
		case ttl.Max > 0:
			return now.Add(ttl.Max).UTC().Truncate(time.Second), nil
		}
		return time.Time{}, nil
	}
	t, err := ParseTime(*raw)
	if err != nil {
		return time.Time{}, bad("expires_at: %v", err)
	}
	if !t.After(now) {
		return time.Time{}, bad("expires_at %s is not in the future", t.Format(event.TimeLayout))
	}
	if ttl.Max > 0 && t.After(now.Add(ttl.Max)) {
		return time.Time{}, bad("expires_at %s is later than the longest lifetime allowed (%s, until %s)",
			t.Format(event.TimeLayout), ttl.Max, now.Add(ttl.Max).UTC().Format(event.TimeLayout))
	}
	return t, nil
}

func checkGlob(p string) error {
	if _, err := path.Match(p, ""); err != nil {
		return bad("workflow_name %q is a bad glob: %v", p, err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
