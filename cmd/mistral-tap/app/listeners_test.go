package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore/pgtest"
	"github.com/mistral-tap/mistral-tap/testenv/fakemistral"
	"github.com/mistral-tap/mistral-tap/testenv/receiver"
)

const listenersConfig = `
listen: 127.0.0.1:0
upstream: %s
state_dir: %s
delivery:
  allow_networks: ["127.0.0.0/8"]
  retry_wait_min: 10ms
  retry_wait_max: 50ms
admin:
  token: listeners-admin-token-0123456789
%s
`

// lenv is mistral-tap in front of a fake engine, with a receiver per
// listener path.
type lenv struct {
	t        *testing.T
	eng      *fakemistral.Engine
	engURL   string
	recvURL  string
	recv     map[string]*receiver.Receiver
	cfgPath  string
	stateDir string
	proxy    string
	stop     func() error
}

func newLenv(t *testing.T, opts fakemistral.Options, extra string) *lenv {
	t.Helper()
	e := &lenv{t: t, eng: fakemistral.New(opts), recv: map[string]*receiver.Receiver{}, stateDir: t.TempDir()}
	t.Cleanup(e.eng.Close)
	// The engine answers at the root and under /workflow (for
	// proxy.path_prefix: the proxy forwards the prefix). No ServeMux: it
	// would redirect dot segments to their clean path.
	under := http.StripPrefix("/workflow", e.eng)
	es := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/workflow/") {
			under.ServeHTTP(w, r)
			return
		}
		e.eng.ServeHTTP(w, r)
	}))
	t.Cleanup(es.Close)
	mux := http.NewServeMux()
	for _, p := range []string{"/exec", "/other", "/wf", "/all"} {
		e.recv[p] = receiver.New()
		mux.Handle(p, e.recv[p])
	}
	rs := httptest.NewServer(mux)
	t.Cleanup(rs.Close)
	e.engURL, e.recvURL = es.URL, rs.URL
	extra = strings.ReplaceAll(extra, "{RECV}", rs.URL)
	e.cfgPath = writeConfig(t, fmt.Sprintf(listenersConfig, es.URL, e.stateDir, extra))
	e.proxy, e.stop = runApp(t, e.cfgPath, false)
	return e
}

func (e *lenv) restart() {
	e.t.Helper()
	if err := e.stop(); err != nil {
		e.t.Fatalf("stop: %v", err)
	}
	e.proxy, e.stop = runApp(e.t, e.cfgPath, false)
}

