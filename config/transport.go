package config

import (
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// Transport types of a callback (Callback.Type).
const (
	TypeHTTP = "http"
	TypeAMQP = "amqp"
)

// Types are the accepted callback types.
var Types = []string{TypeHTTP, TypeAMQP}

// OpenStack's notification defaults, used by AMQP callbacks of format
// "oslo" that leave exchange or routing_key empty.
const (
	OsloExchange   = "openstack"
	OsloRoutingKey = "notifications.info"
)

// AMQP is where an AMQP callback (type: amqp) publishes. The broker must
// confirm every message (publisher confirms) before it counts as delivered.
type AMQP struct {
	// URL is the broker, amqp://user:pass@host:5672/vhost or amqps://...;
	// ${NAME} is expanded from the environment. Its password is a secret,
	// never logged. Required with type amqp.
	URL string `koanf:"url" yaml:"url"`
	// CAFile is a PEM bundle that verifies an amqps broker, in addition to
	// the system roots. Default "" (system roots).
	CAFile string `koanf:"ca_file" yaml:"ca_file"`
	// Exchange to publish to. Default "" (the default exchange: the routing
	// key names a queue); "openstack" with format oslo.
	Exchange string `koanf:"exchange" yaml:"exchange"`
	// ExchangeType is direct, fanout, topic or headers, used with Declare.
	// Default "topic".
	ExchangeType string `koanf:"exchange_type" yaml:"exchange_type"`
	// Declare makes mistral-tap declare the exchange; otherwise it must
	// exist (a publish to a missing exchange fails and is retried).
	// Default false.
	Declare bool `koanf:"declare" yaml:"declare"`
	// Durable is the declared exchange's durability. Default nil: true,
	// except with format oslo, where it is false because OpenStack declares
	// its notification exchanges non-durable and any other flags fail with
	// 406 PRECONDITION_FAILED for us and for its consumers.
	Durable *bool `koanf:"durable" yaml:"durable"`
	// RoutingKey is a text/template over the same data as template bodies,
	// e.g. "mistral.{{ .Event.Type }}". Default "" ("notifications.info"
	// with format oslo).
	RoutingKey string `koanf:"routing_key" yaml:"routing_key"`
	// Persistent publishes with delivery mode 2 (written to disk in durable
	// queues). Default true.
	Persistent *bool `koanf:"persistent" yaml:"persistent"`
	// Mandatory makes the broker return a message no queue is bound to;
	// a returned message is a failed attempt, retried and then
	// dead-lettered. Default true.
	Mandatory *bool `koanf:"mandatory" yaml:"mandatory"`
	// ConfirmTimeout bounds the wait for the broker's confirm of one
	// message. Default 0: the callback's timeout.
	ConfirmTimeout time.Duration `koanf:"confirm_timeout" yaml:"confirm_timeout"`
	// Heartbeat is the AMQP heartbeat interval. Default 10s.
	Heartbeat time.Duration `koanf:"heartbeat" yaml:"heartbeat"`
}

// IsAMQP reports whether cb publishes over AMQP.
func (cb *Callback) IsAMQP() bool { return cb.Type == TypeAMQP }

// AMQPSettings returns cb's AMQP block with every default applied: format
// oslo's exchange, routing key and durability, persistent and mandatory
// on, the confirm timeout from the callback's timeout, heartbeat 10s.
func (cb *Callback) AMQPSettings() AMQP {
	a := cb.AMQP
	oslo := cb.Format == "oslo"
	if oslo && a.Exchange == "" {
		a.Exchange = OsloExchange
	}
	if oslo && a.RoutingKey == "" {
		a.RoutingKey = OsloRoutingKey
	}
	if a.ExchangeType == "" {
		a.ExchangeType = "topic"
	}
	t, f := true, false
	if a.Durable == nil {
		a.Durable = &t
		if oslo {
			a.Durable = &f
		}
	}
	if a.Persistent == nil {
		a.Persistent = &t
	}
	if a.Mandatory == nil {
		a.Mandatory = &t
	}
	if a.ConfirmTimeout <= 0 {
		a.ConfirmTimeout = cb.Timeout
	}
	if a.Heartbeat <= 0 {
		a.Heartbeat = 10 * time.Second
	}
	return a
}

// amqpSet reports whether the amqp block says anything.
func (a *AMQP) set() bool {
	return a.URL != "" || a.CAFile != "" || a.Exchange != "" || a.ExchangeType != "" || a.Declare ||
		a.Durable != nil || a.RoutingKey != "" || a.Persistent != nil || a.Mandatory != nil ||
		a.ConfirmTimeout != 0 || a.Heartbeat != 0
}

// validateTransport checks type, url and the amqp block of cb. It replaces
// the plain URL check for every callback.
func (cb *Callback) validateTransport(c cbProblems) {
	switch cb.Type {
	case "", TypeHTTP:
		if cb.AMQP.set() {
			c.add("amqp", "", "an amqp block needs type: amqp (this callback is type http)")
		}
		if cb.Format == "oslo" {
			c.add("format", cb.Format, "format oslo is an AMQP notification: it needs type: amqp")
		}
		if templateURL(cb) == "" {
			checkCallbackURL(c, cb.URL)
		}
	case TypeAMQP:
		if cb.URL != "" {
			c.add("url", RedactURL(cb.URL), "type amqp publishes to amqp.url; url is for type http")
		}
		if cb.Method != "" && cb.Method != "POST" {
			c.add("method", cb.Method, "type amqp has no method")
		}
		cb.AMQP.validate(c)
	default:
		c.add("type", cb.Type, fmt.Sprintf("unknown type %q (want %s)", cb.Type, strings.Join(Types, " or ")))
	}
}

func (a *AMQP) validate(c cbProblems) {
	add := func(field, value, msg string) { c.add("amqp."+field, value, msg) }
	v := RedactURL(a.URL)
	u, err := url.Parse(a.URL)
	switch {
	case strings.TrimSpace(a.URL) == "":
		// Positioned at the amqp block when it exists, else at the callback.
		c.at("amqp", "amqp.url", "", "required with type amqp (e.g. amqp://user:${AMQP_PASSWORD}@rabbit:5672/)")
	case err != nil:
		add("url", v, "not a URL: "+urlErr(err))
	case u.Scheme != "amqp" && u.Scheme != "amqps":
		add("url", v, fmt.Sprintf("scheme %q: want amqp or amqps", u.Scheme))
	case u.Hostname() == "":
		add("url", v, "has no host")
	}
	if a.CAFile != "" {
		if _, err := os.Stat(a.CAFile); err != nil {
			add("ca_file", a.CAFile, fmt.Sprintf("cannot read %s: %v", a.CAFile, unwrapPathErr(err)))
		}
	}
	if t := a.ExchangeType; t != "" && !slices.Contains([]string{"direct", "fanout", "topic", "headers"}, t) {
		add("exchange_type", t, fmt.Sprintf("unknown exchange type %q (want direct, fanout, topic or headers)", t))
	}
	if a.Declare && a.Exchange == "" {
		add("declare", "true", "the default exchange cannot be declared: set exchange")
	}
	if strings.HasPrefix(a.Exchange, "amq.") && a.Declare {
		add("exchange", a.Exchange, `exchanges named "amq.*" are the broker's own and cannot be declared`)
	}
	if len(a.Exchange) > 255 {
		add("exchange", a.Exchange[:32]+"...", "longer than 255 bytes")
	}
	if a.ConfirmTimeout < 0 {
		add("confirm_timeout", a.ConfirmTimeout.String(), "must be >= 0 (0: the callback's timeout)")
	}
	if a.Heartbeat < 0 {
		add("heartbeat", a.Heartbeat.String(), "must be >= 0 (0: 10s)")
	}
}

// URLTemplate is cb's URL when it is a template, rendered per event (and
// checked by payload against sample events), "" otherwise.
func (cb *Callback) URLTemplate() string { return templateURL(cb) }

func templateURL(cb *Callback) string {
	if cb.Type == TypeHTTP || cb.Type == "" {
		if strings.Contains(cb.URL, "{{") {
			return cb.URL
		}
	}
	return ""
}
