package mistral

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

func newClient(t *testing.T, base string, o Options) *Client {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	o.BaseURL = u
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// recorder answers requests in order from a script and records them.
type recorder struct {
	mu      sync.Mutex
	reqs    []*http.Request
	answers []answer
}

type answer struct {
	status int
	body   string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, req)
	a := answer{status: http.StatusTeapot, body: "script exhausted"}
	if len(r.answers) > 0 {
		a, r.answers = r.answers[0], r.answers[1:]
	}
	w.WriteHeader(a.status)
	fmt.Fprint(w, a.body)
}

func (r *recorder) queries() []url.Values {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []url.Values
	for _, req := range r.reqs {
		out = append(out, req.URL.Query())
	}
	return out
}

func execs(ids ...string) string {
	var rows []string
	for _, id := range ids {
		rows = append(rows, fmt.Sprintf(`{"id": %q, "state": "RUNNING"}`, id))
	}
	return `{"executions": [` + strings.Join(rows, ",") + `]}`
}

// TestExecutionsPageByMarker: full pages continue with the last row's id as
// marker, a short page ends the list, and every request carries the fields
// and the page size; the caller's query is kept and readable.
func TestExecutionsPageByMarker(t *testing.T) {
	tests := []struct {
		name        string
		answers     []answer
		wantIDs     []string
		wantMarkers []string // per request
	}{
		{"one short page", []answer{{200, execs("a")}}, []string{"a"}, []string{""}},
		{"empty", []answer{{200, `{"executions": []}`}}, nil, []string{""}},
		{"no list key", []answer{{200, `{}`}}, nil, []string{""}},
		{"two pages", []answer{{200, execs("a", "b")}, {200, execs("c")}}, []string{"a", "b", "c"}, []string{"", "b"}},
		{"exact multiple asks once more", []answer{{200, execs("a", "b")}, {200, execs()}}, []string{"a", "b"}, []string{"", "b"}},
		{
			"bad rows dropped, marker kept", []answer{
				{200, `{"executions": [{"id": "a", "state": "RUNNING"}, {"id": "b"}]}`},
				{200, `{"executions": [{"id": "c", "state": ""}]}`},
			},
			[]string{"a"}, []string{"", "b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{answers: tt.answers}
			srv := httptest.NewServer(rec)
			defer srv.Close()
			c := newClient(t, srv.URL, Options{PageSize: 2})
			q := url.Values{"updated_at": {"gte:2026-11-28 10:00:00"}, "sort_keys": {"updated_at,id"}}
			got, err := All(c.Executions(context.Background(), q))
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, x := range got {
				ids = append(ids, x.ID)
			}
			if !slices.Equal(ids, tt.wantIDs) {
				t.Errorf("ids = %v, want %v", ids, tt.wantIDs)
			}
			var markers []string
			for _, q := range rec.queries() {
				markers = append(markers, q.Get("marker"))
				if q.Get("fields") != ExecutionFields || q.Get("limit") != "2" || q.Get("updated_at") != "gte:2026-11-28 10:00:00" {
					t.Errorf("query %v", q)
				}
			}
			if !slices.Equal(markers, tt.wantMarkers) {
				t.Errorf("markers = %q, want %q", markers, tt.wantMarkers)
			}
			if q.Get("fields") != "" || q.Get("limit") != "" {
				t.Error("the caller's query was modified")
			}
			raw := rec.reqs[0].URL.RawQuery
			if !strings.Contains(raw, "gte:2026-11-28%2010:00:00") || !strings.Contains(raw, "updated_at,id") {
				t.Errorf("query not readable or space not %%20: %s", raw)
			}
		})
	}
}

// TestTasksAndExecution: tasks ask for their own fields; a single
// execution is read whole, and one without a state is an error.
func TestTasksAndExecution(t *testing.T) {
	rec := &recorder{answers: []answer{
		{200, `{"tasks": [{"id": "t1", "state": "SUCCESS", "workflow_execution_id": "e1"}]}`},
		{200, `{"id": "e/1", "state": "SUCCESS", "output": "{}"}`},
		{200, `{"id": "e2"}`},
	}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	c := newClient(t, srv.URL+"/prefix/", Options{})
	ctx := context.Background()
	ts, err := All(c.Tasks(ctx, url.Values{"workflow_execution_id": {"e1"}}))
	if err != nil || len(ts) != 1 || ts[0].WorkflowExecutionID != "e1" {
		t.Fatalf("tasks = %v, %v", ts, err)
	}
	x, err := c.Execution(ctx, "e/1")
	if err != nil || x.State != event.StateSuccess {
		t.Fatalf("execution = %v, %v", x, err)
	}
	if _, err := c.Execution(ctx, "e2"); err == nil || !strings.Contains(err.Error(), "lacks id or state") {
		t.Errorf("execution without state: %v", err)
	}
	paths := []string{rec.reqs[0].URL.Path, rec.reqs[1].URL.EscapedPath()}
	if want := []string{"/prefix/v2/tasks", "/prefix/v2/executions/e%2F1"}; !slices.Equal(paths, want) {
		t.Errorf("paths = %v, want %v", paths, want)
	}
	if q := rec.queries(); q[0].Get("fields") != TaskFields || q[0].Get("limit") != "500" || len(q[1]) != 0 {
		t.Errorf("queries = %v", q)
	}
}

// workbookPages serves workbooks in pages of two with an absolute `next`
// built from another host, as Mistral does behind a proxy.
func workbookPages(names []string, loopAt string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := 0
		if m := r.URL.Query().Get("marker"); m != "" {
			start = slices.Index(names, m) + 1
		}
		end := min(start+2, len(names))
		var rows []string
		for _, n := range names[start:end] {
			rows = append(rows, fmt.Sprintf(`{"name": %q, "definition": "x"}`, n))
		}
		next := ""
		if end-start == 2 {
			marker := names[end-1]
			if marker == loopAt {
				marker = names[1]
			}
			next = "http://elsewhere:8989/v2/workbooks?limit=2&sort_keys=created_at,id&marker=" + marker
		}
		fmt.Fprintf(w, `{"workbooks": [%s], "next": %q}`, strings.Join(rows, ","), next)
	}
}

