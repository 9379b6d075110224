package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestServeGracefulShutdown: after ctx is done, Serve stops accepting,
// lets the in-flight request finish, and returns nil.
func TestServeGracefulShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	started, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		_, _ = io.WriteString(w, "done")
	})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- ServeListener(ctx, ln, h, nil) }()

	bodyc := make(chan string, 1)
	go func() {
		resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Get("http://" + addr + "/")
		if err != nil {
			bodyc <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		bodyc <- string(b)
	}()
	<-started
	cancel()
	waitFor(t, "the listener to close", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-errc:
		t.Fatalf("Serve returned with a request in flight: %v", err)
	default:
	}
	close(release)
	if b := <-bodyc; b != "done" {
		t.Errorf("in-flight request got %q", b)
	}
	if err := <-errc; err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
}

func TestServeListenError(t *testing.T) {
	if err := Serve(context.Background(), "127.0.0.1:-1", http.NotFoundHandler(), nil); err == nil {
		t.Error("no error for a bad address")
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestGoproxyLoggerLevel: goproxy's lines, WARN included, are debug.
func TestGoproxyLoggerLevel(t *testing.T) {
	for _, lvl := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		var buf syncBuffer
		g := goproxyLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: lvl}))}
		g.Printf("[%03d] WARN: Can't close response body %v\n", 1, "x")
		out := buf.String()
		if lvl == slog.LevelDebug && (!strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "Can't close response body x")) {
			t.Errorf("debug logger got %q", out)
		}
		if lvl == slog.LevelInfo && out != "" {
			t.Errorf("info logger got %q", out)
		}
	}
}

// TestLogsNoSecrets: with debug logging on (goproxy verbose too), the
// X-Auth-Token value never reaches the log.
func TestLogsNoSecrets(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnv(t, nil, func(o *Options) { o.Logger = log })
	do(t, e.client, "GET", e.front.URL+"/v2/executions", "")
	do(t, e.client, "GET", e.front.URL+"/v2/executions/nope", "")
	e.p.Wait()

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead, _ := url.Parse("http://" + ln.Addr().String())
	ln.Close()
	e2 := newEnv(t, nil, func(o *Options) { o.Logger = log; o.Upstream = dead })
	do(t, e2.client, "GET", e2.front.URL+"/v2/executions", "")

	out := buf.String()
	if testing.Verbose() {
		t.Log(out)
	}
	if out == "" {
		t.Fatal("nothing logged at debug level")
	}
	if strings.Contains(out, "secret-token") {
		t.Errorf("log contains the X-Auth-Token value:\n%s", out)
	}
	if !strings.Contains(out, "upstream round trip failed") {
		t.Errorf("upstream failure not logged:\n%s", out)
	}
}

// acceptCounter is a listener that counts the connections it handed out.
type acceptCounter struct {
	net.Listener
	mu sync.Mutex
	n  int
}

func (l *acceptCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.n++
		l.mu.Unlock()
	}
	return c, err
}

func (l *acceptCounter) count() int { l.mu.Lock(); defer l.mu.Unlock(); return l.n }

// keepAliveGET sends one keep-alive request on c and reads the response,
// giving up after d.
func keepAliveGET(c net.Conn, br *bufio.Reader, d time.Duration) error {
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return err
}

// serveWith runs ServeWith on a fresh loopback listener until the test
// ends, and returns the listener.
func serveWith(t *testing.T, o ServeOptions) *acceptCounter {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &acceptCounter{Listener: inner}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	go func() { errc <- ServeWith(ctx, ln, h, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("ServeWith: %v", err)
		}
	})
	return ln
}

// TestServeMaxConnections: with MaxConnections 2 and two idle keep-alive
// connections open, a third connection is not served (nor accepted) until
// one of them closes; then it is.
func TestServeMaxConnections(t *testing.T) {
	ln := serveWith(t, ServeOptions{MaxConnections: 2})
	addr := ln.Addr().String()
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	c1, r1 := dial()
	c2, r2 := dial()
	for _, c := range []struct {
		c net.Conn
		r *bufio.Reader
	}{{c1, r1}, {c2, r2}} {
		if err := keepAliveGET(c.c, c.r, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	c3, r3 := dial()
	// Bounded wait for something that must not happen: a broken cap
	// answers within microseconds; a slow machine can only delay that.
	err := keepAliveGET(c3, r3, 300*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("connection 3 with 2 open: %v, want no answer (a read timeout)", err)
	}
	if n := ln.count(); n != 2 {
		t.Fatalf("%d connections accepted, want 2", n)
	}
	c1.Close()
	_ = c3.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(r3, nil)
	if err != nil {
		t.Fatalf("connection 3 after connection 1 closed: %v", err)
	}
	resp.Body.Close()
	if n := ln.count(); n != 3 {
		t.Fatalf("%d connections accepted, want 3", n)
	}
}

// TestServeIdleTimeout: a keep-alive connection idle for IdleTimeout is
// closed by the server.
func TestServeIdleTimeout(t *testing.T) {
	ln := serveWith(t, ServeOptions{IdleTimeout: 50 * time.Millisecond})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if err := keepAliveGET(c, br, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v, want the server to close it (EOF)", err)
	}
}
