package e2e

// End-to-end tests with Mistral's auth on: the second, auth-on Mistral 15
// and the real Keystone that testenv/keystone/keystone.sh runs. They skip
// unless MISTRAL_E2E_AUTH_URL is set (`eval "$(keystone.sh env)"`).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/testenv/receiver"
)

// authWorld is the auth-on deployment described by MISTRAL_E2E_AUTH_*.
type authWorld struct {
	url, keystone, shortKeystone, password string
	serviceUser, serviceProject            string
	projects                               []*authProject
}

// authProject is one project with its own user and that user's token.
type authProject struct {
	Name, User, ID, Token string
}

func authFromEnv(t *testing.T) *authWorld {
	t.Helper()
	w := &authWorld{
		url:            strings.TrimRight(os.Getenv("MISTRAL_E2E_AUTH_URL"), "/"),
		keystone:       os.Getenv("MISTRAL_E2E_AUTH_KEYSTONE_URL"),
		shortKeystone:  os.Getenv("MISTRAL_E2E_AUTH_SHORT_KEYSTONE_URL"),
		password:       os.Getenv("MISTRAL_E2E_AUTH_PASSWORD"),
		serviceUser:    os.Getenv("MISTRAL_E2E_AUTH_SERVICE_USER"),
		serviceProject: os.Getenv("MISTRAL_E2E_AUTH_SERVICE_PROJECT"),
	}
	if w.url == "" || w.keystone == "" {
		t.Skip("MISTRAL_E2E_AUTH_URL not set: auth-on tests need testenv/keystone/keystone.sh start")
	}
	if noTap {
		t.Skip("MISTRAL_E2E_NO_TAP set")
	}
	if buildErr != nil {
		t.Fatalf("mistral-tap does not build: %v", buildErr)
	}
	if tapBin == "" {
		// TestMain builds only with MISTRAL_E2E_URL; the auth suite may
		// run alone.
		t.Fatal("mistral-tap was not built: set MISTRAL_E2E_URL as well (testenv/realmistral/mistral.sh env)")
	}
	ctx := ctxFor(t, time.Minute)
	for _, pu := range strings.Split(os.Getenv("MISTRAL_E2E_AUTH_PROJECTS"), ",") {
		name, user, ok := strings.Cut(pu, ":")
		if !ok {
			t.Fatalf("MISTRAL_E2E_AUTH_PROJECTS entry %q is not project:user", pu)
		}
		tok, id, err := keystoneToken(ctx, w.keystone, user, name, w.password)
		if err != nil {
			t.Fatal(err)
		}
		w.projects = append(w.projects, &authProject{Name: name, User: user, ID: id, Token: tok})
	}
	return w
}

func (w *authWorld) project(name string) *authProject {
	for _, p := range w.projects {
		if p.Name == name {
			return p
		}
	}
	panic("no project " + name)
}

