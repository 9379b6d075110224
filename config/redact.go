package config

import (
	"slices"
	"strings"

	"github.com/mistral-tap/mistral-tap/config/redact"
)

// RedactedValue is FieldError.Value for secrets, and what Redacted()
// writes in place of them.
const RedactedValue = redact.Marker

const redacted = RedactedValue

// RedactURL returns raw fit for logs and errors: see redact.URL.
func RedactURL(raw string) string { return redact.URL(raw) }

// RedactedURL is the callback's URL fit for logs, errors, the store and
// admin output: its conventional credentials (redact.URL) and every value
// that came from ${NAME} or secret_file are replaced by redact.Marker.
func (cb *Callback) RedactedURL() string { return redact.URL(cb.URL, cb.secretVals...) }

// ExpandedSecrets lists the values substituted into this callback from
// ${NAME} (url, headers, secrets) or read from its secret_file: text
// quoting the callback (an error naming its host, say) must hide them.
// The slice is shared (it is read per delivery): do not modify it.
func (cb *Callback) ExpandedSecrets() []string { return cb.secretVals }

// SecretValues lists every secret value in c, for the log redactor
// (redact.Handler): whatever came from ${NAME} or a secret_file, header
// values (and the credential of "Bearer X"), signing secrets, the admin
// token, the Keystone password, and the conventional credentials of the
// upstream and callback URLs (redact.URLSecrets). Literal words of a URL,
// such as the user name next to a password, are not listed. Sorted,
// without duplicates or empty values.
func (c *Config) SecretValues() []string {
	if c == nil {
		return nil
	}
	var out []string
	add := func(vs ...string) {
		for _, v := range vs {
			if v != "" {
				out = append(out, v)
			}
		}
	}
	headers := func(h map[string]string) {
		for _, v := range h {
			add(v, bearerToken(v))
		}
	}
	add(c.secretVals...)
	headers(c.Watch.Headers)
	add(c.Admin.Token, c.Watch.Keystone.Password, DSNPassword(c.Store.DSN), c.Listeners.Key)
	add(redact.URLSecrets(c.Upstream)...)
	for i := range c.Callbacks {
		cb := &c.Callbacks[i]
		add(cb.secretVals...)
		headers(cb.Headers)
		add(cb.Secret)
		add(cb.Secrets...)
		add(redact.URLSecrets(cb.URL)...)
		add(redact.URLSecrets(cb.AMQP.URL)...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// bearerToken returns the credential of "Bearer X"/"Basic X" header values,
// so that a log line quoting the token alone is redacted too.
func bearerToken(v string) string {
	if _, tok, ok := strings.Cut(v, " "); ok {
		return strings.TrimSpace(tok)
	}
	return ""
}

// Redacted returns a deep copy of c fit for logging the effective
// configuration: secrets, the admin token and every header value are
// replaced by redact.Marker, URLs lose their credentials (RedactedURL).
func (c *Config) Redacted() Config {
	out := *c
	out.secretVals = nil
	out.Upstream = redact.URL(c.Upstream, c.secretVals...)
	out.Watch.Headers = redactMap(c.Watch.Headers)
	out.Store = c.Store.redacted()
	out.Delivery.AllowNetworks = slices.Clone(c.Delivery.AllowNetworks)
	if c.Admin.Token != "" {
		out.Admin.Token = redacted
	}
	if c.Watch.Keystone.Password != "" {
		out.Watch.Keystone.Password = redacted
	}
	out.Listeners.AllowNetworks = slices.Clone(c.Listeners.AllowNetworks)
	if c.Listeners.Key != "" {
		out.Listeners.Key = redacted
	}
	out.Callbacks = make([]Callback, len(c.Callbacks))
	for i, cb := range c.Callbacks {
		cb.Events = slices.Clone(cb.Events)
		cb.URL = cb.RedactedURL()
		cb.AMQP.URL = redact.URL(cb.AMQP.URL, cb.secretVals...)
		cb.secretVals = nil
		cb.Headers = redactMap(cb.Headers)
		if cb.Secret != "" {
			cb.Secret = redacted
		}
		if cb.Secrets != nil {
			s := make([]string, len(cb.Secrets))
			for j := range s {
				s[j] = redacted
			}
			cb.Secrets = s
		}
		if cb.Namespace != nil {
			ns := *cb.Namespace
			cb.Namespace = &ns
		}
		if cb.Retries != nil {
			r := *cb.Retries
			cb.Retries = &r
		}
		out.Callbacks[i] = cb
	}
	return out
}

func redactMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k := range m {
		out[k] = redacted
	}
	return out
}
