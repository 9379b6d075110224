package amqp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/mistral-tap/mistral-tap/config/redact"
	"github.com/mistral-tap/mistral-tap/notifier/send"
)

// link is one callback's connection and channel, (re)opened on demand.
type link struct {
	p    *Publisher
	name string
	cfg  Endpoint // as configured, to compare with a reload's
	ep   Endpoint // with defaults applied
	safe string   // the URL, redacted

	// stop is closed by close: it ends a background reconnection.
	stop chan struct{}

	mu       sync.Mutex
	conn     *amqp.Connection
	sess     *session
	closed   bool
	failures int       // consecutive failed dials
	nextDial time.Time // no dial before this
	lastErr  error     // the last dial error, for Sends during the backoff
}

func newLink(p *Publisher, name string, ep Endpoint) *link {
	cfg := ep
	if ep.ExchangeType == "" {
		ep.ExchangeType = DefaultExchangeType
	}
	if ep.ConfirmTimeout <= 0 {
		ep.ConfirmTimeout = DefaultConfirmTimeout
	}
	if ep.Heartbeat <= 0 {
		ep.Heartbeat = DefaultHeartbeat
	}
	return &link{p: p, name: name, cfg: cfg, ep: ep, safe: redact.URL(ep.URL), stop: make(chan struct{})}
}

// session is one channel in confirm mode and its return listener.
type session struct {
	ch *amqp.Channel

	mu       sync.Mutex
	waiting  map[string]bool        // message ids published and not yet confirmed
	returned map[string]amqp.Return // returns of waiting messages
	dead     chan struct{}          // closed when the channel is closed
	err      error                  // why, once dead

	// barrier requests are served by the return listener after every
	// return received before them (see publish).
	barrier chan chan struct{}
}

// close closes the connection; in-flight Sends fail Retryable.
func (l *link) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		close(l.stop)
	}
	l.closed = true
	if l.conn != nil {
		_ = l.conn.Close()
		l.conn = nil
	}
}

// session returns a live session, opening a channel (and a connection if
// needed) when the last one died, subject to the dial backoff.
func (l *link) session() (*session, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("endpoint reconfigured or shut down")
	}
	if l.sess != nil && l.sess.alive() {
		return l.sess, nil
	}
	now := time.Now()
	if now.Before(l.nextDial) {
		return nil, fmt.Errorf("%w (next connection attempt in %s)", l.lastErr, l.nextDial.Sub(now).Round(time.Millisecond))
	}
	s, err := l.open()
	if err != nil {
		l.failures++
		wait := l.p.backoff(l.failures)
		l.nextDial, l.lastErr = now.Add(wait), err
		l.p.log.Warn("amqp connection failed", "callback", l.name, "url", l.safe, "attempt", l.failures, "retry_in", wait, "err", err)
		return nil, err
	}
	if l.failures > 0 {
		l.p.log.Info("amqp connection restored", "callback", l.name, "url", l.safe, "after_failures", l.failures)
	}
	l.failures, l.lastErr, l.sess = 0, nil, s
	return s, nil
}

// open opens a channel on the current connection, dialling a new one if
// there is none or it is closed. l.mu is held.
func (l *link) open() (*session, error) {
	if l.conn == nil || l.conn.IsClosed() {
		c, err := l.dial()
		if err != nil {
			return nil, err
		}
		l.conn = c
	}
	ch, err := l.conn.Channel()
	if err != nil {
		_ = l.conn.Close()
		l.conn = nil
		return nil, fmt.Errorf("opening a channel on %s: %w", l.safe, err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("entering confirm mode on %s: %w", l.safe, err)
	}
	if l.ep.Declare && l.ep.Exchange != "" {
		// Non-durable exchanges are not auto-deleted either: that is how
		// oslo.messaging declares its topic exchanges.
		if err := ch.ExchangeDeclare(l.ep.Exchange, l.ep.ExchangeType, l.ep.Durable, false, false, false, nil); err != nil {
			return nil, fmt.Errorf("declaring exchange %q (%s, durable=%t) on %s: %w", l.ep.Exchange, l.ep.ExchangeType, l.ep.Durable, l.safe, err)
		}
	}
	s := &session{ch: ch, waiting: map[string]bool{}, returned: map[string]amqp.Return{},
		dead: make(chan struct{}), barrier: make(chan chan struct{})}
	// Unbuffered: the library hands a return over before it dispatches the
	// ack that follows it, so a return is in listen's hands by the time
	// its publish's confirm arrives.
	returns := ch.NotifyReturn(make(chan amqp.Return))
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	connClosed := l.conn.NotifyClose(make(chan *amqp.Error, 1))
	go s.listen(returns, chClosed, connClosed, l)
	return s, nil
}

func (l *link) dial() (*amqp.Connection, error) {
	u, err := url.Parse(l.ep.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: URL %s does not parse", errBadEndpoint, l.safe)
	}
	cfg := amqp.Config{
		Heartbeat:  l.ep.Heartbeat,
		Properties: amqp.Table{"connection_name": "mistral-tap " + l.name, "product": "mistral-tap"},
		Dial:       amqp.DefaultDial(l.p.o.DialTimeout),
	}
	if u.Scheme == "amqps" {
		tc, err := tlsConfig(l.ep, u.Hostname())
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errBadEndpoint, err)
		}
		cfg.TLSClientConfig = tc
	}
	c, err := amqp.DialConfig(l.ep.URL, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", l.safe, redactErr(err, l.ep.URL, l.safe))
	}
	return c, nil
}

