package mistral

import (
	"context"
	"encoding/json"
	"fmt"
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
