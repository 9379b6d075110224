package proxy

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// fixture reads testdata/name.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSpace(b)
}

// bigList renders a Mistral execution list of n items, about 450 bytes each.
func bigList(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"executions": [`)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `{"id": "6b9f0c1e-1111-4a5b-9c1d-%012d", "workflow_id": "1c2d3e4f-0000-4000-8000-00000000000a", "workflow_name": "wb1.main", "workflow_namespace": "", "description": "", "tags": [], "params": "{\"namespace\": \"\", \"env\": {}}", "task_execution_id": null, "root_execution_id": null, "state": "SUCCESS", "state_info": null, "input": "{\"x\": %d}", "created_at": "2024-05-01 10:00:00", "updated_at": "2024-05-01 10:00:03", "project_id": "<default-project>"}`, i, i)
	}
	b.WriteString(`], "next": null}`)
	return b.Bytes()
}

// seen is what the fake Mistral recorded about one request.
type seen struct {
	Method, Path, RawQuery, Host string
	Header                       http.Header
	Body                         string
}

// fakeMistral is a minimal stand-in for Mistral's API: canned bodies per
// route, Mistral-style errors, and a record of what it received.
type fakeMistral struct {
	t     testing.TB
	mu    sync.Mutex
	seen  []seen
	extra map[string]http.HandlerFunc // path → handler, checked first
}

func (f *fakeMistral) last() seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) == 0 {
		return seen{}
	}
	return f.seen[len(f.seen)-1]
}

func (f *fakeMistral) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body bytes.Buffer
	_, _ = body.ReadFrom(r.Body)
	f.mu.Lock()
	f.seen = append(f.seen, seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.Header.Clone(), body.String()})
	f.mu.Unlock()

	if h, ok := f.extra[r.URL.Path]; ok {
		h(w, r)
		return
	}
	path := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/base"), "/") // base path in some tests; pecan accepts a trailing slash
	jsonBody := func(status int, b []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Openstack-Request-Id", "req-1234")
		w.WriteHeader(status)
		_, _ = w.Write(b)
	}
	seg := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case path == "/v2/executions" && r.Method == http.MethodGet:
		jsonBody(200, fixture(f.t, "executions_list.json"))
	case path == "/v2/executions" && r.Method == http.MethodPost:
		jsonBody(201, fixture(f.t, "execution.json"))
	case len(seg) == 3 && seg[1] == "executions" && seg[2] == "nope":
		jsonBody(404, []byte(`{"faultcode": "Client", "faultstring": "WorkflowExecution not found [id=nope]", "debuginfo": null}`))
	case len(seg) == 3 && seg[1] == "executions" && r.Method == http.MethodPut && strings.Contains(body.String(), "BOGUS"):
		jsonBody(400, []byte(`{"faultcode": "Client", "faultstring": "Cannot change state to BOGUS.", "debuginfo": null}`))
	case len(seg) == 3 && seg[1] == "executions" && seg[2] == "boom":
		jsonBody(500, []byte(`{"faultcode": "Server", "faultstring": "Internal error", "debuginfo": null}`))
	case len(seg) == 3 && seg[1] == "executions":
		jsonBody(200, fixture(f.t, "execution.json"))
	case len(seg) == 4 && seg[1] == "executions" && seg[3] == "tasks":
		jsonBody(200, fixture(f.t, "tasks_list.json"))
	case path == "/v2/tasks":
		jsonBody(200, fixture(f.t, "tasks_list.json"))
	case len(seg) == 3 && seg[1] == "tasks":
		jsonBody(200, fixture(f.t, "task.json"))
	case path == "/v2/fields":
		jsonBody(200, fixture(f.t, "executions_fields.json"))
	case path == "/v2/mixed":
		jsonBody(200, fixture(f.t, "executions_mixed.json"))
	case path == "/v2/big":
		jsonBody(200, bigList(200))
	case path == "/v2/workbooks" && r.Method == http.MethodPost:
		// Mistral labels this JSON text/plain.
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		w.WriteHeader(201)
		_, _ = w.Write([]byte(`{"id": "wb-1", "name": "wb1", "namespace": "", "definition": "version: '2.0'", "tags": [], "scope": "private", "project_id": "<default-project>", "created_at": "2024-05-01 10:00:00", "updated_at": null}`))
	case path == "/v2/workbooks" && r.Method == http.MethodPut:
		jsonBody(400, []byte(`{"faultstring": "Invalid DSL"}`))
	case len(seg) == 3 && seg[1] == "workbooks" && r.Method == http.MethodDelete:
		w.WriteHeader(204)
	case path == "":
		jsonBody(200, []byte(`{"versions": [{"id": "v2.0", "status": "CURRENT", "links": [{"href": "http://`+r.Host+`/v2", "rel": "self"}]}]}`))
	default:
		jsonBody(404, []byte(`{"faultcode": "Client", "faultstring": "The resource could not be found.", "debuginfo": null}`))
	}
}

// recorder is an Observer that records, and signals each observation.
type recorder struct {
	mu  sync.Mutex
	obs []event.Observation
	ch  chan struct{}
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{}, 1<<16)} }

func (r *recorder) Observe(o event.Observation) {
	r.mu.Lock()
	r.obs = append(r.obs, o)
	r.mu.Unlock()
	r.ch <- struct{}{}
}

func (r *recorder) all() []event.Observation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event.Observation(nil), r.obs...)
}

// wbCounter is a WorkbookWatcher that counts calls.
type wbCounter struct {
	mu sync.Mutex
	n  int
}

func (w *wbCounter) WorkbooksChanged() { w.mu.Lock(); w.n++; w.mu.Unlock() }
func (w *wbCounter) count() int        { w.mu.Lock(); defer w.mu.Unlock(); return w.n }

// env is one proxy in front of one fake Mistral.
type env struct {
	up    *httptest.Server
	fake  *fakeMistral
	p     *Proxy
	front *httptest.Server
	rec   *recorder
	wb    *wbCounter
	// client talks to front and ignores HTTP_PROXY.
	client *http.Client
}

var testClock = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)

// newEnv starts a fake Mistral and a proxy in front of it; mod may adjust
// the options (Upstream is already set).
func newEnv(t testing.TB, upstreamHandler http.Handler, mod func(*Options)) *env {
	t.Helper()
	e := &env{rec: newRecorder(), wb: &wbCounter{}}
	e.fake = &fakeMistral{t: t, extra: map[string]http.HandlerFunc{}}
	if upstreamHandler == nil {
		upstreamHandler = e.fake
	}
	e.up = httptest.NewServer(upstreamHandler)
	t.Cleanup(e.up.Close)
	u, _ := url.Parse(e.up.URL)
	opts := Options{Upstream: u, Observer: e.rec, Workbooks: e.wb, Now: func() time.Time { return testClock }}
	if mod != nil {
		mod(&opts)
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.p = p
	e.front = httptest.NewServer(p)
	t.Cleanup(e.front.Close)
	e.client = &http.Client{Transport: &http.Transport{Proxy: nil}}
	t.Cleanup(e.client.CloseIdleConnections)
	return e
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