// redactErr replaces the raw URL in err's text (amqp091 and net errors may
// quote it).
func redactErr(err error, raw, safe string) error {
	var ne *net.OpError
	if errors.As(err, &ne) {
		return err // addresses only, no credentials
	}
	if raw != "" && strings.Contains(err.Error(), raw) {
		return errors.New(strings.ReplaceAll(err.Error(), raw, safe))
	}
	return err
}

// listen serves returns and barriers and marks the session dead when its
// channel or connection closes.
func (s *session) listen(returns <-chan amqp.Return, chClosed, connClosed <-chan *amqp.Error, l *link) {
	for {
		select {
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			s.mu.Lock()
			if s.waiting[r.MessageId] {
				s.returned[r.MessageId] = r
			}
			s.mu.Unlock()
		case reply := <-s.barrier:
			close(reply)
		case e, ok := <-chClosed:
			s.die(e, ok, "channel", l)
			return
		case e, ok := <-connClosed:
			s.die(e, ok, "connection", l)
			return
		}
	}
}

func (s *session) die(e *amqp.Error, ok bool, what string, l *link) {
	err := fmt.Errorf("%s closed", what)
	byBroker := ok && e != nil
	if byBroker {
		err = fmt.Errorf("%s closed by the broker: %w", what, e)
		l.p.log.Warn("amqp "+what+" closed; reopening", "callback", l.name, "url", l.safe, "err", e)
	}
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	close(s.dead)
	if byBroker {
		go l.reconnect()
	}
}

// reconnect re-opens the channel (and the connection) in the background
// after the broker closed it, with the dial back-off, so that the next
// delivery finds it ready; it gives up when the link is closed or a Send
// got there first.
func (l *link) reconnect() {
	for {
		_, err := l.session()
		if err == nil {
			return
		}
		l.mu.Lock()
		wait := time.Until(l.nextDial)
		l.mu.Unlock()
		t := time.NewTimer(max(wait, time.Millisecond))
		select {
		case <-l.stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (s *session) alive() bool {
	select {
	case <-s.dead:
		return false
	default:
		return true
	}
}

func (s *session) deathErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		return errors.New("channel closed")
	}
	return s.err
}

// publish makes one attempt.
func (l *link) publish(ctx context.Context, r send.Request) send.Result {
	retry := func(format string, a ...any) send.Result {
		return send.Result{Outcome: send.Retryable, Err: fmt.Errorf("amqp: callback %q: "+format, append([]any{r.Callback}, a...)...)}
	}
	msg, err := l.p.message(r, l.ep)
	if err != nil {
		return send.Result{Outcome: send.Permanent, Err: fmt.Errorf("amqp: %w", err)}
	}
	s, err := l.session()
	if err != nil {
		if errors.Is(err, errBadEndpoint) {
			return send.Result{Outcome: send.Permanent, Err: fmt.Errorf("amqp: callback %q: %w", r.Callback, err)}
		}
		return retry("%w", err)
	}
	id := r.EventID
	s.mu.Lock()
	s.waiting[id] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.waiting, id)
		delete(s.returned, id)
		s.mu.Unlock()
	}()

	cctx, cancel := context.WithTimeout(ctx, l.ep.ConfirmTimeout)
	defer cancel()
	dc, err := s.ch.PublishWithDeferredConfirmWithContext(cctx, l.ep.Exchange, r.Topic, l.ep.Mandatory, false, msg)
	if err != nil {
		return retry("publishing to exchange %q: %w", l.ep.Exchange, err)
	}
	acked, err := dc.WaitContext(cctx)
	switch {
	case err != nil && ctx.Err() != nil:
		return retry("cancelled while waiting for the broker's confirm: %w", ctx.Err())
	case err != nil:
		return retry("no confirm from the broker within %s (confirm_timeout)", l.ep.ConfirmTimeout)
	case !acked && s.ch.IsClosed():
		// The library fails pending confirms when the channel closes,
		// possibly before listen has the broker's reason.
		select {
		case <-s.dead:
		case <-time.After(time.Second):
		}
		return retry("publishing to exchange %q: %w", l.ep.Exchange, s.deathErr())
	case !acked:
		return retry("the broker nacked the message (exchange %q, routing key %q)", l.ep.Exchange, r.Topic)
	}
	if l.ep.Mandatory {
		// Any return of this message was received by listen before the
		// ack; the barrier waits until listen has recorded it.
		reply := make(chan struct{})
		select {
		case s.barrier <- reply:
			<-reply
		case <-s.dead:
		}
		s.mu.Lock()
		ret, returned := s.returned[id]
		s.mu.Unlock()
		if returned {
			return retry("message returned as unroutable by exchange %q with routing key %q: %d %s (no queue is bound to it)",
				l.ep.Exchange, r.Topic, ret.ReplyCode, ret.ReplyText)
		}
	}
	return send.Result{Outcome: send.Delivered}
}
