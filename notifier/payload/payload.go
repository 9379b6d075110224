// Package payload renders an event into the HTTP request a callback
// receives: method, URL, headers and body, in one of five formats.
//
//   - "mistral" (the default): exactly the body Mistral's own webhook
//     notifier posts (mistral/notifiers/publishers/webhook.py does
//     requests.post(url, data=json.dumps(data))), byte for byte: the same
//     keys in the same order, null for None, Python's separators ", " and
//     ": " and \uXXXX escapes for every non-ASCII character. A receiver
//     written for Mistral's notifier works unchanged.
//   - "envelope": mistral-tap's own JSON, with the event id, sequence,
//     inferred flag and previous state Mistral does not send (see Envelope).
//   - "cloudevents": CloudEvents 1.0 over HTTP, structured (default) or
//     binary mode, with the envelope as data (see CloudEventType).
//   - "template": a text/template body (see TemplateData and FuncMap).
//   - "oslo": an OpenStack notification for AMQP callbacks (see FormatOslo).
//
// In every format, header values may be templates ("{{ ... }}"), rendered
// per event with the same data as a body template, and so may the URL (with
// each value escaped for its place in the URL, see parseURLTemplate) and an
// AMQP routing key.
//
// This package must not import config: config imports it to validate
// callbacks at load time.
package payload

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// Format names.
const (
	FormatMistral     = "mistral"
	FormatEnvelope    = "envelope"
	FormatCloudEvents = "cloudevents"
	FormatTemplate    = "template"
)

// CloudEvents modes.
const (
	ModeStructured = "structured"
	ModeBinary     = "binary"
)

// Content types.
const (
	ContentTypeJSON        = "application/json"
	ContentTypeCloudEvents = "application/cloudevents+json"
)

// DefaultSource is the CloudEvents source used when Spec.Source is empty.
const DefaultSource = "mistral-tap"

// Spec is what a callback says about its requests.
type Spec struct {
	// Format is "mistral" (default when ""), "envelope", "cloudevents" or
	// "template".
	Format string
	// Method is the HTTP method, a plain string (not a template); default
	// "POST". It is upper-cased.
	Method string
	// Headers are added to every request and override the format's own
	// (Content-Type included). Values may be templates. Values are secrets:
	// errors name the header, never its value.
	Headers map[string]string
	// Template is the body template for format "template".
	Template string
	// CloudEventsMode is "structured" (default when "") or "binary".
	CloudEventsMode string
	// Source is the CloudEvents source attribute, e.g.
	// "mistral-tap://127.0.0.1:8989"; DefaultSource when "".
	Source string
	// URL is the callback's HTTP URL; when it contains "{{" it is a
	// template rendered per event into Message.URL. Values are secrets:
	// errors never quote the URL. Default "" (no URL: an AMQP callback).
	URL string
	// RoutingKey is an AMQP routing key, literal or a template (e.g.
	// "mistral.{{ .Event.Type }}"), rendered per event into Message.Key.
	// Default "".
	RoutingKey string
	// PublisherID is the oslo publisher_id (format "oslo").
	// DefaultPublisherID when "".
	PublisherID string
}

// Message is a rendered notification, ready for a transport.
type Message struct {
	Method string
	// URL is the rendered URL template, "" when Spec.URL is not a
	// template (the callback's URL applies).
	URL    string
	Header http.Header
	Body   []byte
	// Key is the rendered Spec.RoutingKey ("" when none).
	Key string
}

// Formatter renders events for one callback. It is safe for concurrent use.
type Formatter struct {
	format  string
	method  string
	ceMode  string
	source  string
	static  http.Header // format and literal user headers
	dynamic []headerTemplate
	body    *template.Template
	url     *template.Template // nil: the URL is literal
	key     string             // literal routing key, when keyT is nil
	keyT    *template.Template
	// publisher is the oslo publisher_id.
	publisher string
}

type headerTemplate struct {
	name string
	tmpl *template.Template
}

// headers the user may not set: send owns them, or net/http computes them.
var reserved = map[string]bool{
	"Webhook-Id": true, "Webhook-Timestamp": true, "Webhook-Signature": true,
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Connection": true,
}

