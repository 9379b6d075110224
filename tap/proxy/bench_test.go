package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

type countingObserver struct{ n atomic.Int64 }

func (c *countingObserver) Observe(event.Observation) { c.n.Add(1) }

// benchProxies runs fn against three front ends for the same upstream: the
// tapping proxy (parse off the critical path), the tapping proxy waiting for
// the parse after every request (full cost), and a plain
// httputil.ReverseProxy baseline.
//
// With parallel set, requests are sent from concurrent clients (and
// tap+parse, which waits for the parse after every request, is left out).
func benchProxies(b *testing.B, path string, body []byte, parallel bool) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	client := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConns: 64, MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()

	get := func(b *testing.B, url string) {
		resp, err := client.Get(url)
		if err != nil {
			b.Error(err)
			return
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			b.Error(err)
		}
		resp.Body.Close()
	}
	run := func(b *testing.B, front http.Handler, after func()) {
		srv := httptest.NewServer(front)
		defer srv.Close()
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		if parallel && after == nil {
			// Concurrent clients (GOMAXPROCS×8 goroutines), as under load:
			// contention and GC show here, not in the serial loop.
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					get(b, srv.URL+path)
				}
			})
			return
		}
		for b.Loop() {
			get(b, srv.URL+path)
			if after != nil {
				after()
			}
		}
	}
	newTap := func(b *testing.B) (*Proxy, *countingObserver) {
		obs := &countingObserver{}
		p, err := New(Options{Upstream: u, Observer: obs})
		if err != nil {
			b.Fatal(err)
		}
		return p, obs
	}
	b.Run("tap", func(b *testing.B) {
		p, _ := newTap(b)
		run(b, p, nil)
		p.Wait()
	})
	b.Run("tap+parse", func(b *testing.B) {
		if parallel {
			b.Skip("serial only")
		}
		p, obs := newTap(b)
		run(b, p, p.Wait)
		if obs.n.Load() == 0 {
			b.Fatal("nothing observed")
		}
	})
	b.Run("notap", func(b *testing.B) {
		// goproxy and the hooks, Observer nil: no capture, no parse.
		p, err := New(Options{Upstream: u})
		if err != nil {
			b.Fatal(err)
		}
		run(b, p, nil)
	})
	b.Run("httputil", func(b *testing.B) {
		tr, _ := NewTransport(TransportOptions{})
		rp := &httputil.ReverseProxy{
			Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.Out.Host = pr.In.Host },
			Transport: tr,
		}
		run(b, rp, nil)
	})
}

func BenchmarkProxySmallGET(b *testing.B) {
	benchProxies(b, "/v2/executions/6b9f0c1e-1111-4a5b-9c1d-000000000001", fixture(b, "execution.json"), false)
}

func BenchmarkProxySmallGETParallel(b *testing.B) {
	benchProxies(b, "/v2/executions/6b9f0c1e-1111-4a5b-9c1d-000000000001", fixture(b, "execution.json"), true)
}

func BenchmarkProxyList1000(b *testing.B) {
	benchProxies(b, "/v2/executions", bigList(1000), false)
}

func BenchmarkParseList1000(b *testing.B) {
	body := bigList(1000)
	rt := route{kind: event.KindExecution, list: true}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		p, err := parseBody(rt, body, testClock)
		if err != nil || len(p.obs) != 1000 {
			b.Fatal(err, len(p.obs))
		}
	}
}
