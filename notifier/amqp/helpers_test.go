package amqp

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/mistral-tap/mistral-tap/notifier/send"
)

// brokerURL is the real RabbitMQ of testenv/realmistral; tests skip
// without it.
func brokerURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("MISTRAL_E2E_AMQP_URL")
	if u == "" {
		t.Skip("MISTRAL_E2E_AMQP_URL is not set (eval \"$(bash testenv/realmistral/mistral.sh env)\")")
	}
	return u
}

// unique returns a name no other test (or helper) uses on the shared "/"
// vhost.
func unique(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "mtap-test-" + prefix + "-" + hex.EncodeToString(b)
}

// admin is a plain client for setting up and reading the broker.
type admin struct {
	t    testing.TB
	conn *amqp.Connection
	ch   *amqp.Channel
}

func newAdmin(t testing.TB, raw string) *admin {
	t.Helper()
	c, err := amqp.Dial(raw)
	if err != nil {
		t.Fatalf("admin dial: %v", err)
	}
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	a := &admin{t: t, conn: c, ch: ch}
	t.Cleanup(func() { _ = c.Close() })
	return a
}

// exchangeWithQueue declares a durable topic exchange and a queue bound to
// it with key "#", both deleted at cleanup.
func (a *admin) exchangeWithQueue(ex string) string {
	a.t.Helper()
	q := ex + "-q"
	a.must(a.ch.ExchangeDeclare(ex, "topic", true, false, false, false, nil))
	_, err := a.ch.QueueDeclare(q, true, false, false, false, nil)
	a.must(err)
	a.must(a.ch.QueueBind(q, "#", ex, false, nil))
	a.t.Cleanup(func() { a.cleanup(ex, q) })
	return q
}

func (a *admin) cleanup(ex, q string) {
	ch, err := a.conn.Channel()
	if err != nil {
		return
	}
	defer ch.Close()
	if q != "" {
		_, _ = ch.QueueDelete(q, false, false, false)
	}
	if ex != "" {
		_ = ch.ExchangeDelete(ex, false, false)
	}
}

func (a *admin) must(err error) {
	a.t.Helper()
	if err != nil {
		a.t.Fatal(err)
	}
}

// get reads one message from q, waiting up to 5 s.
func (a *admin) get(q string) amqp.Delivery {
	a.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		d, ok, err := a.ch.Get(q, true)
		a.must(err)
		if ok {
			return d
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.t.Fatalf("no message on %s", q)
	return amqp.Delivery{}
}

// drain returns every message on q, by message id (counting duplicates).
func (a *admin) drain(q string) map[string]int {
	a.t.Helper()
	got := map[string]int{}
	for {
		d, ok, err := a.ch.Get(q, true)
		a.must(err)
		if !ok {
			return got
		}
		got[d.MessageId]++
	}
}

func request(cb, id, key string) send.Request {
	return send.Request{
		Callback: cb, EventID: id, RootID: "root-1", Topic: key, Transport: "amqp",
		Header: http.Header{"Content-Type": {"application/json"}, "X-Team": {"ops"}},
		Body:   []byte(`{"id":"` + id + `"}`),
	}
}

// proxy is a TCP proxy to the broker that a test can cut (every
// connection closed, new ones refused), restore and pause (bytes from the
// broker held back, so confirms never arrive).
type proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	down   bool
	paused bool
	resume chan struct{}
	conns  []net.Conn
	dials  atomic.Int32
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, resume: make(chan struct{})}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

// url rewrites the broker URL raw to go through the proxy.
func (p *proxy) url(raw string) string {
	u, _ := url.Parse(raw)
	u.Host = p.ln.Addr().String()
	return u.String()
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.dials.Add(1)
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(s, c); s.Close() }()
		go func() { p.copyBack(c, s); c.Close() }()
	}
}

// copyBack copies broker → client, holding bytes while paused.
func (p *proxy) copyBack(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			paused, resume := p.paused, p.resume
			p.mu.Unlock()
			if paused {
				<-resume
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

func (p *proxy) pause() {
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
}

func (p *proxy) unpause() {
	p.mu.Lock()
	p.paused = false
	close(p.resume)
	p.resume = make(chan struct{})
	p.mu.Unlock()
}

// target is the host:port of a broker URL.
func target(raw string) string {
	u, _ := url.Parse(raw)
	return u.Host
}
