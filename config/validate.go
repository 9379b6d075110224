package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Formats are the accepted callback payload formats.
var Formats = []string{"mistral", "envelope", "cloudevents", "template", "oslo"}

// Validate checks the whole configuration and returns every problem at once
// as errors.Join of *FieldError (see Problems). It expects callback defaults
// to be applied (Load does that; see ApplyDefaults), so that e.g. an empty
// method is reported rather than silently replaced. It does no I/O.
func (c *Config) Validate() error {
	var p problems
	c.validate(&p)
	return p.err()
}

// validate records every problem of c in p, section by section in the
// order of Config's fields, so that problems without a position in the
// file keep a stable order.
func (c *Config) validate(p *problems) {
	checkAddr(p, "listen", c.Listen, true)
	checkUpstream(p, c.Upstream)
	if strings.TrimSpace(c.StateDir) == "" {
		p.key("state_dir", "", "must not be empty")
	}
	c.Store.validate(p)
	c.Proxy.validate(p)
	c.Watch.validate(p)
	if c.Tracker.Retention < time.Minute {
		p.key("tracker.retention", c.Tracker.Retention.String(), "must be at least 1m (finished entities must outlive the watcher's overlap and a client's next look)")
	}
	c.Delivery.validate(p)
	c.Log.validate(p)
	c.Admin.validate(p)
	if c.Ops.Listen != "" {
		checkAddr(p, "ops.listen", c.Ops.Listen, false)
	}
	c.validateDistinctAddrs(p)
	c.validateListeners(p)

	names := map[string]int{}
	for i := range c.Callbacks {
		c.Callbacks[i].validate(p, i, names)
		c.validateProject(p, i)
	}
}

// validate checks the proxy section.
func (x *Proxy) validate(p *problems) {
	if x.PathPrefix != "" && !strings.HasPrefix(x.PathPrefix, "/") {
		p.key("proxy.path_prefix", x.PathPrefix, fmt.Sprintf("%q must start with /", x.PathPrefix))
	}
	if x.MaxTapBody <= 0 {
		p.key("proxy.max_tap_body", strconv.FormatInt(x.MaxTapBody, 10), fmt.Sprintf("must be > 0, got %d", x.MaxTapBody))
	}
	positive(p, "proxy.dial_timeout", x.DialTimeout.String(), x.DialTimeout > 0)
	positive(p, "proxy.response_header_timeout", x.ResponseHeaderTimeout.String(), x.ResponseHeaderTimeout > 0)
	atLeast(p.field("proxy.max_idle_conns_per_host"), x.MaxIdleConnsPerHost, 1)
	atLeast(p.field("proxy.max_connections"), x.MaxConnections, 1)
	positive(p, "proxy.idle_timeout", x.IdleTimeout.String(), x.IdleTimeout > 0)
}

// validate checks the watch section. Header values are secrets: their
// problems show redact.Marker.
func (w *Watch) validate(p *problems) {
	if w.Interval < 0 {
		p.key("watch.interval", w.Interval.String(), fmt.Sprintf("must be >= 0 (0 turns the watcher off), got %s", w.Interval))
	}
	atLeast(p.field("watch.page_size"), w.PageSize, 1)
	if w.Replay < 0 {
		p.key("watch.replay", w.Replay.String(), fmt.Sprintf("must be >= 0, got %s", w.Replay))
	}
	for _, h := range checkHeaders(w.Headers) {
		p.add(FieldError{Path: "watch.headers." + h.name, Field: "watch.headers", Value: redacted, Msg: h.msg})
	}
	w.Keystone.validate(p)
}

// validate checks watch.keystone, which is off without an auth_url. The
// password is a secret: its problem never shows it.
func (ks *Keystone) validate(p *problems) {
	if ks.AuthURL == "" {
		return
	}
	if u, err := url.Parse(ks.AuthURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.key("watch.keystone.auth_url", RedactURL(ks.AuthURL), "must be an absolute http(s) URL of Keystone's v3 API")
	}
	for _, f := range []struct{ field, v string }{{"username", ks.Username}, {"password", ks.Password}, {"project_name", ks.ProjectName}} {
		if f.v == "" {
			p.key("watch.keystone."+f.field, "", "required with watch.keystone.auth_url")
		}
	}
}