// New checks s and compiles its templates. A template is parsed and then
// executed against Samples(): it must succeed on at least one sample, and may
// fail on the other only by reaching into the other kind's data (a nil
// .Event.Task or a missing .Payload key), since a callback may well be for
// one kind only. A JSON body template's sample output must be valid JSON.
// Every error is a *SpecError naming the Spec field at fault.
func New(s Spec) (*Formatter, error) {
	f := &Formatter{format: s.Format, static: http.Header{}}
	if f.format == "" {
		f.format = FormatMistral
	}
	if err := f.setFormat(s); err != nil {
		return nil, err
	}
	if s.Format != FormatTemplate && s.Format != "" && s.Template != "" {
		return nil, specErr("template", fmt.Errorf("set, but format is %q (want format: template)", s.Format))
	}
	// The order of these steps is the order errors are reported in.
	for _, step := range []func(Spec) error{f.setMethod, f.setHeaders, f.setBody, f.setURL, f.setRoutingKey} {
		if err := step(s); err != nil {
			return nil, err
		}
	}
	if err := f.trial(); err != nil {
		return nil, err
	}
	return f, nil
}

// setFormat sets what f.format implies: the default Content-Type and the
// format's own settings. Only the format's settings are read here; a field
// of another format is ignored (except a body template, refused by New).
func (f *Formatter) setFormat(s Spec) error {
	switch f.format {
	case FormatMistral, FormatEnvelope, FormatTemplate:
		f.static.Set("Content-Type", ContentTypeJSON)
	case FormatCloudEvents:
		return f.setCloudEvents(s)
	case FormatOslo:
		// oslo.messaging drops notifications of any other content type.
		f.static.Set("Content-Type", ContentTypeJSON)
		f.publisher = cmp.Or(s.PublisherID, DefaultPublisherID)
	default:
		return specErr("format", fmt.Errorf("%q is not one of mistral, envelope, cloudevents, template, oslo", s.Format))
	}
	return nil
}

// setCloudEvents sets the CloudEvents mode, whose Content-Type differs
// (structured mode sends the event itself, binary mode only its data), and
// the source attribute.
func (f *Formatter) setCloudEvents(s Spec) error {
	f.ceMode = cmp.Or(s.CloudEventsMode, ModeStructured)
	switch f.ceMode {
	case ModeStructured:
		f.static.Set("Content-Type", ContentTypeCloudEvents)
	case ModeBinary:
		f.static.Set("Content-Type", ContentTypeJSON)
	default:
		return specErr("cloudevents.mode", fmt.Errorf("%q is not %q or %q", s.CloudEventsMode, ModeStructured, ModeBinary))
	}
	f.source = cmp.Or(s.Source, DefaultSource)
	return nil
}

// setMethod normalises the method so that "post " and "POST" are one
// method, and refuses one net/http would send malformed.
func (f *Formatter) setMethod(s Spec) error {
	f.method = strings.ToUpper(strings.TrimSpace(s.Method))
	if f.method == "" {
		f.method = http.MethodPost
	}
	if !validToken(f.method) {
		return specErr("method", fmt.Errorf("%q is not a valid HTTP method", s.Method))
	}
	return nil
}

// setHeaders checks the user's headers in name order, so that a spec with
// several bad headers always reports the same one, and sorts them into
// literal (f.static) and template (f.dynamic) headers.
func (f *Formatter) setHeaders(s Spec) error {
	names := make([]string, 0, len(s.Headers))
	for name := range s.Headers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := f.setHeader(name, s.Headers[name]); err != nil {
			return err
		}
	}
	return nil
}

// setHeader checks one header; errors name it but never quote value, a
// secret.
func (f *Formatter) setHeader(name, value string) error {
	if !validToken(name) {
		return specErr("headers."+name, errors.New("not a valid header name"))
	}
	canon := http.CanonicalHeaderKey(name)
	if reserved[canon] {
		return specErr("headers."+name, errors.New("set by mistral-tap itself, cannot be configured"))
	}
	if !strings.Contains(value, "{{") {
		// A line break would let the value inject headers of its own.
		if strings.ContainsAny(value, "\r\n\x00") {
			return specErr("headers."+name, errors.New("value contains a line break or NUL"))
		}
		f.static.Set(canon, value)
		return nil
	}
	t, err := parse("headers."+name, value)
	if err != nil {
		return err
	}
	// A header template replaces any format default of the same name.
	f.static.Del(canon)
	f.dynamic = append(f.dynamic, headerTemplate{name: canon, tmpl: t})
	return nil
}

