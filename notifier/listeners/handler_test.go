package listeners

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/store"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

const adminToken = "admin-secret-token"

type env struct {
	h       *Handler
	st      *memStore
	auth    *fakeAuth
	sealer  *Sealer
	changes int
}

func newEnv(t *testing.T, perProject int) *env {
	t.Helper()
	e := &env{st: &memStore{}}
	e.auth = &fakeAuth{
		tokens: map[string]string{"tok-a": "proj-a", "tok-b": "proj-b", "tok-nop": ""},
		res: map[Scope]fakeResource{
			{ScopeExecution, "e1"}:     {project: "proj-a", root: "e1"},
			{ScopeExecution, "e1-sub"}: {project: "proj-a", root: "e1"},
			{ScopeExecution, "e2"}:     {project: "proj-b", root: "e2"},
			{ScopeExecution, "ef"}:     {project: "proj-a", root: "ef", forbidden: true},
			{ScopeTask, "t1"}:          {project: "proj-a", root: "e1"},
			{ScopeWorkflow, "wf"}:      {project: "proj-a"},
			{ScopeWorkbook, "wb"}:      {project: "proj-b"},
		},
	}
	e.sealer, _ = NewSealer(testKey(7))
	var err error
	e.h, err = NewHandler(HandlerOptions{
		Store: e.st, Sealer: e.sealer, Auth: e.auth, AdminToken: adminToken,
		TTL: TTL{Default: 24 * time.Hour, Max: 720 * time.Hour}, PerProject: perProject,
		Changed: func() { e.changes++ }, Now: func() time.Time { return t0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) do(method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://proxy.example:8990"+path, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

type fault struct {
	Code  string  `json:"faultcode"`
	Msg   string  `json:"faultstring"`
	Debug *string `json:"debuginfo"`
}

func faultOf(t *testing.T, w *httptest.ResponseRecorder) fault {
	t.Helper()
	var f fault
	if err := json.Unmarshal(w.Body.Bytes(), &f); err != nil || f.Code == "" {
		t.Fatalf("body %q is not a fault body (%v)", w.Body, err)
	}
	return f
}

const good = `{"execution_id":"e1","events":["on-execution-complete","TASK_FAILED"],"url":"https://hooks.example/m?token=sekret","headers":{"Authorization":"Bearer hdr-secret"}}`

// TestCreateRefused checks every refusal: the status, the fault naming
// the problem, and that nothing was stored.
func TestCreateRefused(t *testing.T) {
	tests := []struct {
		name, body string
		hdr        []string
		down       error
		status     int
		want       string
	}{
		{"malformed JSON", `{"execution_id":`, []string{"X-Auth-Token", "tok-a"}, nil, 400, "malformed JSON"},
		{"unknown scope", `{"namespace_id":"x","url":"http://h/"}`, []string{"X-Auth-Token", "tok-a"}, nil, 400, `unknown field "namespace_id"`},
		{"two scopes", `{"execution_id":"e1","task_execution_id":"t1","url":"http://h/"}`, []string{"X-Auth-Token", "tok-a"}, nil, 400, "two scopes"},
		{"unknown event", `{"execution_id":"e1","events":["nope"],"url":"http://h/"}`, []string{"X-Auth-Token", "tok-a"}, nil, 400, `unknown event "nope"`},
		{"bad URL", `{"execution_id":"e1","url":"mailto:x@y"}`, []string{"X-Auth-Token", "tok-a"}, nil, 400, `scheme "mailto"`},
		{"no such execution", `{"execution_id":"e9","url":"http://h/"}`, []string{"X-Auth-Token", "tok-a"}, nil, 404, "Execution_id e9: not found"},
		{"other project's execution", `{"execution_id":"e2","url":"http://h/"}`, []string{"X-Auth-Token", "tok-a"}, nil, 404, "not found"},
		{"forbidden", `{"execution_id":"ef","url":"http://h/"}`, []string{"X-Auth-Token", "tok-a"}, nil, 403, "Not allowed"},
		{"no token", good, nil, nil, 401, "send your token in X-Auth-Token"},
		{"bad token", good, []string{"X-Auth-Token", "forged"}, nil, 401, "Mistral refused the token"},
		{"Mistral down", good, []string{"X-Auth-Token", "tok-a"}, errors.New("asking mistral: connection refused"), 502, "Cannot check with Mistral"},
		{"glob, project unknown", `{"workflow_name":"w*","url":"http://h/"}`, []string{"X-Auth-Token", "tok-a"}, fmt.Errorf("workflow glob w*: %w", ErrNoProject), 403, "name one workflow instead"},
		{"too large", `{"execution_id":"e1","url":"http://h/","headers":{"X":"` + strings.Repeat("a", MaxBody) + `"}}`, []string{"X-Auth-Token", "tok-a"}, nil, 413, "larger than 65536"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, 0)
			e.auth.down = tt.down
			w := e.do("POST", "/v2/listeners", tt.body, tt.hdr...)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d; body %s", w.Code, tt.status, w.Body)
			}
			f := faultOf(t, w)
			if !strings.Contains(f.Msg, tt.want) {
				t.Errorf("faultstring %q, want it to contain %q", f.Msg, tt.want)
			}
			if want := map[bool]string{true: "Server", false: "Client"}[tt.status >= 500]; f.Code != want {
				t.Errorf("faultcode %q, want %q", f.Code, want)
			}
			if n := e.st.count(); n != 0 || e.changes != 0 {
				t.Errorf("%d listeners stored, %d changes signalled; want none", n, e.changes)
			}
			for _, secret := range []string{"sekret", "hdr-secret", "forged", "tok-a"} {
				if strings.Contains(w.Body.String(), secret) {
					t.Errorf("fault %s quotes %q", w.Body, secret)
				}
			}
		})
	}
}

func TestCreate(t *testing.T) {
	e := newEnv(t, 0)
	w := e.do("POST", "/v2/listeners", good, "X-Auth-Token", "tok-a")
	if w.Code != http.StatusCreated {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	var v view
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if e.changes != 1 {
		t.Errorf("%d changes signalled, want 1", e.changes)
	}
	ls, _ := e.st.Listeners(t.Context())
	if len(ls) != 1 {
		t.Fatalf("%d listeners stored", len(ls))
	}
	l := ls[0]
	if l.ID != v.ID || l.ProjectID != "proj-a" || l.RootID != "e1" || l.Scope != ScopeExecution || l.ScopeValue != "e1" {
		t.Errorf("stored %+v, response id %s", l, v.ID)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(v.ID) {
		t.Errorf("id %q is not a UUID v4", v.ID)
	}
	for _, secret := range []string{"sekret", "hdr-secret", v.Secret} {
		if strings.Contains(string(l.Spec), secret) {
			t.Errorf("stored spec holds %q in clear", secret)
		}
	}
	sp, err := e.sealer.Open(l.ID, l.Spec)
	if err != nil || sp.Secret != v.Secret || sp.Headers["Authorization"] != "Bearer hdr-secret" || sp.URL != "https://hooks.example/m?token=sekret" {
		t.Errorf("sealed spec %+v (%v); response secret %q", sp, err, v.Secret)
	}
	if !strings.HasPrefix(v.Secret, "whsec_") {
		t.Errorf("create response secret %q, want a generated whsec_ secret", v.Secret)
	}
	// Reads never show the secret, a header value or the URL's token.
	for _, path := range []string{"/v2/listeners", "/v2/listeners/" + v.ID} {
		w := e.do("GET", path, "", "X-Auth-Token", "tok-a")
		for _, secret := range []string{"sekret", "hdr-secret", v.Secret, `"secret"`} {
			if strings.Contains(w.Body.String(), secret) {
				t.Errorf("GET %s shows %q: %s", path, secret, w.Body)
			}
		}
	}
}

func TestCreateGivenSecretNotEchoed(t *testing.T) {
	e := newEnv(t, 0)
	w := e.do("POST", "/v2/listeners", `{"execution_id":"e1","url":"http://h/","secret":"my-own-secret"}`, "X-Auth-Token", "tok-a")
	if w.Code != 201 || strings.Contains(w.Body.String(), "my-own-secret") {
		t.Fatalf("status %d, body %s: a given secret must not be echoed", w.Code, w.Body)
	}
}

func TestCreateAdmin(t *testing.T) {
	for _, hdr := range [][]string{
		{"Authorization", "Bearer " + adminToken},
		{"X-Auth-Token", adminToken},
	} {
		e := newEnv(t, 0)
		e.auth.open = true // the admin creates with no Mistral token
		w := e.do("POST", "/v2/listeners", good, hdr...)
		if w.Code != 201 {
			t.Fatalf("%s: status %d: %s", hdr[0], w.Code, w.Body)
		}
		for _, tok := range e.auth.asked {
			if tok == adminToken {
				t.Fatalf("%s: the admin token was sent to Mistral", hdr[0])
			}
		}
	}
}

func TestCreateCap(t *testing.T) {
	e := newEnv(t, 2)
	for i := range 2 {
		if w := e.do("POST", "/v2/listeners", good, "X-Auth-Token", "tok-a"); w.Code != 201 {
			t.Fatalf("listener %d: status %d", i, w.Code)
		}
	}
	w := e.do("POST", "/v2/listeners", good, "X-Auth-Token", "tok-a")
	if w.Code != http.StatusConflict || !strings.Contains(faultOf(t, w).Msg, "limit reached") {
		t.Fatalf("third listener: status %d %s, want 409", w.Code, w.Body)
	}
	// The cap is per project: project b still has room.
	if w := e.do("POST", "/v2/listeners", `{"execution_id":"e2","url":"http://h/"}`, "X-Auth-Token", "tok-b"); w.Code != 201 {
		t.Fatalf("other project: status %d %s", w.Code, w.Body)
	}
}

// seed creates one listener in project a (e1), one in b (e2) and a task
// listener in a; it returns their ids.
func seed(t *testing.T, e *env) (a, b, task string) {
	t.Helper()
	id := func(body, tok string) string {
		w := e.do("POST", "/v2/listeners", body, "X-Auth-Token", tok)
		if w.Code != 201 {
			t.Fatalf("seed: %d %s", w.Code, w.Body)
		}
		var v view
		_ = json.Unmarshal(w.Body.Bytes(), &v)
		return v.ID
	}
	return id(good, "tok-a"), id(`{"execution_id":"e2","url":"http://b.example/"}`, "tok-b"),
		id(`{"task_execution_id":"t1","url":"http://a.example/t","events":["TASK"]}`, "tok-a")
}

func ids(t *testing.T, w *httptest.ResponseRecorder) []string {
	t.Helper()
	var lb listBody
	if err := json.Unmarshal(w.Body.Bytes(), &lb); err != nil {
		t.Fatalf("list body %s: %v", w.Body, err)
	}
	var out []string
	for _, v := range lb.Listeners {
		out = append(out, v.ID)
	}
	return out
}

func TestListScoping(t *testing.T) {
	e := newEnv(t, 0)
	a, b, task := seed(t, e)
	tests := []struct {
		name   string
		hdr    []string
		status int
		want   []string
	}{
		{"project a", []string{"X-Auth-Token", "tok-a"}, 200, []string{a, task}},
		{"project b", []string{"X-Auth-Token", "tok-b"}, 200, []string{b}},
		{"admin bearer", []string{"Authorization", "Bearer " + adminToken}, 200, []string{a, b, task}},
		{"admin as X-Auth-Token", []string{"X-Auth-Token", adminToken}, 200, []string{a, b, task}},
		{"wrong admin token", []string{"Authorization", "Bearer nope"}, 401, nil},
		{"project unknown", []string{"X-Auth-Token", "tok-nop"}, 200, nil},
		{"no token", nil, 401, nil},
		{"bad token", []string{"X-Auth-Token", "forged"}, 401, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.do("GET", "/v2/listeners", "", tt.hdr...)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if tt.status == 200 && strings.Join(ids(t, w), ",") != strings.Join(tt.want, ",") {
				t.Errorf("listed %v, want %v", ids(t, w), tt.want)
			}
		})
	}
	e.auth.open = true
	if got := ids(t, e.do("GET", "/v2/listeners", "")); len(got) != 3 {
		t.Errorf("with Mistral's auth off, listed %v, want all three", got)
	}
}

func TestListPaging(t *testing.T) {
	e := newEnv(t, 0)
	a, b, task := seed(t, e)
	admin := []string{"Authorization", "Bearer " + adminToken}
	w := e.do("GET", "/v2/listeners?limit=2", "", admin...)
	var lb listBody
	_ = json.Unmarshal(w.Body.Bytes(), &lb)
	if got := ids(t, w); strings.Join(got, ",") != a+","+b {
		t.Fatalf("page 1 %v", got)
	}
	if want := "http://proxy.example:8990/v2/listeners?limit=2&marker=" + b; lb.Next != want {
		t.Fatalf("next %q, want %q", lb.Next, want)
	}
	w = e.do("GET", strings.TrimPrefix(lb.Next, "http://proxy.example:8990"), "", admin...)
	lb = listBody{}
	_ = json.Unmarshal(w.Body.Bytes(), &lb)
	if got := ids(t, w); strings.Join(got, ",") != task || lb.Next != "" {
		t.Fatalf("page 2 %v next %q", got, lb.Next)
	}
	for _, q := range []string{"limit=0", "limit=x", "marker=nope", "sort_keys=id"} {
		if w := e.do("GET", "/v2/listeners?"+q, "", admin...); w.Code != 400 {
			t.Errorf("?%s: status %d, want 400", q, w.Code)
		}
	}
	// A path prefix before /v2 (the proxy's path_prefix) is kept in next.
	w = e.do("GET", "/mistral/v2/listeners?limit=1", "", admin...)
	lb = listBody{}
	_ = json.Unmarshal(w.Body.Bytes(), &lb)
	if !strings.HasPrefix(lb.Next, "http://proxy.example:8990/mistral/v2/listeners?") {
		t.Errorf("next %q lost the path prefix", lb.Next)
	}
}

func TestListHidesExpired(t *testing.T) {
	e := newEnv(t, 0)
	seed(t, e)
	e.h.o.Now = func() time.Time { return t0.Add(25 * time.Hour) } // past the default TTL
	if got := ids(t, e.do("GET", "/v2/listeners", "", "X-Auth-Token", "tok-a")); len(got) != 0 {
		t.Fatalf("listed expired listeners %v", got)
	}
}

func TestGetDelete(t *testing.T) {
	e := newEnv(t, 0)
	a, b, task := seed(t, e)
	tests := []struct {
		name, method, id string
		hdr              []string
		status           int
	}{
		{"own", "GET", a, []string{"X-Auth-Token", "tok-a"}, 200},
		{"other project's", "GET", b, []string{"X-Auth-Token", "tok-a"}, 404},
		{"unknown", "GET", "nope", []string{"X-Auth-Token", "tok-a"}, 404},
		{"no token", "GET", a, nil, 401},
		{"unknown project, scope readable", "GET", a, []string{"X-Auth-Token", "tok-nop"}, 200},
		{"admin", "GET", b, []string{"Authorization", "Bearer " + adminToken}, 200},
		{"delete other project's", "DELETE", b, []string{"X-Auth-Token", "tok-a"}, 404},
		{"delete own", "DELETE", a, []string{"X-Auth-Token", "tok-a"}, 204},
		{"deleted", "GET", a, []string{"X-Auth-Token", "tok-a"}, 404},
		{"delete again", "DELETE", a, []string{"X-Auth-Token", "tok-a"}, 404},
		{"admin deletes", "DELETE", b, []string{"Authorization", "Bearer " + adminToken}, 204},
		{"sub-path", "GET", a + "/x", []string{"X-Auth-Token", "tok-a"}, 404},
		{"PUT", "PUT", a, []string{"X-Auth-Token", "tok-a"}, 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.do(tt.method, "/v2/listeners/"+tt.id, "", tt.hdr...)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if tt.status >= 400 {
				faultOf(t, w)
			}
		})
	}
	if n := e.st.count(); n != 1 {
		t.Errorf("%d listeners left, want 1 (the task listener)", n)
	}
	for _, p := range []string{"/v2/listenersX", "/v2/listeners" + task, "/v2/other"} {
		if w := e.do("GET", p, "", "Authorization", "Bearer "+adminToken); w.Code != 404 {
			t.Errorf("GET %s: %d, want 404", p, w.Code)
		}
	}
	if w := e.do("PATCH", "/v2/listeners", ""); w.Code != 405 || w.Header().Get("Allow") != "GET, POST" {
		t.Errorf("PATCH on the collection: %d Allow %q", w.Code, w.Header().Get("Allow"))
	}
}

func TestStoreFailure(t *testing.T) {
	e := newEnv(t, 0)
	e.st.fail = errors.New("disk full at /var/lib/x")
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v2/listeners", good}, {"GET", "/v2/listeners", ""},
	} {
		w := e.do(c.method, c.path, c.body, "X-Auth-Token", "tok-a")
		if f := faultOf(t, w); w.Code != 500 || f.Code != "Server" || strings.Contains(f.Msg, "disk full") {
			t.Errorf("%s %s: %d %+v; want a 500 that does not leak the store's error", c.method, c.path, w.Code, f)
		}
	}
}