// do sends a request through the proxy with token (none when "").
func (e *lenv) do(token, method, path, body string) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.proxy+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
		if !strings.HasPrefix(body, "{") {
			req.Header.Set("Content-Type", "text/plain")
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

func (e *lenv) start(token, wf string) string {
	e.t.Helper()
	code, m := e.do(token, "POST", "/v2/executions", fmt.Sprintf(`{"workflow_name": %q}`, wf))
	if code != 201 {
		e.t.Fatalf("start %s: %d %v", wf, code, m)
	}
	return m["id"].(string)
}

func (e *lenv) register(token, body string) map[string]any {
	e.t.Helper()
	code, m := e.do(token, "POST", "/v2/listeners", body)
	if code != 201 {
		e.t.Fatalf("POST /v2/listeners %s: %d %v", body, code, m)
	}
	return m
}

func (e *lenv) waitDone(id string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.eng.WaitDone(ctx, id); err != nil {
		e.t.Fatalf("execution %s: %v", id, err)
	}
}

// waitPairs waits until r received at least n distinct deliveries.
func waitPairs(t *testing.T, r *receiver.Receiver, n int) []pair {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reqs, err := r.WaitUntil(ctx, func(reqs []receiver.Request) bool { return len(delivered(t, reqs)) >= n })
	if err != nil {
		t.Fatalf("waiting for %d deliveries: %v (got %v)", n, err, delivered(t, r.Requests()))
	}
	return delivered(t, reqs)
}

// TestListenersThroughTheProxy: a listener registered right after POST
// /v2/executions gets every event of the execution tree (WORKFLOW_LAUNCHED
// included, sub-workflows too), signed, and nothing of a parallel
// execution; a workflow listener survives a restart; DELETE stops it.
func TestListenersThroughTheProxy(t *testing.T) {
	t.Parallel()
	e := newLenv(t, fakemistral.Options{}, "watch: {interval: 100ms}")
	if code, m := e.do("", "POST", "/v2/workflows", workflows); code != 201 {
		t.Fatalf("defining workflows: %d %v", code, m)
	}
	other := e.start("", "t_sleep")
	root := e.start("", "t_parent")
	l := e.register("", fmt.Sprintf(`{"execution_id": %q, "url": %q}`, root, e.recvURL+"/exec"))
	if s, _ := l["secret"].(string); !strings.HasPrefix(s, "whsec_") {
		t.Errorf("create response without a generated secret: %v", l)
	}
	e.waitDone(root)
	want := truth(e.eng, map[string]bool{root: true})
	if len(want) < 8 || want[0] != (pair{"WORKFLOW_LAUNCHED", root}) {
		t.Fatalf("ground truth looks wrong: %v", want)
	}
	got := waitPairs(t, e.recv["/exec"], len(want))
	if !slices.Equal(multiset(got), multiset(want)) {
		t.Errorf("listener got %v\nwant %v", got, want)
	}
	checkCausal(t, got, want)
	for _, r := range e.recv["/exec"].Requests() {
		if r.Header.Get("Webhook-Signature") == "" {
			t.Fatalf("unsigned delivery: %v", r.Header)
		}
	}
	e.waitDone(other)
	for _, p := range delivered(t, e.recv["/exec"].Requests()) {
		if p.id == other {
			t.Errorf("the listener got the other execution's %v", p)
		}
	}

	// A workflow listener is stored: it outlives a restart.
	wl := e.register("", fmt.Sprintf(`{"workflow_name": "t_succ*", "events": ["on-execution-complete"], "url": %q}`, e.recvURL+"/wf"))
	wid := wl["id"].(string)
	e.restart()
	if code, m := e.do("", "GET", "/v2/listeners/"+wid, ""); code != 200 || m["workflow_name"] != "t_succ*" {
		t.Fatalf("after restart GET: %d %v", code, m)
	}
	first := e.start("", "t_success")
	e.waitDone(first)
	if got := waitPairs(t, e.recv["/wf"], 1); got[0] != (pair{"WORKFLOW_SUCCEEDED", first}) {
		t.Fatalf("workflow listener after restart got %v", got)
	}

	// DELETE: nothing more arrives.
	if code, m := e.do("", "DELETE", "/v2/listeners/"+wid, ""); code != 204 {
		t.Fatalf("DELETE: %d %v", code, m)
	}
	if code, _ := e.do("", "GET", "/v2/listeners/"+wid, ""); code != 404 {
		t.Errorf("GET after DELETE: %d, want 404", code)
	}
	second := e.start("", "t_success")
	e.waitDone(second)
	// A listener registered after the second execution's end for it
	// proves its events were derived and delivered by now (backfill).
	e.register("", fmt.Sprintf(`{"execution_id": %q, "url": %q}`, second, e.recvURL+"/other"))
	waitPairs(t, e.recv["/other"], len(truth(e.eng, map[string]bool{second: true})))
	if got := delivered(t, e.recv["/wf"].Requests()); len(got) != 1 {
		t.Errorf("the deleted listener still got %v", got)
	}

	// The sealing key was generated privately in state_dir.
	fi, err := os.Stat(filepath.Join(e.stateDir, "listeners.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("listeners.key: %v %v", fi, err)
	}
}

// TestListenersPathsAndSwitch: the API answers under path_prefix only, dot
// segments never reach it, and listeners.enabled false leaves /v2/listeners
// to Mistral.
func TestListenersPathsAndSwitch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, extra, path string
		want              int
	}{
		{"list", "", "/v2/listeners", 200},
		{"unknown id", "", "/v2/listeners/8d2c0d64-5a36-4f0e-9a4a-7f7b0b9b1e11", 404},
		{"dot segments go to Mistral", "", "/v2/executions/../listeners", 404},
		{"climbing is refused", "", "/v2/listeners/../../../x", 400},
		{"switched off", "listeners: {enabled: false}", "/v2/listeners", 404},
		{"under the prefix", "proxy: {path_prefix: /workflow}", "/workflow/v2/listeners", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newLenv(t, fakemistral.Options{}, tc.extra+"\nwatch: {interval: 0s}")
			code, m := e.do("", "GET", tc.path, "")
			if code != tc.want {
				t.Fatalf("GET %s: %d %v, want %d", tc.path, code, m, tc.want)
			}
			_, isList := m["listeners"]
			if wantList := tc.want == 200; isList != wantList {
				t.Errorf("GET %s: list envelope %v, want %v: %v", tc.path, isList, wantList, m)
			}
		})
	}
}