// setBody compiles the body template, which format "template" requires
// (New has already refused one for any other format).
func (f *Formatter) setBody(s Spec) error {
	if f.format != FormatTemplate {
		return nil
	}
	if strings.TrimSpace(s.Template) == "" {
		return specErr("template", errors.New("required for format template"))
	}
	t, err := parse("template", s.Template)
	if err != nil {
		return err
	}
	f.body = t
	return nil
}

// setURL compiles a URL template; a literal URL is the transport's business
// and stays out of the Formatter.
func (f *Formatter) setURL(s Spec) error {
	if !strings.Contains(s.URL, "{{") {
		return nil
	}
	t, err := parseURLTemplate("url", s.URL)
	if err != nil {
		return err
	}
	f.url = t
	return nil
}

// setRoutingKey keeps a literal key as it is, checked now since it never
// changes, or compiles a template, whose output is checked per event.
func (f *Formatter) setRoutingKey(s Spec) error {
	if !strings.Contains(s.RoutingKey, "{{") {
		if err := checkKey(s.RoutingKey); err != nil {
			return specErr("routing_key", err)
		}
		f.key = s.RoutingKey
		return nil
	}
	t, err := parse("routing_key", s.RoutingKey)
	if err != nil {
		return err
	}
	f.keyT = t
	return nil
}

// SpecError is a problem of one Spec field: Field is format, method,
// headers.<name>, template or cloudevents.mode, the key of a callback's
// configuration it came from.
type SpecError struct {
	Field string
	Err   error
}

func (e *SpecError) Error() string { return "payload: " + e.Field + ": " + e.Err.Error() }
func (e *SpecError) Unwrap() error { return e.Err }

func specErr(field string, err error) error { return &SpecError{Field: field, Err: err} }

func parse(field, text string) (*template.Template, error) {
	t, err := template.New(field).Funcs(FuncMap()).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, specErr(field, redactTemplateErr(err, field))
	}
	return t, nil
}

// redactTemplateErr keeps template errors from quoting header values, which
// are secrets (text/template errors quote the offending fragment).
func redactTemplateErr(err error, field string) error {
	if strings.HasPrefix(field, "headers.") {
		return errors.New("invalid template (details withheld: header values are secret)")
	}
	return err
}

