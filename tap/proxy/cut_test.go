package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// rawUpstream is an HTTP/1.1 server on a raw socket: it reads one request
// per connection, writes resp byte for byte and closes the connection, so
// it can send what net/http's server never would (a body cut short).
func rawUpstream(t *testing.T, resp string) *url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				_, _ = io.WriteString(c, resp)
			}()
		}
	}()
	return &url.URL{Scheme: "http", Host: ln.Addr().String()}
}

// TestUpstreamCutAbortsResponse: a body the upstream cuts short (a chunked
// body without its last chunk, fewer bytes than Content-Length) fails at
// the client through the proxy as it fails directly, on tapped and
// untapped routes alike, and the tap observes nothing from it. Complete
// bodies from the same raw upstream pass (the harness can tell).
func TestUpstreamCutAbortsResponse(t *testing.T) {
	exec := string(fixture(t, "execution.json"))
	list := `{"executions": [` + exec + `], "next": null}`
	part := list[:81]
	chunked := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
	sized := func(n int) string {
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", n)
	}
	chunk := func(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }
	cases := []struct {
		name, path, resp string
		sent             string // the body bytes in resp
		cut              bool
	}{
		{"chunked, cut after a chunk, tapped", "/v2/executions", chunked + chunk(part), part, true},
		{"chunked, cut after a chunk, untapped", "/v2/workbooks", chunked + chunk(part), part, true},
		{"chunked, cut inside a chunk, tapped", "/v2/executions", chunked + fmt.Sprintf("%x\r\n", len(list)) + part, part, true},
		{"chunked, cut inside a chunk, untapped", "/v2/environments", chunked + fmt.Sprintf("%x\r\n", len(list)) + part, part, true},
		{"content-length short, tapped", "/v2/executions", sized(len(list)) + part, part, true},
		{"content-length short, untapped", "/v2/workbooks", sized(len(list)) + part, part, true},
		{"content-length short, one execution", "/v2/executions/6b9f0c1e", sized(len(exec)) + exec[:len(exec)-1], exec[:len(exec)-1], true},
		{"chunked complete, tapped", "/v2/executions", chunked + chunk(part) + chunk(list[81:]) + "0\r\n\r\n", list, false},
		{"content-length complete, tapped", "/v2/executions", sized(len(list)) + list, list, false},
		{"content-length complete, untapped", "/v2/workbooks", sized(len(list)) + list, list, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up := rawUpstream(t, c.resp)
			e := newEnv(t, nil, func(o *Options) { o.Upstream = up })
			get := func(base string) (string, error) {
				resp, err := e.client.Get(base + c.path)
				if err != nil {
					return "", err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				return string(b), err
			}
			_, direct := get(up.String())
			body, proxied := get(e.front.URL)
			if !c.cut {
				if direct != nil || proxied != nil || body != list {
					t.Fatalf("complete body: direct err %v, proxied err %v, %d of %d bytes", direct, proxied, len(body), len(list))
				}
				e.p.Wait()
				if c.path == "/v2/executions" && len(e.rec.all()) != 1 {
					t.Fatalf("complete tapped body gave %d observations, want 1", len(e.rec.all()))
				}
				return
			}
			if !errors.Is(direct, io.ErrUnexpectedEOF) {
				t.Fatalf("directly: %v, want an unexpected EOF (the harness is wrong)", direct)
			}
			if !errors.Is(proxied, io.ErrUnexpectedEOF) {
				t.Fatalf("through the proxy: err %v after %q, want an unexpected EOF as directly", proxied, body)
			}
			if !strings.HasPrefix(c.sent, body) {
				t.Errorf("through the proxy the client got %q, want a prefix of the upstream's bytes", body)
			}
			waitFor(t, "the cut to be counted", func() bool { return true })
			e.p.Wait()
			if obs := e.rec.all(); len(obs) != 0 {
				t.Errorf("the tap observed %d resources from a truncated body", len(obs))
			}
			st := e.p.Stats()
			if tapped := strings.HasPrefix(c.name, "content-length short, one") || strings.HasSuffix(c.name, ", tapped"); tapped && st.SkippedIncomplete != 1 {
				t.Errorf("SkippedIncomplete = %d, want 1", st.SkippedIncomplete)
			}
			if st.Tapped != 0 || st.ParseErrors != 0 {
				t.Errorf("truncated body was parsed: %+v", st)
			}
		})
	}
}