// validate checks the delivery section (callbacks' shared defaults and
// the networks deliveries may reach).
func (d *Delivery) validate(p *problems) {
	positive(p, "delivery.timeout", d.Timeout.String(), d.Timeout > 0)
	atLeast(p.field("delivery.retries"), d.Retries, 0)
	if d.RetryWaitMin < 0 {
		p.key("delivery.retry_wait_min", d.RetryWaitMin.String(), "must be >= 0")
	}
	if d.RetryWaitMax < d.RetryWaitMin {
		p.key("delivery.retry_wait_max", d.RetryWaitMax.String(),
			fmt.Sprintf("%s is less than retry_wait_min %s", d.RetryWaitMax, d.RetryWaitMin))
	}
	for i, n := range d.AllowNetworks {
		if _, err := netip.ParsePrefix(strings.TrimSpace(n)); err != nil {
			p.add(FieldError{Path: fmt.Sprintf("delivery.allow_networks.%d", i), Field: "delivery.allow_networks", Value: n, Msg: fmt.Sprintf("%q is not a CIDR (e.g. 127.0.0.0/8)", n)})
		}
	}
	atLeast(p.field("delivery.breaker_threshold"), d.BreakerThreshold, 1)
	positive(p, "delivery.breaker_probe_max", d.BreakerProbeMax.String(), d.BreakerProbeMax > 0)
}

// validate checks the log section.
func (l *Log) validate(p *problems) {
	switch strings.ToLower(l.Level) {
	case "debug", "info", "warn", "error":
	default:
		p.key("log.level", l.Level, fmt.Sprintf("unknown level %q (want debug, info, warn or error)", l.Level))
	}
	switch l.Format {
	case "text", "json":
	default:
		p.key("log.format", l.Format, fmt.Sprintf("unknown format %q (want text or json)", l.Format))
	}
}

// validate checks the admin API, which is off without a listen address
// and then needs a token long enough not to be guessed. The token is a
// secret: its problems never show it.
func (a *Admin) validate(p *problems) {
	if a.Listen == "" {
		return
	}
	checkAddr(p, "admin.listen", a.Listen, false)
	switch n := len(a.Token); {
	case n == 0:
		p.key("admin.token", "", "required when admin.listen is set (e.g. token: ${ADMIN_TOKEN})")
	case n < MinAdminTokenLen:
		p.key("admin.token", "", fmt.Sprintf("too short: %d characters, want at least %d (e.g. the output of `openssl rand -hex 32`)", n, MinAdminTokenLen))
	}
}

// validateDistinctAddrs reports an admin or ops address already used by
// the proxy or the admin API: the second listener could not bind it. Port
// 0 picks a free port each time, so it may repeat; an address that is not
// host:port has its own problem already.
func (c *Config) validateDistinctAddrs(p *problems) {
	seen := map[string]string{c.Listen: "listen"}
	for _, l := range []struct{ key, addr string }{{"admin.listen", c.Admin.Listen}, {"ops.listen", c.Ops.Listen}} {
		if l.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(l.addr); err != nil {
			continue
		}
		if other, dup := seen[l.addr]; dup && !strings.HasSuffix(l.addr, ":0") {
			p.key(l.key, l.addr, fmt.Sprintf("%q is already used by %s", l.addr, other))
		}
		seen[l.addr] = l.key
	}
}

// CallbackLabel is how problems and logs name the i-th (0-based) callback:
// its name, or "#<i+1>" when it has none.
func CallbackLabel(cb *Callback, i int) string {
	if cb.Name != "" {
		return cb.Name
	}
	return "#" + strconv.Itoa(i+1)
}

