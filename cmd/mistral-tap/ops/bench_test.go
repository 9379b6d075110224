package ops

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mistral-tap/mistral-tap/tap/proxy"
)

// BenchmarkInstrumentProxy is the middleware's own cost per request: route
// classification, the status recorder and the two metric updates, around a
// handler that does nothing.
func BenchmarkInstrumentProxy(b *testing.B) {
	m := NewMetrics("bench")
	h := m.InstrumentProxy(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	}), func(r *http.Request) string { return proxy.RouteClass("", r.Method, r.URL.Path) })
	req := httptest.NewRequest(http.MethodGet, "/v2/executions/6b9f0c1e-1111-4a5b-9c1d-000000000001", nil)
	w := nopWriter{h: http.Header{}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.ServeHTTP(w, req)
		}
	})
}

// nopWriter discards the response, so that the benchmark measures the
// middleware rather than a recorder.
type nopWriter struct{ h http.Header }

func (w nopWriter) Header() http.Header         { return w.h }
func (w nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w nopWriter) WriteHeader(int)             {}
