package config

import (
	"net/url"
	"slices"
)

// redacted replaces secret values in logs, errors and Redacted().
const redacted = "<redacted>"

// RedactURL returns raw with a userinfo password and every query value
// replaced by "<redacted>" (tokens often ride in either), and "<redacted>"
// entirely when raw does not parse, since then nobody knows where the
// secret is.
func RedactURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return redacted
	}
	if u.User != nil {
		// The user name is often the token itself (https://TOKEN@host).
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword("REDACTED", "REDACTED")
		} else {
			u.User = url.User("REDACTED")
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{"REDACTED"}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// Redacted returns a deep copy of c fit for logging the effective
// configuration: secrets, the admin token and every header value are
// replaced by "<redacted>", URLs lose passwords and query values.
func (c *Config) Redacted() Config {
	out := *c
	out.Upstream = RedactURL(c.Upstream)
	out.Watch.Headers = redactMap(c.Watch.Headers)
	out.Store = c.Store.redacted()
	out.Delivery.AllowNetworks = slices.Clone(c.Delivery.AllowNetworks)
	if c.Admin.Token != "" {
		out.Admin.Token = redacted
	}
	if c.Watch.Keystone.Password != "" {
		out.Watch.Keystone.Password = redacted
	}
	out.Callbacks = make([]Callback, len(c.Callbacks))
	for i, cb := range c.Callbacks {
		cb.Events = slices.Clone(cb.Events)
		cb.URL = RedactURL(cb.URL)
		cb.AMQP.URL = RedactURL(cb.AMQP.URL)
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
