// Package amqp is the AMQP 0-9-1 transport of callbacks with type: amqp
// (RabbitMQ): one Send publishes one rendered notification and reports a
// classified send.Result, like the HTTP transport in notifier/send.
//
// Contract:
//   - Delivered means the broker confirmed the message (publisher confirms)
//     and did not return it. With Endpoint.Persistent and a durable queue,
//     that includes the disk.
//   - A nack, a mandatory message returned as unroutable (matched to its
//     publish by message id), a channel or connection closed before the
//     confirm, a confirm that does not come within Endpoint.ConfirmTimeout,
//     and a broker that cannot be reached or refuses the credentials are
//     Retryable: the outbox tries again on its retry policy and
//     dead-letters the delivery when the policy gives up. Only a callback
//     that is not configured here or a broken endpoint (bad URL, unreadable
//     CA file) is Permanent.
//   - One connection and one channel in confirm mode per callback, opened
//     on the first Send. When the broker closes either (NotifyClose, a
//     lost connection included), they are opened again in the background,
//     and by the next Send if it comes first: a new channel on a surviving
//     connection, otherwise a new connection, back in confirm mode, the
//     exchange declared again. Failed dials back off exponentially
//     (Options.DialBackoffMin to DialBackoffMax): meanwhile Sends fail
//     fast, with the last dial error, rather than hammering a broker that
//     refuses the credentials.
//   - Several Sends of one callback share the channel and are in flight at
//     once (the lane's concurrency), so the broker confirms them in batches
//     (multiple acks).
//   - Message properties: message_id is the event id (the receiver's
//     deduplication key), content_type the format's Content-Type, timestamp
//     the publish time, app_id "mistral-tap", headers root_execution_id,
//     webhook-id, webhook-timestamp and, with secrets, the Standard Webhooks
//     webhook-signature over the body; the callback's own headers are
//     added as string headers.
//   - Errors and logs never contain the URL's password: URLs are redacted.
//
// Adding another message transport (Kafka, NATS) means one more package
// with the same Configure/Send/Close shape, registered in
// notifier.Transports under its callback type.
package amqp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/notifier/sign"
)

// Defaults applied where an Endpoint or Options leaves a value at zero.
const (
	DefaultExchangeType   = "topic"
	DefaultConfirmTimeout = 10 * time.Second
	DefaultHeartbeat      = 10 * time.Second
	DefaultDialTimeout    = 10 * time.Second
	DefaultDialBackoffMin = time.Second
	DefaultDialBackoffMax = time.Minute
)

// Endpoint is where one callback publishes.
type Endpoint struct {
	// URL is amqp://user:pass@host:port/vhost or amqps://...; required.
	URL string
	// CAFile is a PEM bundle that verifies an amqps broker, in addition to
	// the system roots. Default "" (system roots).
	CAFile string
	// Exchange is the exchange to publish to; "" is the default exchange
	// (the routing key is then a queue name).
	Exchange string
	// ExchangeType is used when Declare is set. Default "topic".
	ExchangeType string
	// Declare makes every new channel declare the exchange (a no-op when it
	// exists with the same flags; a 406 closing the channel otherwise).
	// Without it the exchange must exist: publishing to a missing one is
	// a Retryable failure (404 closes the channel).
	Declare bool
	// Durable is the declared exchange's durability. OpenStack's
	// notification exchanges are declared non-durable and not auto-deleted;
	// declaring one with other flags fails for us and for its consumers.
	Durable bool
	// Persistent publishes with delivery mode 2 (to disk in durable queues).
	Persistent bool
	// Mandatory asks the broker to return messages no queue is bound to;
	// a returned message is a failed attempt.
	Mandatory bool
	// ConfirmTimeout bounds the wait for the broker's confirm.
	// Default DefaultConfirmTimeout.
	ConfirmTimeout time.Duration
	// Heartbeat is the AMQP heartbeat interval. Default DefaultHeartbeat.
	Heartbeat time.Duration
}

// Options configures a Publisher.
type Options struct {
	// Logger; nil discards. URLs are redacted.
	Logger *slog.Logger
	// Now stamps webhook-timestamp and the timestamp property; nil is
	// time.Now.
	Now func() time.Time
	// DialTimeout bounds opening a connection (TCP, TLS, AMQP handshake).
	// Default DefaultDialTimeout.
	DialTimeout time.Duration
	// DialBackoffMin and DialBackoffMax bound the jittered exponential wait
	// after a failed dial before the next one. Defaults DefaultDialBackoffMin
	// and DefaultDialBackoffMax.
	DialBackoffMin, DialBackoffMax time.Duration
}

