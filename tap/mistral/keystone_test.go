package mistral

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeKeystone issues numbered tokens valid for life and records requests.
type fakeKeystone struct {
	issued atomic.Int32
	life   time.Duration
	now    func() time.Time
}

func (k *fakeKeystone) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v3/auth/tokens" || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	var body map[string]any
	json.NewDecoder(r.Body).Decode(&body)
	auth := body["auth"].(map[string]any)
	user := auth["identity"].(map[string]any)["password"].(map[string]any)["user"].(map[string]any)
	if user["password"] != "s3cret" {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}}`)
		return
	}
	scope := auth["scope"].(map[string]any)["project"].(map[string]any)
	if scope["name"] != "admin" || scope["domain"].(map[string]any)["name"] != "Default" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	n := k.issued.Add(1)
	w.Header().Set("X-Subject-Token", fmt.Sprintf("tok%d", n))
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"token": {"expires_at": %q}}`, k.now().Add(k.life).UTC().Format("2006-01-02T15:04:05.000000Z"))
}

// newKeystone serves fakeKeystone and returns its credentials for password.
func newKeystone(t *testing.T, k *fakeKeystone, password string) Keystone {
	t.Helper()
	srv := httptest.NewServer(k)
	t.Cleanup(srv.Close)
	return Keystone{AuthURL: srv.URL + "/v3", Username: "tap", Password: password, ProjectName: "admin"}
}

func TestTokenCachedAndRenewedBeforeExpiry(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	k := &fakeKeystone{life: time.Hour, now: clock}
	s := newTokenSource(newKeystone(t, k, "s3cret"), http.DefaultClient, clock)

	steps := []struct {
		advance time.Duration
		want    string
	}{
		{0, "tok1"},
		{30 * time.Minute, "tok1"}, // cached
		{17 * time.Minute, "tok1"}, // 47 min: before 80% of an hour (48 min)
		{2 * time.Minute, "tok2"},  // 49 min: renewed ahead of expiry
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		got, err := s.token(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got != st.want {
			t.Errorf("at +%s: token %s, want %s", st.advance, got, st.want)
		}
	}
}

// TestBadPasswordErrorNamesUserNotPassword: a request that cannot get a
// token fails with Keystone's answer, naming the user and never the
// password.
func TestBadPasswordErrorNamesUserNotPassword(t *testing.T) {
	k := &fakeKeystone{life: time.Hour, now: time.Now}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("Mistral asked without a token")
	}))
	defer api.Close()
	c := newClient(t, api.URL, Options{Keystone: newKeystone(t, k, "wrong-pass")})
	_, err := c.Execution(context.Background(), "x")
	if err == nil || !strings.Contains(err.Error(), `"tap"`) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "wrong-pass") {
		t.Fatal("the password leaked into the error")
	}
}

// TestFetch covers every outcome of one token request: the body sent
// (exactly, scoped by name or by id), the answers Keystone may give and the
// failures before it answers. A refusal names the user, never the password.
func TestFetch(t *testing.T) {
	const (
		byName  = `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"tap","password":"s3cret","domain":{"name":"UD"}}}},"scope":{"project":{"name":"admin","domain":{"name":"Default"}}}}}`
		byID    = `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"tap","password":"s3cret","domain":{"name":"UD"}}}},"scope":{"project":{"id":"p1"}}}}`
		expires = `{"token": {"expires_at": "2026-11-28T12:00:00.000000Z", "project": {"id": "p9"}}}`
	)
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, tt := range []struct {
		name      string
		projectID string
		authURL   string // "" is the test server
		status    int
		token     string // X-Subject-Token
		body      string
		wantSent  string // "" when nothing reaches the server
		wantTok   string
		wantExp   time.Time
		wantErr   string // prefix of the error
		wantScope string
	}{
		{"created, scoped by name", "", "", 201, "tok", expires, byName, "tok", now.Add(2 * time.Hour), "", "p9"},
		{"ok, scoped by id", "p1", "", 200, "tok", expires, byID, "tok", now.Add(2 * time.Hour), "", "p9"},
		{"no expiry: renew hourly", "", "", 201, "tok", `{"token": {}}`, byName, "tok", now.Add(time.Hour), "", ""},
		{"expiry mistyped: renew hourly, project kept", "", "", 201, "tok", `{"token": {"project": {"id": "p9"}, "expires_at": 5}}`,
			byName, "tok", now.Add(time.Hour), "", "p9"},
		{"body not JSON: renew hourly", "", "", 201, "tok", `<html>`, byName, "tok", now.Add(time.Hour), "", ""},
		{"no token header", "", "", 201, "", expires, byName, "", time.Time{}, "keystone: response has no X-Subject-Token header", ""},
		{"refused", "", "", 403, "", `{"error": {"message": "no role"}}`, byName, "", time.Time{},
			`keystone: token request for user "tap" in project "admin" answered 403: no role`, ""},
		{"refused without a body", "p1", "", 500, "", ``, byID, "", time.Time{},
			`keystone: token request for user "tap" in project "p1" answered 500: `, ""},
		{"bad auth URL", "", "http://[::1", 0, "", "", "", "", time.Time{}, "keystone: parse ", ""},
		{"unreachable", "", closed.URL + "/v3", 0, "", "", "", "", time.Time{}, "keystone: requesting a token: ", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var sent string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v3/auth/tokens" || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
					t.Errorf("%s %s, Content-Type %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
				}
				b, _ := io.ReadAll(r.Body)
				sent = string(b)
				if tt.token != "" {
					w.Header().Set("X-Subject-Token", tt.token)
				}
				w.WriteHeader(tt.status)
				fmt.Fprint(w, tt.body)
			}))
			defer srv.Close()
			creds := Keystone{AuthURL: cmp.Or(tt.authURL, srv.URL+"/v3/"), Username: "tap", Password: "s3cret",
				UserDomainName: "UD", ProjectName: "admin", ProjectID: tt.projectID}
			s := newTokenSource(creds, srv.Client(), func() time.Time { return now })
			tok, exp, err := s.fetch(context.Background())
			if sent != tt.wantSent {
				t.Errorf("sent\n%s\nwant\n%s", sent, tt.wantSent)
			}
			if tok != tt.wantTok || !exp.Equal(tt.wantExp) {
				t.Errorf("fetch = %q, %s; want %q, %s", tok, exp, tt.wantTok, tt.wantExp)
			}
			if got := fmt.Sprint(err); (tt.wantErr == "") != (err == nil) || !strings.HasPrefix(got, tt.wantErr) {
				t.Errorf("err = %v, want %q...", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the password leaked into %v", err)
			}
			if got := s.scopedProjectID(); got != tt.wantScope {
				t.Errorf("scoped project %q, want %q", got, tt.wantScope)
			}
		})
	}
}