// trial executes every template against the samples (see New).
func (f *Formatter) trial() error {
	samples := Samples()
	check := func(field string, t *template.Template, wantJSON bool) error {
		var errs []error
		for _, ev := range samples {
			var b bytes.Buffer
			err := t.Execute(&b, newTemplateData(ev))
			if err == nil && wantJSON && !json.Valid(b.Bytes()) {
				return specErr(field, fmt.Errorf("output for a sample %s event is not valid JSON (set a non-JSON Content-Type header if that is intended): %.200s", ev.Kind(), b.String()))
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) == 0 {
			return nil
		}
		if len(errs) < len(samples) && kindOnly(errs[0]) {
			return nil
		}
		return specErr(field, fmt.Errorf("fails on a sample event: %w", redactTemplateErr(errs[0], field)))
	}
	for _, h := range f.dynamic {
		if err := check("headers."+h.name, h.tmpl, false); err != nil {
			return err
		}
	}
	// URLs and routing keys: the same rule as templates above.
	for _, c := range []struct {
		field  string
		on     bool
		render func(*TemplateData) (string, error)
	}{
		{"url", f.url != nil, func(d *TemplateData) (string, error) { return renderURL(f.url, d) }},
		{"routing_key", f.keyT != nil, f.routingKey},
	} {
		if !c.on {
			continue
		}
		var errs []error
		for _, ev := range samples {
			if _, err := c.render(newTemplateData(ev)); err != nil {
				errs = append(errs, fmt.Errorf("on a sample %s event: %w", ev.Kind(), err))
			}
		}
		for _, err := range errs {
			if len(errs) == len(samples) || !kindOnly(err) {
				return specErr(c.field, fmt.Errorf("fails %w", err))
			}
		}
	}
	if f.body != nil {
		ct := f.static.Get("Content-Type")
		wantJSON := ct == "" || strings.Contains(strings.ToLower(ct), "json")
		if err := check("template", f.body, wantJSON); err != nil {
			return err
		}
	}
	return nil
}

// kindOnly reports a template error that comes from reaching into the
// other kind's data (a callback may be for one kind only).
func kindOnly(err error) bool {
	m := err.Error()
	return strings.Contains(m, "nil pointer evaluating") || strings.Contains(m, "map has no entry for key")
}

// checkKey checks a rendered routing key: AMQP short strings are at most
// 255 bytes; control characters are refused.
func checkKey(k string) error {
	if len(k) > 255 {
		return fmt.Errorf("%d bytes, longer than AMQP's 255", len(k))
	}
	if strings.IndexFunc(k, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0 {
		return errors.New("contains a control character")
	}
	return nil
}

func (f *Formatter) routingKey(data *TemplateData) (string, error) {
	if f.keyT == nil {
		return f.key, nil
	}
	var b strings.Builder
	if err := f.keyT.Execute(&b, data); err != nil {
		return "", err
	}
	k := b.String()
	return k, checkKey(k)
}

// Format renders ev. An error (a template that fails on this event, an event
// with no entity) means the event cannot be delivered to this callback; it
// is never retried. Errors never include header values.
func (f *Formatter) Format(ev *event.Event) (Message, error) {
	if ev == nil || (ev.Execution == nil && ev.Task == nil) {
		return Message{}, errors.New("payload: event has neither an execution nor a task")
	}
	m := Message{Method: f.method, Header: f.static.Clone()}
	var data *TemplateData
	if len(f.dynamic) > 0 || f.body != nil || f.url != nil || f.keyT != nil {
		data = newTemplateData(ev)
	}
	if f.url != nil {
		u, err := renderURL(f.url, data)
		if err != nil {
			return Message{}, fmt.Errorf("payload: url: template failed for event %s: %w", ev.ID, err)
		}
		m.URL = u
	}
	k, err := f.routingKey(data)
	if err != nil {
		return Message{}, fmt.Errorf("payload: routing_key: template failed for event %s: %w", ev.ID, err)
	}
	m.Key = k
	for _, h := range f.dynamic {
		var b strings.Builder
		if err := h.tmpl.Execute(&b, data); err != nil {
			return Message{}, fmt.Errorf("payload: headers.%s: template failed for event %s (details withheld: header values are secret)", h.name, ev.ID)
		}
		v := b.String()
		if strings.ContainsAny(v, "\r\n\x00") {
			return Message{}, fmt.Errorf("payload: headers.%s: rendered value contains a line break or NUL", h.name)
		}
		m.Header.Set(h.name, v)
	}
	switch f.format {
	case FormatMistral:
		m.Body = mistralObject(ev).appendJSON(nil, python)
	case FormatEnvelope:
		m.Body = envelopeObject(ev).appendJSON(nil, compact)
	case FormatCloudEvents:
		if f.ceMode == ModeBinary {
			for _, a := range f.ceAttributes(ev) {
				if a.key == "datacontenttype" {
					continue // carried by Content-Type
				}
				m.Header.Set("ce-"+a.key, percentEncode(ceText(a.val)))
			}
			m.Body = envelopeObject(ev).appendJSON(nil, compact)
		} else {
			o := append(f.ceAttributes(ev), field{"data", envelopeObject(ev)})
			m.Body = o.appendJSON(nil, compact)
		}
	case FormatTemplate:
		var b bytes.Buffer
		if err := f.body.Execute(&b, data); err != nil {
			return Message{}, fmt.Errorf("payload: template failed for event %s: %w", ev.ID, err)
		}
		m.Body = b.Bytes()
	case FormatOslo:
		m.Body = f.osloBody(ev)
	}
	return m, nil
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// rfc3339 formats t for JSON: UTC, RFC 3339 with as many fractional digits as
// needed.
func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