// TestGolden pins the API's bodies: create, get, list and a fault.
func TestGolden(t *testing.T) {
	e := newEnv(t, 0)
	w := e.do("POST", "/v2/listeners", good, "X-Auth-Token", "tok-a")
	var v view
	_ = json.Unmarshal(w.Body.Bytes(), &v)
	norm := func(s string) string {
		return strings.NewReplacer(v.ID, "<id>", v.Secret, "<generated secret>").Replace(s)
	}
	golden(t, "create.json", w.Code, norm(w.Body.String()))
	w = e.do("POST", "/v2/listeners", `{"workflow_name":"wf","events":["*"],"url":"https://u:p@h.example/x","method":"PUT","format":"cloudevents","secret":"s","expires_at":"2026-12-05T00:00:00Z"}`, "X-Auth-Token", "tok-a")
	var wf view
	_ = json.Unmarshal(w.Body.Bytes(), &wf)
	norm2 := func(s string) string { return strings.ReplaceAll(norm(s), wf.ID, "<id2>") }
	w = e.do("GET", "/v2/listeners/"+v.ID, "", "X-Auth-Token", "tok-a")
	golden(t, "get.json", w.Code, norm(w.Body.String()))
	w = e.do("GET", "/v2/listeners?limit=2", "", "X-Auth-Token", "tok-a")
	golden(t, "list.json", w.Code, norm2(w.Body.String()))
	w = e.do("POST", "/v2/listeners", `{"execution_id":"e1","workbook_name":"wb","url":"http://h/"}`, "X-Auth-Token", "tok-a")
	golden(t, "fault.json", w.Code, w.Body.String())
}

func golden(t *testing.T, name string, status int, body string) {
	t.Helper()
	got := []byte(http.StatusText(status) + "\n" + body)
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs:\n got: %s\nwant: %s", name, got, want)
	}
}

var _ Store = (*store.Store)(nil)

func TestSetAdminToken(t *testing.T) {
	e := newEnv(t, 0)
	seed(t, e)
	list := func(tok string) int { return e.do("GET", "/v2/listeners", "", "Authorization", "Bearer "+tok).Code }
	if got := list(adminToken); got != 200 {
		t.Fatalf("admin token: %d", got)
	}
	e.h.SetAdminToken("rotated-token")
	if got := list(adminToken); got != 401 {
		t.Fatalf("previous admin token after rotation: %d, want 401", got)
	}
	if got := list("rotated-token"); got != 200 {
		t.Fatalf("rotated admin token: %d", got)
	}
	e.h.SetAdminToken("")
	if got := list(""); got != 401 {
		t.Fatalf("empty bearer with admin access off: %d, want 401", got)
	}
}