// TestWorkbooksFollowNext: `next` is followed by its query only, the
// caller's all_projects is kept, and the list ends at an empty page, a
// missing `next` or a marker seen before.
func TestWorkbooksFollowNext(t *testing.T) {
	tests := []struct {
		name   string
		names  []string
		loopAt string
		want   []string
		reqs   int
	}{
		{"short last page", []string{"a", "b", "c"}, "", []string{"a", "b", "c"}, 2},
		{"exact multiple", []string{"a", "b", "c", "d"}, "", []string{"a", "b", "c", "d"}, 3},
		{"marker repeats", []string{"a", "b", "c", "d", "e"}, "d", []string{"a", "b", "c", "d"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var queries []url.Values
			var hosts []string
			h := workbookPages(tt.names, tt.loopAt)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				queries = append(queries, r.URL.Query())
				hosts = append(hosts, r.Host)
				h(w, r)
			}))
			defer srv.Close()
			c := newClient(t, srv.URL, Options{PageSize: 2})
			got, err := All(c.Workbooks(context.Background(), url.Values{"all_projects": {"true"}}))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, wb := range got {
				names = append(names, wb.Name)
			}
			if !slices.Equal(names, tt.want) || len(queries) != tt.reqs {
				t.Errorf("got %v in %d requests, want %v in %d", names, len(queries), tt.want, tt.reqs)
			}
			for i, q := range queries {
				if q.Get("all_projects") != "true" || q.Get("limit") != "2" || hosts[i] != strings.TrimPrefix(srv.URL, "http://") {
					t.Errorf("request %d: %v to %s", i, q, hosts[i])
				}
			}
		})
	}
}

// TestErrorBodies: a non-2xx answer is an *Error with Mistral's
// faultstring or an excerpt; unreachable engines and malformed bodies are
// errors naming the path, never the query or the headers' secrets.
func TestErrorBodies(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		wantStatus int
		want       string
	}{
		{"faultstring", 404, `{"faultcode": "Client", "faultstring": "WorkflowExecution not found [id=x]", "debuginfo": null}`, 404,
			"mistral: GET /v2/executions/x: engine answered 404: WorkflowExecution not found [id=x]"},
		{"empty body", 500, "", 500, "mistral: GET /v2/executions/x: engine answered 500"},
		{"html excerpt", 502, "<html>" + strings.Repeat("x", 300), 502,
			"mistral: GET /v2/executions/x: engine answered 502: <html>" + strings.Repeat("x", 194)},
		{"malformed JSON", 200, `{"id": `, 0, "mistral: GET /v2/executions/x: malformed JSON from the engine: unexpected end of JSON input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(&recorder{answers: []answer{{tt.status, tt.body}}})
			defer srv.Close()
			c := newClient(t, srv.URL, Options{})
			_, err := c.Execution(context.Background(), "x")
			if err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v\nwant  %s", err, tt.want)
			}
			var me *Error
			if got := errors.As(err, &me); got != (tt.wantStatus != 0) || (got && me.Status != tt.wantStatus) {
				t.Errorf("errors.As(*Error) = %v %+v", got, me)
			}
			if !c.LastContact().IsZero() != (tt.status == 200) {
				t.Errorf("last contact %v after %d", c.LastContact(), tt.status)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close()
		c := newClient(t, srv.URL, Options{Headers: map[string]string{"X-Auth-Token": "secret-tok"}})
		_, err := All(c.Executions(context.Background(), url.Values{"updated_at": {"gte:2026"}}))
		if err == nil || !strings.HasPrefix(err.Error(), "mistral: GET /v2/executions: engine unreachable: ") ||
			strings.Contains(err.Error(), "gte") || strings.Contains(err.Error(), "secret-tok") {
			t.Errorf("err = %v", err)
		}
	})
}