// keystoneToken gets a project-scoped token and the project's id.
func keystoneToken(ctx context.Context, ks, user, project, password string) (string, string, error) {
	body := fmt.Sprintf(`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":%q,"domain":{"id":"default"},"password":%q}}},"scope":{"project":{"name":%q,"domain":{"id":"default"}}}}}`, user, password, project)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ks+"/auth/tokens", strings.NewReader(body))
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("keystone token for %s/%s: %w", user, project, err)
	}
	defer resp.Body.Close()
	var out struct {
		Token struct {
			Project struct{ ID string } `json:"project"`
		} `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated {
		return "", "", fmt.Errorf("keystone token for %s/%s: status %d (%v)", user, project, resp.StatusCode, err)
	}
	return resp.Header.Get("X-Subject-Token"), out.Token.Project.ID, nil
}

// ksProxy sits between mistral-tap and Keystone: it counts token requests,
// remembers the tokens issued per project, and can play a Keystone that is
// down.
type ksProxy struct {
	srv  *httptest.Server
	down atomic.Bool

	mu     sync.Mutex
	posts  int
	issued map[string][]string    // project name → tokens issued, in order
	at     map[string][]time.Time // project name → when each was issued
}

func newKSProxy(t *testing.T, target string) *ksProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	k := &ksProxy{issued: map[string][]string{}, at: map[string][]time.Time{}}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method != http.MethodPost || !strings.HasSuffix(resp.Request.URL.Path, "/auth/tokens") {
			return nil
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		var out struct {
			Token struct {
				Project struct{ Name string } `json:"project"`
			} `json:"token"`
		}
		json.Unmarshal(body, &out)
		k.mu.Lock()
		k.posts++
		if tok := resp.Header.Get("X-Subject-Token"); tok != "" {
			k.issued[out.Token.Project.Name] = append(k.issued[out.Token.Project.Name], tok)
			k.at[out.Token.Project.Name] = append(k.at[out.Token.Project.Name], time.Now())
		}
		k.mu.Unlock()
		return nil
	}
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if k.down.Load() {
			// As a load balancer in front of a dead Keystone answers.
			http.Error(w, "keystone is down", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(k.srv.Close)
	return k
}

// URL is the proxy's Keystone v3 endpoint.
func (k *ksProxy) URL() string { return k.srv.URL + "/v3" }

func (k *ksProxy) tokens(project string) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.issued[project]...)
}

func (k *ksProxy) issuedAt(project string) []time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]time.Time(nil), k.at[project]...)
}

func (k *ksProxy) tokenPosts() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.posts
}

// authWatch is the watch: mapping for mistral-tap as the service user.
func (w *authWorld) authWatch(keystone, password string) string {
	return fmt.Sprintf(`{interval: 1s, all_projects: true, keystone: {auth_url: %q, username: %q, password: %q, project_name: %q}}`,
		keystone, w.serviceUser, password, w.serviceProject)
}

// newAuthEnv starts mistral-tap in front of the auth-on Mistral, as the
// service user through keystone (a Keystone v3 URL), with extra callbacks.
// The env's clients carry no token: as(p) gives a project's view.
func newAuthEnv(t *testing.T, w *authWorld, keystone, extra string, tune func(*TapConfig)) *env {
	t.Helper()
	e := &env{t: t, direct: NewClient(w.url), mistral: receiver.New(), tapHook: receiver.New(), tapEnv: receiver.New()}
	serve := func(h http.Handler) string {
		s := httptest.NewServer(h)
		t.Cleanup(s.Close)
		return s.URL
	}
	e.mistralURL = serve(e.mistral)
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := testDir(t)
	e.tapCfg = TapConfig{
		Listen:      fmt.Sprintf("127.0.0.1:%d", port),
		Upstream:    w.url,
		StateDir:    filepath.Join(dir, "state"),
		MistralURL:  serve(e.tapHook) + "/hook",
		EnvelopeURL: serve(e.tapEnv) + "/envelope",
		Extra:       extra,
		Watch:       w.authWatch(keystone, "${MISTRAL_E2E_AUTH_PASSWORD}"),
	}
	return e.launch(tune)
}

// as returns a copy of e whose clients act as project p's user, directly
// and through the proxy.
func (e *env) as(p *authProject) *env {
	c := *e
	c.direct = &Client{Base: e.direct.Base, HTTP: e.direct.HTTP, Token: p.Token}
	c.api = &Client{Base: e.api.Base, HTTP: e.api.HTTP, Token: p.Token}
	return &c
}

// authDSL gives each project its own workflow names: an admin addressing
// a workflow by name may hit another project's workflow of that name.
func authDSL(project string) string {
	return fmt.Sprintf(`---
version: '2.0'
auth_%[1]s_ok:
  tasks:
    a:
      action: std.noop
      on-success: b
    b:
      action: std.echo output=1
      on-success: c
    c:
      action: std.noop
auth_%[1]s_fail:
  tasks:
    a:
      action: std.fail
`, project)
}

// authWorkbook is a workbook "authops" that demo and alt both define, with
// different workflows: membership must be looked up per project.
func authWorkbook(wf string) string {
	return fmt.Sprintf(`---
version: '2.0'
name: authops
workflows:
  %s:
    tasks:
      a:
        action: std.noop
`, wf)
}

// awaitTerminal waits (up to 2 min) until mistral-tap delivered a terminal
// workflow event for each of ids. With auth on every engine request also
// validates its token at Keystone, and on a loaded CI machine a poll takes
// seconds per project: longer than check's settle window.
func (e *env) awaitTerminal(s *sc, ids []string) {
	s.t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(s.ctx, 2*time.Minute)
	defer cancel()
	err := poll(ctx, "terminal events from mistral-tap", func() (bool, error) {
		done := map[string]bool{}
		for _, b := range decodeHooks(s.t, e.tapHook.Requests()) {
			if isTerminal(b.Event) && strings.HasPrefix(b.Event, "WORKFLOW_") {
				done[b.ID] = true
			}
		}
		for _, id := range ids {
			if !done[id] {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		s.t.Logf("%v (checking parity anyway)", err)
	}
	report(s.t, "AUTH scenario=%s terminal events after %s", s.name, time.Since(start).Round(100*time.Millisecond))
}

// hookBody is the part of a mistral-format body the filter checks read.
type hookBody struct {
	ID           string `json:"id"`
	ProjectID    string `json:"project_id"`
	WorkflowName string `json:"workflow_name"`
	Event        string `json:"event"`
}

func decodeHooks(t *testing.T, reqs []receiver.Request) []hookBody {
	t.Helper()
	out := make([]hookBody, 0, len(reqs))
	for _, r := range reqs {
		var b hookBody
		if err := json.Unmarshal(r.Body, &b); err != nil {
			t.Errorf("undecodable delivery %q: %v", r.Body, err)
			continue
		}
		out = append(out, b)
	}
	return out
}

// TestAuthParityAcrossProjects: with the service user and all_projects,
// every event of every project is derived and delivered (missing=0
// extra=0), whether executions start through the proxy with the project's
// own token or directly at the engine; a project-filtered callback gets
// exactly its project's events; the workbook index is per project; and no
// client's token appears in mistral-tap's debug log.
func TestAuthParityAcrossProjects(t *testing.T) {
	w := authFromEnv(t)
	filtered := receiver.New()
	fs := httptest.NewServer(filtered)
	defer fs.Close()
	demo, alt := w.project("demo"), w.project("alt")
	e := newAuthEnv(t, w, w.keystone, fmt.Sprintf(`  - name: demo-by-name
    events: ["*"]
    project: demo
    url: %[1]s/demo
  - name: alt-by-id
    events: ["*"]
    project: %[2]s
    url: %[1]s/alt
  - name: wb
    events: ["*"]
    workbook: authops
    url: %[1]s/wb
  - name: wb-alt
    events: ["*"]
    workbook: authops
    project: alt
    url: %[1]s/wbalt
`, fs.URL, alt.ID), nil)

	ctx := ctxFor(t, 3*time.Minute)
	wbWorkflow := map[string]string{"demo": "main", "alt": "second"}
	trees := map[string]map[string]bool{} // project → its executions
	for _, p := range w.projects {
		pe := e.as(p)
		if err := pe.api.DefineWorkflows(ctx, authDSL(p.Name)); err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		if wf := wbWorkflow[p.Name]; wf != "" {
			if err := pe.api.DefineWorkbook(ctx, authWorkbook(wf)); err != nil {
				t.Fatalf("%s: %v", p.Name, err)
			}
		}
	}
	for _, p := range w.projects {
		pe := e.as(p)
		t.Run(p.Name, func(t *testing.T) {
			pe.t = t
			s := &sc{t: t, e: pe, name: "auth-" + p.Name, ctx: ctxFor(t, 2*time.Minute)}
			var ids []string
			for _, c := range []*Client{pe.api, pe.direct} {
				ids = append(ids, s.start(c, "auth_"+p.Name+"_ok", nil, nil).ID, s.start(c, "auth_"+p.Name+"_fail", nil, nil).ID)
			}
			if wf := wbWorkflow[p.Name]; wf != "" {
				ids = append(ids, s.start(pe.api, "authops."+wf, nil, nil).ID)
			}
			for _, id := range ids {
				s.wait(id, Terminal...)
			}
			pe.awaitTerminal(s, ids)
			pe.check(s)
			trees[p.Name] = pe.tree(s)
		})
	}

	// The filtered callbacks: each got its project's events, all of them,
	// and nothing else. The "all" callback's events are the reference.
	all := decodeHooks(t, e.tapHook.Requests())
	count := func(pred func(hookBody) bool) int {
		n := 0
		for _, b := range all {
			if pred(b) {
				n++
			}
		}
		return n
	}
	checkFiltered := func(path string, want func(hookBody) bool) {
		t.Helper()
		got := decodeHooks(t, byPath(filtered.Requests(), path))
		for _, b := range got {
			if !want(b) {
				t.Errorf("%s got an event it must not: %+v", path, b)
			}
		}
		if n := count(want); len(got) != n || n == 0 {
			t.Errorf("%s got %d events, want %d (> 0)", path, len(got), n)
		}
		report(t, "FILTERS auth callback=%s events=%d", strings.TrimPrefix(path, "/"), len(got))
	}
	checkFiltered("/demo", func(b hookBody) bool { return b.ProjectID == demo.ID })
	checkFiltered("/alt", func(b hookBody) bool { return b.ProjectID == alt.ID })
	checkFiltered("/wb", func(b hookBody) bool { return strings.HasPrefix(b.WorkflowName, "authops.") })
	checkFiltered("/wbalt", func(b hookBody) bool { return b.ProjectID == alt.ID && strings.HasPrefix(b.WorkflowName, "authops.") })
	for _, b := range all {
		if b.ProjectID == "" || b.ProjectID == "<default-project>" {
			t.Errorf("payload without the execution's project: %+v", b)
			break
		}
	}

	// Clients' tokens pass through untouched and never reach the log
	// (debug level); nor does the service password.
	e.stopTap()
	logData, err := os.ReadFile(filepath.Join(filepath.Dir(e.tapCfg.StateDir), "mistral-tap.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(logData, []byte("level=DEBUG")) && !bytes.Contains(logData, []byte(`"level":"DEBUG"`)) {
		t.Errorf("the log has no debug lines: the leak check would prove nothing")
	}
	for _, p := range w.projects {
		if bytes.Contains(logData, []byte(p.Token)) || bytes.Contains(logData, []byte(p.Token[:24])) {
			t.Errorf("project %s's client token appears in mistral-tap's log", p.Name)
		}
	}
	if bytes.Contains(logData, []byte(w.password)) {
		t.Errorf("the service password appears in mistral-tap's log")
	}
}
