package listeners

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// The tests below run the Mistral-backed authorizer against the real
// Mistral 15 of testenv/realmistral (auth off) and the Keystone-backed one
// of testenv/keystone (auth on); they skip when those are not set up.

// realCall sends one request to a real Mistral and decodes a 2xx answer.
func realCall(t *testing.T, method, u, token, ctype, body string, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, u, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v", method, u, err)
		}
	}
}

// realTree defines a parent workflow calling a child on a real Mistral,
// starts it and waits for the child's task; it returns the workflow name
// and the ids, and deletes everything at the end.
func realTree(t *testing.T, base, token string) (wf, parent, sub, subTask string) {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	wf = "lapi_" + hex.EncodeToString(b[:])
	def := fmt.Sprintf("version: '2.0'\n%s:\n  tasks:\n    call:\n      workflow: %s_child\n%s_child:\n  tasks:\n    wait:\n      action: std.sleep seconds=1\n", wf, wf, wf)
	realCall(t, "POST", base+"/v2/workflows", token, "text/plain", def, nil)
	var x resource
	body, _ := json.Marshal(map[string]string{"workflow_name": wf})
	realCall(t, "POST", base+"/v2/executions", token, "application/json", string(body), &x)
	parent = x.ID
	t.Cleanup(func() {
		for _, p := range []string{"/v2/executions/" + parent, "/v2/workflows/" + wf, "/v2/workflows/" + wf + "_child"} {
			req, _ := http.NewRequest("DELETE", base+p, nil)
			req.Header.Set("X-Auth-Token", token)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for subTask == "" {
		if time.Now().After(deadline) {
			t.Fatal("the child workflow's task did not appear within 30s")
		}
		var execs struct{ Executions []resource }
		realCall(t, "GET", base+"/v2/executions?"+url.Values{"root_execution_id": {parent}}.Encode(), token, "", "", &execs)
		for _, e := range execs.Executions {
			if e.ID != parent {
				sub = e.ID
			}
		}
		if sub != "" {
			var tasks struct{ Tasks []resource }
			realCall(t, "GET", base+"/v2/tasks?"+url.Values{"workflow_execution_id": {sub}}.Encode(), token, "", "", &tasks)
			if len(tasks.Tasks) > 0 {
				subTask = tasks.Tasks[0].ID
			}
		}
		if subTask == "" {
			time.Sleep(200 * time.Millisecond) // polling a real engine: no signal to wait on
		}
	}
	return wf, parent, sub, subTask
}

func TestMistralAuthorizerRealAuthOff(t *testing.T) {
	base := strings.TrimRight(os.Getenv("MISTRAL_E2E_URL"), "/")
	if base == "" {
		t.Skip("MISTRAL_E2E_URL not set (eval \"$(bash testenv/realmistral/mistral.sh env)\")")
	}
	wf, parent, sub, subTask := realTree(t, base, "")
	m, _ := NewMistralAuthorizer(MistralOptions{URL: base})
	const project = "<default-project>"
	for _, tt := range []struct {
		s    Scope
		want Grant
	}{
		{Scope{ScopeExecution, parent}, Grant{ProjectID: project, RootID: parent}},
		{Scope{ScopeExecution, sub}, Grant{ProjectID: project, RootID: parent}},
		{Scope{ScopeTask, subTask}, Grant{ProjectID: project, RootID: parent}},
		{Scope{ScopeWorkflow, wf}, Grant{ProjectID: project}},
	} {
		if g, err := m.Authorize(t.Context(), "", tt.s); err != nil || g != tt.want {
			t.Errorf("Authorize(%v) = %+v, %v; want %+v", tt.s, g, err, tt.want)
		}
	}
	for _, s := range []Scope{{ScopeExecution, "00000000-0000-0000-0000-000000000000"}, {ScopeWorkflow, wf + "_nope"}, {ScopeWorkbook, wf}} {
		if _, err := m.Authorize(t.Context(), "", s); !errors.Is(err, ErrNotFound) {
			t.Errorf("Authorize(%v) = %v, want ErrNotFound", s, err)
		}
	}
	if g, err := m.Caller(t.Context(), ""); err != nil || !g.Admin {
		t.Errorf("Caller = %+v, %v; want Admin (auth off)", g, err)
	}
}

// realToken gets a project-scoped Keystone token and the project's id.
func realToken(t *testing.T, ks, user, project, password string) (string, string) {
	t.Helper()
	body := fmt.Sprintf(`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":%q,"domain":{"id":"default"},"password":%q}}},"scope":{"project":{"name":%q,"domain":{"id":"default"}}}}}`, user, password, project)
	resp, err := http.Post(ks+"/auth/tokens", "application/json", bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Token struct {
			Project struct{ ID string } `json:"project"`
		} `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("keystone token for %s/%s: %d (%v)", user, project, resp.StatusCode, err)
	}
	return resp.Header.Get("X-Subject-Token"), out.Token.Project.ID
}

func TestMistralAuthorizerRealAuthOn(t *testing.T) {
	base := strings.TrimRight(os.Getenv("MISTRAL_E2E_AUTH_URL"), "/")
	ks := os.Getenv("MISTRAL_E2E_AUTH_KEYSTONE_URL")
	if base == "" || ks == "" {
		t.Skip("MISTRAL_E2E_AUTH_URL not set (testenv/keystone/keystone.sh)")
	}
	pw := os.Getenv("MISTRAL_E2E_AUTH_PASSWORD")
	demo, demoID := realToken(t, ks, "demo-user", "demo", pw)
	alt, altID := realToken(t, ks, "alt-user", "alt", pw)
	wf, parent, sub, subTask := realTree(t, base, demo)
	for _, keystone := range []string{"", strings.TrimSuffix(ks, "/v3")} {
		m, _ := NewMistralAuthorizer(MistralOptions{URL: base, KeystoneURL: keystone})
		for _, tt := range []struct {
			s    Scope
			want Grant
		}{
			{Scope{ScopeExecution, parent}, Grant{ProjectID: demoID, RootID: parent}},
			{Scope{ScopeExecution, sub}, Grant{ProjectID: demoID, RootID: parent}},
			{Scope{ScopeTask, subTask}, Grant{ProjectID: demoID, RootID: parent}},
			{Scope{ScopeWorkflow, wf}, Grant{ProjectID: demoID}},
			{Scope{ScopeWorkflow, "lapi_*"}, Grant{ProjectID: demoID}},
		} {
			if g, err := m.Authorize(t.Context(), demo, tt.s); err != nil || g != tt.want {
				t.Errorf("keystone %q: Authorize(demo, %v) = %+v, %v; want %+v", keystone, tt.s, g, err, tt.want)
			}
		}
		for _, s := range []Scope{{ScopeExecution, parent}, {ScopeTask, subTask}, {ScopeWorkflow, wf}} {
			_, err := m.Authorize(t.Context(), alt, s)
			if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrForbidden) {
				t.Errorf("keystone %q: Authorize(alt, demo's %v) = %v, want a refusal", keystone, s, err)
			}
		}
		if _, err := m.Authorize(t.Context(), "", Scope{ScopeExecution, parent}); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("keystone %q: no token: %v, want ErrUnauthorized", keystone, err)
		}
		if g, err := m.Caller(t.Context(), demo); err != nil || g != (Grant{ProjectID: demoID}) {
			t.Errorf("keystone %q: Caller(demo) = %+v, %v; want %s", keystone, g, err, demoID)
		}
		if keystone != "" {
			if g, err := m.Caller(t.Context(), alt); err != nil || g != (Grant{ProjectID: altID}) {
				t.Errorf("Caller(alt) from Keystone = %+v, %v; want %s", g, err, altID)
			}
		}
	}
}