// TestHeaders: every request carries Accept, the User-Agent and the static
// headers; with Keystone, X-Auth-Token is Keystone's.
func TestHeaders(t *testing.T) {
	k := &fakeKeystone{life: time.Hour, now: time.Now}
	tests := []struct {
		name      string
		keystone  bool
		wantToken string
	}{
		{"static", false, "static-tok"},
		{"keystone over static", true, "tok1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []http.Header
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got = append(got, r.Header.Clone())
				fmt.Fprint(w, execs("a", "b"))
			}))
			defer srv.Close()
			o := Options{PageSize: 2, Headers: map[string]string{"X-Auth-Token": "static-tok", "X-Extra": "1"}}
			if tt.keystone {
				k.issued.Store(0)
				o.Keystone = newKeystone(t, k, "s3cret")
			}
			c := newClient(t, srv.URL, o)
			n := 0
			for _, err := range c.Executions(context.Background(), nil) {
				if err != nil {
					t.Fatal(err)
				}
				if n++; n == 3 {
					break
				}
			}
			if len(got) != 3 {
				t.Fatalf("%d requests, want 3 (stopping the iteration stops the list)", len(got))
			}
			for _, h := range got {
				if h.Get("X-Auth-Token") != tt.wantToken || h.Get("X-Extra") != "1" || h.Get("Accept") != "application/json" || h.Get("User-Agent") != "mistral-tap" {
					t.Errorf("headers %v", h)
				}
			}
		})
	}
}

// TestRetryOnceAfter401: with Keystone, a 401 drops the token and the
// request is retried once with a fresh one; a second 401 is the answer.
// Without Keystone a 401 is not retried.
func TestRetryOnceAfter401(t *testing.T) {
	tests := []struct {
		name       string
		keystone   bool
		reject     map[string]bool // tokens Mistral refuses
		wantSent   []string
		wantStatus int // 0: success
	}{
		{"revoked token renewed", true, map[string]bool{"tok1": true}, []string{"tok1", "tok2"}, 0},
		{"retried once only", true, map[string]bool{"tok1": true, "tok2": true}, []string{"tok1", "tok2"}, 401},
		{"static token not retried", false, map[string]bool{"": true}, []string{""}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sent []string
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tok := r.Header.Get("X-Auth-Token")
				sent = append(sent, tok)
				if tt.reject[tok] {
					w.WriteHeader(http.StatusUnauthorized)
					fmt.Fprint(w, `{"faultstring": "Authentication required"}`)
					return
				}
				fmt.Fprint(w, `{"id": "e1", "state": "RUNNING"}`)
			}))
			defer api.Close()
			o := Options{}
			if tt.keystone {
				o.Keystone = newKeystone(t, &fakeKeystone{life: time.Hour, now: time.Now}, "s3cret")
			}
			c := newClient(t, api.URL, o)
			_, err := c.Execution(context.Background(), "e1")
			var me *Error
			if tt.wantStatus == 0 && err != nil || tt.wantStatus != 0 && (!errors.As(err, &me) || me.Status != tt.wantStatus) {
				t.Errorf("err = %v, want status %d", err, tt.wantStatus)
			}
			if !slices.Equal(sent, tt.wantSent) {
				t.Errorf("tokens sent %q, want %q", sent, tt.wantSent)
			}
		})
	}
}

func TestNewNeedsBaseURL(t *testing.T) {
	for _, u := range []*url.URL{nil, {Path: "/v2"}} {
		if _, err := New(Options{BaseURL: u}); err == nil {
			t.Errorf("New(%v) succeeded", u)
		}
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct{ prev, interval, want time.Duration }{
		{0, time.Second, time.Second},                          // first failure at the start
		{0, 100 * time.Millisecond, time.Second},               // at least a second
		{time.Second, time.Second, 2 * time.Second},            // doubles
		{5 * time.Second, 2 * time.Second, 10 * time.Second},   //
		{0, time.Minute, 30 * time.Second},                     // capped
		{20 * time.Second, time.Second, 30 * time.Second},      // capped
		{30 * time.Second, 100 * time.Millisecond, MaxBackoff}, // stays capped
	}
	for _, tt := range tests {
		if got := Backoff(tt.prev, tt.interval); got != tt.want {
			t.Errorf("Backoff(%v, %v) = %v, want %v", tt.prev, tt.interval, got, tt.want)
		}
	}
}

func TestOutageLogsOnce(t *testing.T) {
	var o Outage
	down, other := errors.New("down"), errors.New("refused")
	steps := []struct {
		err  error // nil: a success
		want bool
	}{
		{nil, false}, {down, true}, {down, false}, {other, true}, {other, false}, {nil, true}, {nil, false}, {down, true},
	}
	for i, st := range steps {
		var got bool
		if st.err == nil {
			got = o.Recovered()
		} else {
			got = o.Failed(st.err)
		}
		if got != st.want {
			t.Errorf("step %d (%v): news = %v, want %v", i, st.err, got, st.want)
		}
	}
}
