package amqp

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/notifier/sign"
)

func newPublisher(t testing.TB, eps map[string]Endpoint) *Publisher {
	t.Helper()
	p := New(Options{DialTimeout: 2 * time.Second, DialBackoffMin: 50 * time.Millisecond, DialBackoffMax: 200 * time.Millisecond})
	p.Configure(eps)
	t.Cleanup(p.Close)
	return p
}

func sendOK(t *testing.T, p *Publisher, r send.Request) {
	t.Helper()
	if res := p.Send(context.Background(), r); res.Outcome != send.Delivered {
		t.Fatalf("Send %s: %v: %v", r.EventID, res.Outcome, res.Err)
	}
}

// TestPublishConfirmed: a confirmed publish carries the event id, content
// type, timestamp, persistence, root execution id and a verifiable
// Standard Webhooks signature.
func TestPublishConfirmed(t *testing.T) {
	raw := brokerURL(t)
	a := newAdmin(t, raw)
	ex := unique("confirmed")
	q := a.exchangeWithQueue(ex)
	secret := "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM="
	p := newPublisher(t, map[string]Endpoint{"cb": {URL: raw, Exchange: ex, Persistent: true, Mandatory: true}})
	r := request("cb", "evt_1", "mistral.WORKFLOW_FAILED")
	r.Secrets = []string{secret}
	sendOK(t, p, r)
	d := a.get(q)
	if d.MessageId != "evt_1" || d.ContentType != "application/json" || d.DeliveryMode != amqp.Persistent ||
		d.RoutingKey != "mistral.WORKFLOW_FAILED" || d.AppId != "mistral-tap" || d.Timestamp.IsZero() {
		t.Errorf("properties: id %q ct %q mode %d key %q app %q ts %v", d.MessageId, d.ContentType, d.DeliveryMode, d.RoutingKey, d.AppId, d.Timestamp)
	}
	h := d.Headers
	if h["root_execution_id"] != "root-1" || h["x-team"] != "ops" || h["webhook-id"] != "evt_1" {
		t.Errorf("headers %v", h)
	}
	sig, _ := h["webhook-signature"].(string)
	ts, _ := h["webhook-timestamp"].(string)
	if err := sign.Verify([]string{secret}, "evt_1", ts, d.Body, sig, time.Minute, time.Now()); err != nil {
		t.Errorf("signature: %v", err)
	}
	if string(d.Body) != `{"id":"evt_1"}` {
		t.Errorf("body %s", d.Body)
	}
}

// TestUnroutable: with mandatory, a message no queue takes comes back and
// the attempt fails (retryable); without it the broker drops it and
// confirms.
func TestUnroutable(t *testing.T) {
	raw := brokerURL(t)
	a := newAdmin(t, raw)
	ex := unique("unroutable")
	a.must(a.ch.ExchangeDeclare(ex, "topic", false, true, false, false, nil))
	t.Cleanup(func() { a.cleanup(ex, "") })
	p := newPublisher(t, map[string]Endpoint{
		"mandatory": {URL: raw, Exchange: ex, Mandatory: true},
		"optional":  {URL: raw, Exchange: ex},
	})
	for i := range 3 { // several, so returns and acks interleave
		res := p.Send(context.Background(), request("mandatory", "evt_u"+string(rune('0'+i)), "nobody.listens"))
		if res.Outcome != send.Retryable || !strings.Contains(res.Err.Error(), "unroutable") || !strings.Contains(res.Err.Error(), "NO_ROUTE") {
			t.Fatalf("mandatory: %v %v", res.Outcome, res.Err)
		}
	}
	sendOK(t, p, request("optional", "evt_o", "nobody.listens"))
}

// TestMissingExchange: with declare false, a publish to a missing exchange
// is a retryable failure (the broker closes the channel with 404); once
// the exchange exists the next Send reopens the channel and succeeds.
// Deleting the exchange mid-run does the same.
func TestMissingExchange(t *testing.T) {
	raw := brokerURL(t)
	a := newAdmin(t, raw)
	ex := unique("missing")
	p := newPublisher(t, map[string]Endpoint{"cb": {URL: raw, Exchange: ex, Mandatory: true}})
	res := p.Send(context.Background(), request("cb", "evt_1", "k"))
	if res.Outcome != send.Retryable || !strings.Contains(res.Err.Error(), "NOT_FOUND") {
		t.Fatalf("missing exchange: %v %v", res.Outcome, res.Err)
	}
	q := a.exchangeWithQueue(ex)
	sendOK(t, p, request("cb", "evt_1", "k"))
	if d := a.get(q); d.MessageId != "evt_1" {
		t.Fatalf("got %q", d.MessageId)
	}

	// The broker closes the channel mid-run.
	a.must(a.ch.ExchangeDelete(ex, false, false))
	res = p.Send(context.Background(), request("cb", "evt_2", "k"))
	if res.Outcome != send.Retryable || !strings.Contains(res.Err.Error(), "channel closed by the broker") {
		t.Fatalf("deleted exchange: %v %v", res.Outcome, res.Err)
	}
	a.exchangeWithQueue(ex) // same names: the queue survived, rebind
	sendOK(t, p, request("cb", "evt_2", "k"))
	if d := a.get(q); d.MessageId != "evt_2" {
		t.Fatalf("got %q", d.MessageId)
	}
}

