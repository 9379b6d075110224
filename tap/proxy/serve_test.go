package proxy

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
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