// TestListenersAuthOn against the fake engine with auth: a token may listen
// to what it can read in Mistral only, sees its own project's listeners
// only, and mistral-tap's admin token sees all.
func TestListenersAuthOn(t *testing.T) {
	t.Parallel()
	tokens := map[string]fakemistral.Token{"tok-a": {Project: "pa"}, "tok-b": {Project: "pb"}, "tok-watch": {Project: "svc", Admin: true}}
	e := newLenv(t, fakemistral.Options{Tokens: tokens}, "watch: {interval: 100ms, headers: {X-Auth-Token: tok-watch}, all_projects: true}\n"+
		"callbacks: [{name: all, events: [\"*\"], url: \"{RECV}/all\"}]")
	if err := e.eng.DefineWorkflow(workflows, ""); err != nil {
		t.Fatal(err)
	}
	exA := e.start("tok-a", "t_sleep")
	exB := e.start("tok-b", "t_sleep")
	hook := e.recvURL + "/exec"
	la := e.register("tok-a", fmt.Sprintf(`{"execution_id": %q, "url": %q}`, exA, hook))
	if la["project_id"] != "pa" {
		t.Errorf("listener project = %v, want pa", la["project_id"])
	}
	e.register("tok-b", fmt.Sprintf(`{"execution_id": %q, "url": %q}`, exB, hook))
	const admin = "listeners-admin-token-0123456789"
	tests := []struct {
		name, token, method, path, body string
		want                            int
		wantCount                       int // list length, -1: not a list
	}{
		{"no token", "", "POST", "/v2/listeners", fmt.Sprintf(`{"execution_id": %q, "url": %q}`, exA, hook), 401, -1},
		{"other project's execution", "tok-b", "POST", "/v2/listeners", fmt.Sprintf(`{"execution_id": %q, "url": %q}`, exA, hook), 404, -1},
		{"unknown token", "tok-x", "POST", "/v2/listeners", fmt.Sprintf(`{"execution_id": %q, "url": %q}`, exA, hook), 401, -1},
		{"own list", "tok-a", "GET", "/v2/listeners", "", 200, 1},
		{"other's listener by id", "tok-b", "GET", "/v2/listeners/" + la["id"].(string), "", 404, -1},
		{"other's listener delete", "tok-b", "DELETE", "/v2/listeners/" + la["id"].(string), "", 404, -1},
		{"admin sees all", admin, "GET", "/v2/listeners", "", 200, 2},
		{"admin reads any", admin, "GET", "/v2/listeners/" + la["id"].(string), "", 200, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, m := e.do(tc.token, tc.method, tc.path, tc.body)
			if code != tc.want {
				t.Fatalf("%s %s as %q: %d %v, want %d", tc.method, tc.path, tc.token, code, m, tc.want)
			}
			if tc.wantCount >= 0 {
				if l, _ := m["listeners"].([]any); len(l) != tc.wantCount {
					t.Errorf("%d listeners, want %d: %v", len(l), tc.wantCount, m)
				}
			}
		})
	}
	// The owner's listener still works after the refusals: it gets what
	// a file callback for every event got of pa's execution (a static
	// watcher token sees other projects' executions, not their tasks:
	// docs/auth.md).
	e.waitDone(exA)
	e.waitDone(exB)
	ofTree := func(r *receiver.Receiver, root string) func() []pair {
		return func() []pair {
			var out []pair
			ids := map[string]bool{root: true}
			for _, ev := range e.eng.NotifierEvents() {
				if ev.RootExecutionID == root {
					ids[ev.EntityID] = true
				}
			}
			for _, p := range delivered(t, r.Requests()) {
				if ids[p.id] {
					out = append(out, p)
				}
			}
			return out
		}
	}
	fileA, listenerA := ofTree(e.recv["/all"], exA), ofTree(e.recv["/exec"], exA)
	// Per-root order: once the file callback got the execution's end, it
	// got all of it.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := e.recv["/all"].WaitUntil(ctx, func([]receiver.Request) bool {
		return slices.Contains(fileA(), pair{"WORKFLOW_SUCCEEDED", exA})
	}); err != nil {
		t.Fatalf("the file callback never got the end of %s: %v", exA, err)
	}
	if _, err := e.recv["/exec"].WaitUntil(ctx, func([]receiver.Request) bool { return len(listenerA()) >= len(fileA()) }); err != nil {
		t.Fatalf("pa's listener got %v, the file callback %v", listenerA(), fileA())
	}
	if !slices.Equal(multiset(listenerA()), multiset(fileA())) {
		t.Errorf("pa's listener got %v, the file callback %v", listenerA(), fileA())
	}
	if len(listenerA())+len(ofTree(e.recv["/exec"], exB)()) != len(delivered(t, e.recv["/exec"].Requests())) {
		t.Errorf("listeners got events of neither execution: %v", delivered(t, e.recv["/exec"].Requests()))
	}
}

