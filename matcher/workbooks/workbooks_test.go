package workbooks

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/matcher"
	"github.com/mistral-tap/mistral-tap/tap/mistral"
)

type workbook = mistral.Workbook

type listPage struct {
	Workbooks []workbook `json:"workbooks"`
	Next      string     `json:"next"`
}

// newResolver returns a Resolver of the engine at base, authenticated with
// the static token tok ("" for none), pages of two.
func newResolver(t *testing.T, base, tok string, o Options) *Resolver {
	t.Helper()
	u, _ := url.Parse(base)
	mo := mistral.Options{BaseURL: u, PageSize: 2}
	if tok != "" {
		mo.Headers = map[string]string{"X-Auth-Token": tok}
	}
	c, err := mistral.New(mo)
	if err != nil {
		t.Fatal(err)
	}
	o.Engine = c
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var _ matcher.WorkbookIndex = (*Resolver)(nil)

// fakeMistral serves /v2/workbooks in pages of two, Mistral-shaped.
type fakeMistral struct {
	mu        sync.Mutex
	workbooks []workbook
	calls     atomic.Int32
	status    int
	lastQuery string
	// listsWithoutDefinitions leaves definitions out of lists, as some
	// deployments do.
	listsWithoutDefinitions bool
}

// one serves GET /v2/workbooks/<name>?namespace=.
func (f *fakeMistral) one(w http.ResponseWriter, name, ns string) {
	for _, wb := range f.workbooks {
		if wb.Name == name && wb.Namespace == ns {
			json.NewEncoder(w).Encode(wb)
			return
		}
	}
	w.WriteHeader(http.StatusNotFound)
	json.NewEncoder(w).Encode(map[string]string{"faultstring": "Workbook not found [name=" + name + "]"})
}

func (f *fakeMistral) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	if r.Header.Get("X-Auth-Token") != "tok" {
		http.Error(w, `{"faultstring":"Auth token is invalid"}`, http.StatusUnauthorized)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastQuery = r.URL.RawQuery
	if f.status != 0 {
		w.WriteHeader(f.status)
		return
	}
	if name, ok := strings.CutPrefix(r.URL.Path, "/v2/workbooks/"); ok {
		f.one(w, name, r.URL.Query().Get("namespace"))
		return
	}
	if r.URL.Path != "/v2/workbooks" {
		http.NotFound(w, r)
		return
	}
	start := 0
	if m := r.URL.Query().Get("marker"); m != "" {
		for i, wb := range f.workbooks {
			if wb.Name == m {
				start = i + 1
			}
		}
	}
	end := min(start+2, len(f.workbooks))
	page := listPage{Workbooks: append([]workbook(nil), f.workbooks[start:end]...)}
	for i := range page.Workbooks {
		if f.listsWithoutDefinitions {
			page.Workbooks[i].Definition = ""
		}
	}
	if end-start == 2 {
		// Like Mistral: an absolute link built from some other Host.
		page.Next = "http://elsewhere:8989/v2/workbooks?limit=2&sort_keys=created_at,id&sort_dirs=asc,asc&marker=" + f.workbooks[end-1].Name
	}
	json.NewEncoder(w).Encode(page)
}

func newFake() *fakeMistral {
	return &fakeMistral{workbooks: []workbook{
		{Name: "my.wb", Definition: "version: '2.0'\nname: my.wb\nworkflows:\n  main:\n    tasks: {t1: {action: std.noop}}\n  other: {tasks: {}}\n"},
		{Name: "my", Definition: "version: '2.0'\nworkflows:\n  wb.helper:\n    tasks: {}\n"},
		{Name: "deploy_wb", Namespace: "prod", Definition: "version: '2.0'\nworkflows:\n  deploy: {}\n"},
		{Name: "broken", Definition: "workflows: [unclosed"},
		{Name: "a", Definition: "workflows:\n  b.c: {}\n"},
		{Name: "a.b", Definition: "workflows:\n  c: {}\n"},
	}}
}

func TestRefreshAndLookup(t *testing.T) {
	f := newFake()
	srv := httptest.NewServer(f)
	defer srv.Close()
	r := newResolver(t, srv.URL, "tok", Options{AllProjects: true})
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkIndex(t, r)
	// Mistral 15 answers all_projects on /v2/workbooks with a 400.
	if f.lastQuery == "" || strings.Contains(f.lastQuery, "all_projects") {
		t.Errorf("last query %q: want a query without all_projects", f.lastQuery)
	}
}

// TestListWithoutDefinitions: a list that leaves out definitions makes the
// resolver read each workbook.
func TestListWithoutDefinitions(t *testing.T) {
	f := newFake()
	f.listsWithoutDefinitions = true
	srv := httptest.NewServer(f)
	defer srv.Close()
	r := newResolver(t, srv.URL, "tok", Options{})
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkIndex(t, r)
	if calls := f.calls.Load(); calls != 4+6 {
		t.Errorf("%d requests, want 4 list pages and 6 workbooks", calls)
	}
}

func TestNewNeedsEngine(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without an Engine succeeded")
	}
}