// validate checks what configuration alone can know about a callback.
// Its events, globs and payload (templates) are checked by whoever
// compiles them (the routing: see Source.Check).
func (cb *Callback) validate(p *problems, i int, names map[string]int) {
	c := cbProblems{p: p, base: "callbacks." + strconv.Itoa(i) + ".", label: CallbackLabel(cb, i)}
	if strings.TrimSpace(cb.Name) == "" {
		c.at("", "name", "", "every callback needs a name")
	} else if first, dup := names[cb.Name]; dup {
		c.add("name", cb.Name, fmt.Sprintf("duplicate name %q (also callback #%d)", cb.Name, first+1))
	} else if strings.HasPrefix(cb.Name, "listener:") || cb.Name == "listeners" {
		// The outbox and the metrics name API listeners so: a callback
		// with such a name would share their rows and their label.
		c.add("name", cb.Name, fmt.Sprintf("%q is reserved for runtime listeners (names listener:<id> and the class listeners)", cb.Name))
	} else {
		names[cb.Name] = i
	}

	cb.validateTransport(c)
	if !httpguts.ValidHeaderFieldName(cb.Method) {
		c.add("method", cb.Method, fmt.Sprintf("%q is not an HTTP method token", cb.Method))
	}
	for _, h := range checkHeaders(cb.Headers) {
		c.at("headers."+h.name, "headers", redacted, h.msg)
	}
	switch {
	case !slices.Contains(Formats, cb.Format):
		c.add("format", cb.Format, fmt.Sprintf("unknown format %q (want %s)", cb.Format, strings.Join(Formats, ", ")))
	case cb.Format == "template" && strings.TrimSpace(cb.Template) == "":
		c.add("template", "", "format template needs a template")
	case cb.Format != "template" && cb.Template != "":
		c.add("template", "", fmt.Sprintf("template is set but format is %q (want format: template)", cb.Format))
	}
	switch cb.CloudEvents.Mode {
	case "structured", "binary":
	default:
		c.add("cloudevents.mode", cb.CloudEvents.Mode, fmt.Sprintf("unknown mode %q (want structured or binary)", cb.CloudEvents.Mode))
	}

	switch cb.Ordering {
	case "root", "none":
	default:
		c.add("ordering", cb.Ordering, fmt.Sprintf("unknown ordering %q (want root or none)", cb.Ordering))
	}
	atLeast(c.field("concurrency"), cb.Concurrency, 1)
	if cb.Timeout <= 0 {
		c.add("timeout", cb.Timeout.String(), fmt.Sprintf("must be > 0, got %s", cb.Timeout))
	}
	if cb.Retries != nil {
		atLeast(c.field("retries"), *cb.Retries, 0)
	}
	cb.Retry.validate(c)
	for j, s := range cb.Secrets {
		if s == "" {
			c.at(fmt.Sprintf("secrets.%d", j), "secrets", "", "must not be empty")
		}
	}
}