// TestListenersOnReplicas: on the shared PostgreSQL store a listener
// registered at a follower is seen by every replica and delivered by the
// leader; after the leader stops, the next leader delivers it.
func TestListenersOnReplicas(t *testing.T) {
	dsn := pgtest.Database(t)
	r := startReplicas(t, 2, func(int) string { return dsn })
	if code, b := r.do(false, "POST", "/v2/workflows", "text/plain", workflows); code != 201 {
		t.Fatalf("defining workflows: %d %s", code, b)
	}
	post := func(base, path, body string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	code, l := post(r.proxy[1], "/v2/listeners", fmt.Sprintf(`{"workflow_name": "t_success", "url": %q}`, r.rcvURL+"lst"))
	if code != 201 {
		t.Fatalf("register at the follower: %d %v", code, l)
	}
	if resp, err := http.Get(r.proxy[0] + "/v2/listeners/" + l["id"].(string)); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the leader does not see it: %v %v", resp, err)
	}
	atPath := func(reqs []receiver.Request) []receiver.Request {
		var out []receiver.Request
		for _, q := range reqs {
			if q.Path == "/lst" {
				out = append(out, q)
			}
		}
		return out
	}
	run := func(phase, proxy string) {
		t.Helper()
		code, m := post(proxy, "/v2/executions", `{"workflow_name": "t_success"}`)
		if code != 201 {
			t.Fatalf("start: %d %v", code, m)
		}
		id := m["id"].(string)
		r.wait(id)
		want := truth(r.engine, map[string]bool{id: true})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		of := func(reqs []receiver.Request) []pair {
			var out []pair
			ids := map[string]bool{}
			for _, p := range want {
				ids[p.id] = true
			}
			for _, p := range delivered(t, atPath(reqs)) {
				if ids[p.id] {
					out = append(out, p)
				}
			}
			return out
		}
		reqs, err := r.all.WaitUntil(ctx, func(reqs []receiver.Request) bool { return len(of(reqs)) >= len(want) })
		if err != nil {
			t.Fatalf("%s: listener got %v of %v: %v", phase, of(r.all.Requests()), want, err)
		}
		if got := of(reqs); !slices.Equal(multiset(got), multiset(want)) {
			t.Errorf("listener got %v, want %v", got, want)
		}
	}
	run("through a follower", r.proxy[1])
	// The leader (replica 0, it started alone) stops: the next one delivers.
	if err := r.stop[0](); err != nil {
		t.Fatalf("stopping the leader: %v", err)
	}
	r.proxy = r.proxy[1:]
	run("after the fail-over", r.proxy[0])
}

// TestListenersAdminTokenReload: a reload of admin.token rotates it for
// /v2/listeners too (with Mistral's auth on, only the admin token lists
// without a Mistral token).
func TestListenersAdminTokenReload(t *testing.T) {
	t.Parallel()
	eng := fakemistral.New(fakemistral.Options{Tokens: map[string]fakemistral.Token{"tok-a": {Project: "pa"}}})
	t.Cleanup(eng.Close)
	es := httptest.NewServer(eng)
	t.Cleanup(es.Close)
	dir := t.TempDir()
	ops := freeAddr(t)
	path := filepath.Join(dir, "mistral-tap.yaml")
	writeCfg := func(token string) {
		t.Helper()
		cfg := fmt.Sprintf("listen: 127.0.0.1:0\nupstream: %s\nstate_dir: %s\nops: {listen: %s}\nwatch: {interval: 0s}\nadmin: {token: %s}\n",
			es.URL, filepath.Join(dir, "state"), ops, token)
		if err := os.WriteFile(path+".tmp", []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	const old, rotated = "old-admin-token-0123456789abcdef", "new-admin-token-0123456789abcdef"
	writeCfg(old)
	proxy, _ := runApp(t, path, true)
	list := func(token string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", proxy+"/v2/listeners", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if a, b := list(old), list(rotated); a != 200 || b != 401 {
		t.Fatalf("before the reload: old %d, new %d; want 200, 401", a, b)
	}
	applied := reloadCounter(t, ops, "success")
	writeCfg(rotated)
	applied()
	if a, b := list(old), list(rotated); a != 401 || b != 200 {
		t.Fatalf("after the reload: old %d, new %d; want 401, 200", a, b)
	}
}