// TestDeclare: declare creates the exchange with the requested flags; an
// exchange that exists with other flags is a clear, retryable error
// (406), never a changed exchange.
func TestDeclare(t *testing.T) {
	raw := brokerURL(t)
	a := newAdmin(t, raw)
	ex := unique("declare")
	t.Cleanup(func() { a.cleanup(ex, "") })
	p := newPublisher(t, map[string]Endpoint{
		"oslo":  {URL: raw, Exchange: ex, Declare: true, ExchangeType: "topic", Durable: false},
		"other": {URL: raw, Exchange: ex, Declare: true, ExchangeType: "topic", Durable: true},
	})
	sendOK(t, p, request("oslo", "evt_1", "notifications.info")) // unroutable but not mandatory
	// Passive declare with oslo's flags succeeds only if they match.
	ch, err := a.conn.Channel()
	a.must(err)
	a.must(ch.ExchangeDeclarePassive(ex, "topic", false, false, false, false, nil))
	_ = ch.Close()
	res := p.Send(context.Background(), request("other", "evt_2", "k"))
	if res.Outcome != send.Retryable || !strings.Contains(res.Err.Error(), "PRECONDITION_FAILED") {
		t.Fatalf("mismatched declare: %v %v", res.Outcome, res.Err)
	}
}

// TestConfirmTimeout: a broker whose confirm does not arrive in time is a
// retryable failure; the message is delivered when the broker answers
// again.
func TestConfirmTimeout(t *testing.T) {
	raw := brokerURL(t)
	a := newAdmin(t, raw)
	ex := unique("timeout")
	q := a.exchangeWithQueue(ex)
	px := newProxy(t, target(raw))
	p := newPublisher(t, map[string]Endpoint{"cb": {URL: px.url(raw), Exchange: ex, Mandatory: true, ConfirmTimeout: 200 * time.Millisecond}})
	sendOK(t, p, request("cb", "evt_0", "k")) // connected
	px.pause()
	res := p.Send(context.Background(), request("cb", "evt_1", "k"))
	px.unpause()
	if res.Outcome != send.Retryable || !strings.Contains(res.Err.Error(), "no confirm from the broker within 200ms") {
		t.Fatalf("paused broker: %v %v", res.Outcome, res.Err)
	}
	sendOK(t, p, request("cb", "evt_1", "k")) // the retry
	got := map[string]int{}
	for range 3 {
		got[a.get(q).MessageId]++
	}
	if got["evt_0"] != 1 || got["evt_1"] != 2 {
		t.Errorf("messages %v; want evt_0 once and evt_1 twice (at least once: the timed-out one went through late)", got)
	}
}

// TestBrokerDown: down at start, then up, then cut mid-run: Sends fail
// retryable while it is down and succeed once it is back.
func TestBrokerDown(t *testing.T) {
	raw := brokerURL(t)
	a := newAdmin(t, raw)
	ex := unique("down")
	q := a.exchangeWithQueue(ex)
	px := newProxy(t, target(raw))
	px.cut()
	p := newPublisher(t, map[string]Endpoint{"cb": {URL: px.url(raw), Exchange: ex, Mandatory: true}})
	res := p.Send(context.Background(), request("cb", "evt_1", "k"))
	if res.Outcome != send.Retryable || !strings.Contains(res.Err.Error(), "connecting to") {
		t.Fatalf("down at start: %v %v", res.Outcome, res.Err)
	}
	px.restore()
	eventually(t, func() bool {
		return p.Send(context.Background(), request("cb", "evt_1", "k")).Outcome == send.Delivered
	})
	px.cut()
	res = p.Send(context.Background(), request("cb", "evt_2", "k"))
	if res.Outcome != send.Retryable {
		t.Fatalf("cut mid-run: %v %v", res.Outcome, res.Err)
	}
	px.restore()
	eventually(t, func() bool {
		return p.Send(context.Background(), request("cb", "evt_2", "k")).Outcome == send.Delivered
	})
	got := a.drain(q)
	if got["evt_1"] != 1 || got["evt_2"] != 1 {
		t.Errorf("messages %v", got)
	}
}