// Publisher publishes to the AMQP endpoints of every callback. It is safe
// for concurrent use.
type Publisher struct {
	o   Options
	log *slog.Logger

	mu    sync.Mutex
	links map[string]*link // by callback name
}

// New returns a Publisher with no endpoints; see Configure.
func New(o Options) *Publisher {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.DialBackoffMin <= 0 {
		o.DialBackoffMin = DefaultDialBackoffMin
	}
	if o.DialBackoffMax < o.DialBackoffMin {
		o.DialBackoffMax = max(DefaultDialBackoffMax, o.DialBackoffMin)
	}
	return &Publisher{o: o, log: o.Logger, links: map[string]*link{}}
}

// Configure sets the endpoint of every AMQP callback (by name). Callbacks
// whose endpoint is unchanged keep their connection; the connections of
// changed or removed ones are closed (their in-flight Sends fail
// Retryable and go out again on the new endpoint).
func (p *Publisher) Configure(eps map[string]Endpoint) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, l := range p.links {
		if ep, ok := eps[name]; ok && ep == l.cfg {
			continue
		}
		l.close()
		delete(p.links, name)
	}
	for name, ep := range eps {
		if _, ok := p.links[name]; !ok {
			p.links[name] = newLink(p, name, ep)
		}
	}
}

// Close closes every connection. Sends in flight fail Retryable.
func (p *Publisher) Close() {
	p.Configure(nil)
}

var _ interface {
	Send(context.Context, send.Request) send.Result
} = (*Publisher)(nil)

// Send publishes r.Body to r.Callback's endpoint with r.Topic as routing
// key and waits for the broker's confirm; see the package doc for the
// outcomes. ctx bounds the whole Send.
func (p *Publisher) Send(ctx context.Context, r send.Request) send.Result {
	start := time.Now()
	p.mu.Lock()
	l := p.links[r.Callback]
	p.mu.Unlock()
	var res send.Result
	if l == nil {
		res = send.Result{Outcome: send.Permanent, Err: fmt.Errorf("amqp: callback %q has no AMQP endpoint configured", r.Callback)}
	} else {
		res = l.publish(ctx, r)
	}
	res.Attempts = 1
	res.Duration = time.Since(start)
	return res
}

// message builds the AMQP message of r.
func (p *Publisher) message(r send.Request, ep Endpoint) (amqp.Publishing, error) {
	now := p.o.Now()
	h := amqp.Table{}
	for k, vs := range r.Header {
		if len(vs) > 0 && !strings.EqualFold(k, "Content-Type") {
			h[strings.ToLower(k)] = vs[0]
		}
	}
	if r.RootID != "" {
		h["root_execution_id"] = r.RootID
	}
	h["webhook-id"] = r.EventID
	h["webhook-timestamp"] = strconv.FormatInt(now.Unix(), 10)
	signer, err := sign.NewSigner(r.Secrets)
	if err != nil {
		return amqp.Publishing{}, err
	}
	if sig := signer.Sign(r.EventID, now, r.Body); sig != "" {
		h["webhook-signature"] = sig
	}
	mode := amqp.Transient
	if ep.Persistent {
		mode = amqp.Persistent
	}
	return amqp.Publishing{
		Headers:      h,
		ContentType:  http.Header(r.Header).Get("Content-Type"),
		DeliveryMode: mode,
		MessageId:    r.EventID,
		Timestamp:    now,
		AppId:        "mistral-tap",
		Body:         r.Body,
	}, nil
}

// backoff is the wait after the n-th consecutive failed dial (n >= 1):
// random in [d/2, d] with d = min·2ⁿ⁻¹ capped at max.
func (p *Publisher) backoff(n int) time.Duration {
	d := p.o.DialBackoffMax
	if n-1 < 32 {
		if e := p.o.DialBackoffMin << (n - 1); e > 0 && e < d {
			d = e
		}
	}
	return d/2 + rand.N(d/2+1)
}

// tlsConfig builds the amqps client configuration of ep.
func tlsConfig(ep Endpoint, host string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if ep.CAFile == "" {
		return c, nil
	}
	pem, err := os.ReadFile(ep.CAFile)
	if err != nil {
		return nil, fmt.Errorf("reading ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s holds no PEM certificate", ep.CAFile)
	}
	c.RootCAs = pool
	return c, nil
}

// errBadEndpoint marks endpoint problems no retry can fix.
var errBadEndpoint = errors.New("bad endpoint")
