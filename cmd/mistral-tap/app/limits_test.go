package app_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/testenv/fakemistral"
)

const limitConfig = `
listen: 127.0.0.1:0
upstream: %s
state_dir: %s
proxy:
  max_connections: 1
  idle_timeout: 1h
watch:
  interval: 0s
`

// TestProxyMaxConnectionsWired: proxy.max_connections reaches the proxy's
// listener: with one idle keep-alive client connection open, a second one
// is not served until the first closes.
func TestProxyMaxConnectionsWired(t *testing.T) {
	eng := fakemistral.New(fakemistral.Options{})
	defer eng.Close()
	es := httptest.NewServer(eng)
	defer es.Close()
	base, _ := runApp(t, writeConfig(t, fmt.Sprintf(limitConfig, es.URL, t.TempDir())), false)
	addr := strings.TrimPrefix(base, "http://")

	get := func(c net.Conn, br *bufio.Reader, wait time.Duration) error {
		if _, err := io.WriteString(c, "GET /v2/workbooks HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	c1, r1 := dial()
	if err := get(c1, r1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c2, r2 := dial()
	// Bounded wait for something that must not happen (an uncapped proxy
	// answers at once; a slow machine can only delay that).
	err := get(c2, r2, 300*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("second connection with max_connections 1: %v, want no answer yet", err)
	}
	c1.Close()
	_ = c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(r2, nil)
	if err != nil {
		t.Fatalf("second connection after the first closed: %v", err)
	}
	resp.Body.Close()
}
