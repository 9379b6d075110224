package mistral

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// projectKeystone scopes tokens by project name ("admin", id "pa") or id,
// refuses project "nope" (no role: 401) and lists projects pa and pd.
type projectKeystone struct {
	mu      sync.Mutex
	logins  map[string]int // project id → token requests
	refuses int
}

func (k *projectKeystone) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if r.URL.Path == "/v3/auth/projects" {
		if r.Header.Get("X-Auth-Token") != "tok-pa" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, `{"projects": [{"id": "pa", "name": "admin", "enabled": true}, {"id": "pd", "name": "demo"}, {"id": "px", "name": "off", "enabled": false}]}`)
		return
	}
	var body struct {
		Auth struct {
			Scope struct {
				Project struct{ ID, Name string }
			}
		}
	}
	json.NewDecoder(r.Body).Decode(&body)
	id := body.Auth.Scope.Project.ID
	if body.Auth.Scope.Project.Name == "admin" {
		id = "pa"
	}
	if id == "nope" {
		k.refuses++
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error": {"message": "no role"}}`)
		return
	}
	k.logins[id]++
	w.Header().Set("X-Subject-Token", "tok-"+id)
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"token": {"expires_at": %q, "project": {"id": %q}}}`, time.Now().Add(time.Hour).UTC().Format(time.RFC3339), id)
}

func TestInProjectScopesTokens(t *testing.T) {
	ks := &projectKeystone{logins: map[string]int{}}
	kSrv := httptest.NewServer(ks)
	defer kSrv.Close()
	var mu sync.Mutex
	var seen []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("X-Auth-Token"))
		mu.Unlock()
		fmt.Fprint(w, `{"tasks": []}`)
	}))
	defer api.Close()
	c := newClient(t, api.URL, Options{Keystone: Keystone{AuthURL: kSrv.URL + "/v3", Username: "tap", Password: "p", ProjectName: "admin"}})
	ctx := context.Background()
	// Clients are taken in order: the home project's id is known once
	// Keystone issued the home token.
	tests := []struct {
		client    func() *Client
		wantToken string
	}{
		{func() *Client { return c }, "tok-pa"},
		{func() *Client { return c.InProject("pd") }, "tok-pd"},
		{func() *Client { return c.InProject("pd").InProject("pd") }, "tok-pd"},
		{func() *Client { return c.InProject("pa") }, "tok-pa"}, // the home project: the home token
		{func() *Client { return c.InProject("") }, "tok-pa"},
	}
	for i, tt := range tests {
		if _, err := All(tt.client().Tasks(ctx, url.Values{})); err != nil {
			t.Fatal(err)
		}
		if got := seen[len(seen)-1]; got != tt.wantToken {
			t.Errorf("case %d: token %q, want %q", i, got, tt.wantToken)
		}
	}
	if ks.logins["pa"] != 1 || ks.logins["pd"] != 1 {
		t.Errorf("token requests %v, want one per project", ks.logins)
	}
	if c.InProject("pd").LastContact().IsZero() || !c.LastContact().Equal(c.InProject("pd").LastContact()) {
		t.Error("LastContact is not shared with the project clients")
	}

	// Projects and names.
	if _, ok := c.ProjectID("demo"); ok {
		t.Error("ProjectID answered before Projects was listed")
	}
	m, err := c.InProject("pd").Projects(ctx)
	if err != nil || len(m) != 2 {
		t.Fatalf("Projects = %v, %v; want the two enabled projects", m, err)
	}
	for _, name := range []string{"demo", "pd"} {
		if id, ok := c.ProjectID(name); id != "pd" || !ok {
			t.Errorf("ProjectID(%q) = %q, %v", name, id, ok)
		}
	}
	if _, ok := c.ProjectID("off"); ok {
		t.Error("a disabled project resolved")
	}
}

// TestRefusedProjectBacksOff: Keystone refusing a project's token is a
// NoAccess error, answered again without asking Keystone until the
// back-off ends.
func TestRefusedProjectBacksOff(t *testing.T) {
	ks := &projectKeystone{logins: map[string]int{}}
	kSrv := httptest.NewServer(ks)
	defer kSrv.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"tasks": []}`) }))
	defer api.Close()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	c := newClient(t, api.URL, Options{Now: func() time.Time { return now },
		Keystone: Keystone{AuthURL: kSrv.URL + "/v3", Username: "tap", Password: "p", ProjectName: "admin"}})
	steps := []struct {
		advance     time.Duration
		wantRefuses int
	}{
		{0, 1},
		{5 * time.Second, 1},  // within the first 10 s
		{6 * time.Second, 2},  // asked again, now waits 20 s
		{19 * time.Second, 2}, // still waiting
		{2 * time.Second, 3},
	}
	for i, st := range steps {
		now = now.Add(st.advance)
		_, err := All(c.InProject("nope").Tasks(context.Background(), url.Values{}))
		var ke *KeystoneError
		if !errors.As(err, &ke) || !ke.NoAccess() || !strings.Contains(err.Error(), `"nope"`) {
			t.Fatalf("step %d: err = %v, want a NoAccess KeystoneError naming the project", i, err)
		}
		if ks.refuses != st.wantRefuses {
			t.Errorf("step %d: Keystone asked %d times, want %d", i, ks.refuses, st.wantRefuses)
		}
	}
}