// TestWrongCredentials: a clear error without the password, and dials
// back off: Sends during the back-off fail fast without reaching the
// broker.
func TestWrongCredentials(t *testing.T) {
	raw := brokerURL(t)
	px := newProxy(t, target(raw))
	u, _ := url.Parse(px.url(raw))
	u.User = url.UserPassword("guest", "not-the-password-42")
	p := New(Options{DialBackoffMin: time.Hour, DialBackoffMax: time.Hour})
	p.Configure(map[string]Endpoint{"cb": {URL: u.String(), Exchange: "amq.topic"}})
	defer p.Close()
	res := p.Send(context.Background(), request("cb", "evt_1", "k"))
	if res.Outcome != send.Retryable || !strings.Contains(res.Err.Error(), "403") || !strings.Contains(res.Err.Error(), "username or password not allowed") {
		t.Fatalf("wrong credentials: %v %v", res.Outcome, res.Err)
	}
	for range 5 {
		res = p.Send(context.Background(), request("cb", "evt_1", "k"))
		if !strings.Contains(res.Err.Error(), "next connection attempt in") {
			t.Fatalf("during back-off: %v", res.Err)
		}
	}
	if strings.Contains(res.Err.Error(), "not-the-password-42") {
		t.Errorf("error leaks the password: %v", res.Err)
	}
	if n := px.dials.Load(); n != 1 {
		t.Errorf("%d dials; want 1 (back-off)", n)
	}
}

// TestBackoffGrows checks the dial back-off bounds.
func TestBackoffGrows(t *testing.T) {
	p := New(Options{DialBackoffMin: 100 * time.Millisecond, DialBackoffMax: time.Second})
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 60: time.Second} {
		for range 20 {
			if d := p.backoff(n); d < want/2 || d > want {
				t.Errorf("backoff(%d) = %s, want in [%s, %s]", n, d, want/2, want)
			}
		}
	}
}

// TestNotConfigured: a callback without an endpoint is permanent.
func TestNotConfigured(t *testing.T) {
	p := New(Options{})
	res := p.Send(context.Background(), request("nope", "evt_1", "k"))
	if res.Outcome != send.Permanent {
		t.Fatalf("%v %v", res.Outcome, res.Err)
	}
}

func eventually(t *testing.T, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConfigure: a reload keeps the connection of an unchanged endpoint
// and closes those of changed or removed ones.
func TestConfigure(t *testing.T) {
	p := New(Options{})
	ep := Endpoint{URL: "amqp://u:p@broker.invalid:5672/", Exchange: "x"}
	p.Configure(map[string]Endpoint{"a": ep, "b": ep})
	a, b := p.links["a"], p.links["b"]
	ep2 := ep
	ep2.Exchange = "y"
	p.Configure(map[string]Endpoint{"a": ep, "b": ep2})
	if p.links["a"] != a || a.closed {
		t.Error("unchanged endpoint lost its link")
	}
	if p.links["b"] == b || !b.closed {
		t.Error("changed endpoint kept its old link")
	}
	p.Configure(nil)
	if len(p.links) != 0 || !a.closed {
		t.Error("removed endpoints not closed")
	}
	if res := p.Send(context.Background(), request("a", "evt_1", "k")); res.Outcome != send.Permanent {
		t.Errorf("send to a removed endpoint: %v", res.Outcome)
	}
}

// TestReconnectsInBackground: after the broker drops the connection, the
// link is re-opened without waiting for a delivery.
func TestReconnectsInBackground(t *testing.T) {
	raw := brokerURL(t)
	a := newAdmin(t, raw)
	ex := unique("reconnect")
	a.exchangeWithQueue(ex)
	px := newProxy(t, target(raw))
	p := newPublisher(t, map[string]Endpoint{"cb": {URL: px.url(raw), Exchange: ex, Mandatory: true}})
	sendOK(t, p, request("cb", "evt_1", "k"))
	px.cut()
	px.restore()
	l := p.links["cb"]
	eventually(t, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return px.dials.Load() >= 2 && l.sess != nil && l.sess.alive()
	})
	before := px.dials.Load()
	sendOK(t, p, request("cb", "evt_2", "k"))
	if n := px.dials.Load(); n != before {
		t.Errorf("the Send dialled (%d → %d); want the link re-opened already", before, n)
	}
}