func (r RetryPolicy) validate(c cbProblems) {
	if r.InitialInterval <= 0 {
		c.add("retry.initial_interval", r.InitialInterval.String(), fmt.Sprintf("must be > 0, got %s", r.InitialInterval))
	}
	if r.MaxInterval < r.InitialInterval {
		c.add("retry.max_interval", r.MaxInterval.String(), fmt.Sprintf("%s is less than initial_interval %s", r.MaxInterval, r.InitialInterval))
	}
	if r.Multiplier < 1 {
		c.add("retry.multiplier", fmtFloat(r.Multiplier), fmt.Sprintf("must be >= 1, got %s", fmtFloat(r.Multiplier)))
	}
	if r.Jitter < 0 || r.Jitter > 1 {
		c.add("retry.jitter", fmtFloat(r.Jitter), fmt.Sprintf("must be between 0 and 1, got %s", fmtFloat(r.Jitter)))
	}
	if r.MaxAge <= 0 {
		c.add("retry.max_age", r.MaxAge.String(), fmt.Sprintf("must be > 0, got %s", r.MaxAge))
	}
	atLeast(c.field("retry.max_attempts"), r.MaxAttempts, 0)
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func positive(p *problems, key, value string, ok bool) {
	if !ok {
		p.key(key, value, "must be > 0, got "+value)
	}
}

// atLeast reports v < min through report(value, msg).
func atLeast(report func(value, msg string), v, min int) {
	if v < min {
		report(strconv.Itoa(v), fmt.Sprintf("must be >= %d, got %d", min, v))
	}
}

// checkAddr checks a host:port listen address.
func checkAddr(p *problems, key, addr string, required bool) {
	if addr == "" {
		if required {
			p.key(key, "", "must not be empty (host:port)")
		}
		return
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		p.key(key, addr, fmt.Sprintf("%q is not host:port", addr))
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.key(key, addr, fmt.Sprintf("%q has a bad port %q", addr, port))
	}
}

func checkUpstream(p *problems, raw string) {
	const key = "upstream"
	v := RedactURL(raw)
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		p.key(key, "", "must not be empty (e.g. http://127.0.0.1:8989)")
	case err != nil:
		p.key(key, v, "not a URL: "+urlErr(err))
	case u.Scheme != "http" && u.Scheme != "https":
		p.key(key, v, fmt.Sprintf("scheme %q: want http or https", u.Scheme))
	case u.Host == "":
		p.key(key, v, "has no host")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		p.key(key, v, "must not have a query or fragment (it is Mistral's API root)")
	}
}

func checkCallbackURL(c cbProblems, raw string) {
	v := RedactURL(raw)
	u, err := url.Parse(raw)
	switch {
	case strings.TrimSpace(raw) == "":
		c.add("url", "", "required")
	case err != nil:
		c.add("url", v, "not a URL: "+urlErr(err))
	case u.Scheme != "http" && u.Scheme != "https":
		c.add("url", v, fmt.Sprintf("scheme %q: want an absolute http or https URL", u.Scheme))
	case u.Host == "" || u.Hostname() == "":
		c.add("url", v, "has no host")
	case numericHost(u.Hostname()) && !isDottedQuad(u.Hostname()):
		c.add("url", v, fmt.Sprintf("host %q is an ambiguous numeric IPv4 form (decimal, octal or hex parts); write the address as a dotted quad such as 127.0.0.1, or use a DNS name", u.Hostname()))
	}
}

// numericHost reports whether a URL parser following the WHATWG URL
// standard (browsers, curl for some forms, inet_aton) reads host as an
// IPv4 address: its last label is a decimal or 0x-hex number. Such hosts
// ("2130706433", "0177.0.0.1", "0x7f.1") are not DNS names, and Go's
// resolver does not read them as addresses either, so they would only
// fail resolution until max_age.
func numericHost(host string) bool {
	labels := strings.Split(strings.TrimSuffix(host, "."), ".")
	last := labels[len(labels)-1]
	if h, ok := strings.CutPrefix(strings.ToLower(last), "0x"); ok {
		return strings.Trim(h, "0123456789abcdef") == ""
	}
	return last != "" && strings.Trim(last, "0123456789") == ""
}

// isDottedQuad reports whether host is a canonical IPv4 dotted quad
// (netip refuses leading zeros, which some parsers read as octal).
func isDottedQuad(host string) bool {
	a, err := netip.ParseAddr(host)
	return err == nil && a.Is4()
}

// urlErr strips the URL itself (which may carry credentials) from a
// url.Parse error.
func urlErr(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return "invalid"
}

type headerProblem struct{ name, msg string }

// checkHeaders lists the problems of a header map, by header name.
func checkHeaders(h map[string]string) []headerProblem {
	var out []headerProblem
	for _, name := range slices.Sorted(maps.Keys(h)) {
		if !httpguts.ValidHeaderFieldName(name) {
			out = append(out, headerProblem{name, fmt.Sprintf("%q is not a valid header name", name)})
		}
		if strings.ContainsAny(h[name], "\r\n\x00") {
			out = append(out, headerProblem{name, fmt.Sprintf("value of %s contains a line break or NUL", name)})
		}
	}
	return out
}