func checkIndex(t *testing.T, r *Resolver) {
	t.Helper()
	tests := []struct {
		wf, ns, want string
		ok           bool
	}{
		{"my.wb.main", "", "my.wb", true},
		{"my.wb.other", "", "my.wb", true},
		{"my.wb.helper", "", "my", true}, // prefix "my.wb." but defined in "my"
		{"my.wb.nope", "", "", false},
		{"deploy_wb.deploy", "prod", "deploy_wb", true},
		{"deploy_wb.deploy", "", "", false}, // other namespace
		{"a.b.c", "", "", false},            // claimed by "a" and "a.b": not guessed
		{"main", "", "", false},
	}
	for _, tt := range tests {
		got, ok := r.WorkbookOf(tt.wf, tt.ns)
		if got != tt.want || ok != tt.ok {
			t.Errorf("WorkbookOf(%q, %q) = %q, %v; want %q, %v", tt.wf, tt.ns, got, ok, tt.want, tt.ok)
		}
	}
}

func TestLookupRefreshesOnMissAtMostOncePerInterval(t *testing.T) {
	f := newFake()
	srv := httptest.NewServer(f)
	defer srv.Close()
	r := newResolver(t, srv.URL, "tok", Options{MinRefresh: time.Hour})
	ctx := context.Background()
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	base := f.calls.Load()
	// A new workbook appears; a miss right after a refresh does not refresh
	// again (MinRefresh), Invalidate makes the next Lookup refresh.
	f.mu.Lock()
	f.workbooks = append(f.workbooks, workbook{Name: "new.wb", Definition: "workflows: {w: {}}"})
	f.mu.Unlock()
	if _, ok, err := r.Lookup(ctx, "new.wb.w", ""); ok || err != nil {
		t.Fatalf("Lookup before invalidate = %v, %v; want a rate-limited miss", ok, err)
	}
	if f.calls.Load() != base {
		t.Fatalf("miss refreshed although MinRefresh had not passed")
	}
	r.Invalidate()
	if wb, ok, err := r.Lookup(ctx, "new.wb.w", ""); !ok || wb != "new.wb" || err != nil {
		t.Fatalf("Lookup after invalidate = %q, %v, %v", wb, ok, err)
	}
	// Undotted names never refresh.
	n := f.calls.Load()
	r.dirty.Store(false)
	r.lastRefresh.Store(0)
	if _, ok, _ := r.Lookup(ctx, "plain", ""); ok || f.calls.Load() != n {
		t.Errorf("undotted miss caused a refresh")
	}
	// A dotted miss after MinRefresh refreshes.
	if _, _, err := r.Lookup(ctx, "x.y", ""); err != nil || f.calls.Load() == n {
		t.Errorf("dotted miss after MinRefresh did not refresh (err %v)", err)
	}
}

func TestRefreshErrorKeepsIndex(t *testing.T) {
	f := newFake()
	srv := httptest.NewServer(f)
	defer srv.Close()
	r := newResolver(t, srv.URL, "tok", Options{})
	ctx := context.Background()
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.status = http.StatusInternalServerError
	f.mu.Unlock()
	if err := r.Refresh(ctx); err == nil || err.Error() != "workbooks: mistral: GET /v2/workbooks: engine answered 500" {
		t.Fatalf("Refresh error = %v", err)
	}
	if wb, ok := r.WorkbookOf("my.wb.main", ""); !ok || wb != "my.wb" {
		t.Errorf("index lost after a failed refresh")
	}
	bad := newResolver(t, srv.URL, "", Options{})
	if err := bad.Refresh(ctx); err == nil || err.Error() != "workbooks: mistral: GET /v2/workbooks: engine answered 401: Auth token is invalid" {
		t.Errorf("unauthenticated Refresh error = %v", err)
	}
}

func TestRunRefreshesAfterInvalidateAndMiss(t *testing.T) {
	f := newFake()
	srv := httptest.NewServer(f)
	defer srv.Close()
	r := newResolver(t, srv.URL, "tok", Options{Debounce: 10 * time.Millisecond, MinRefresh: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	waitFor(t, func() bool { _, ok := r.get("my.wb.main", ""); return ok })

	f.mu.Lock()
	f.workbooks = append(f.workbooks, workbook{Name: "late.wb", Definition: "workflows: {w: {}}"})
	f.mu.Unlock()
	r.WorkbooksChanged()
	waitFor(t, func() bool { _, ok := r.get("late.wb.w", ""); return ok })

	f.mu.Lock()
	f.workbooks = append(f.workbooks, workbook{Name: "later.wb", Definition: "workflows: {w: {}}"})
	f.mu.Unlock()
	waitFor(t, func() bool { _, ok := r.WorkbookOf("later.wb.w", ""); return ok }) // the miss kicks Run
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
