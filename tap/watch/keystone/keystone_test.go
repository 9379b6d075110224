package keystone

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

func TestTokenCachedAndRenewedBeforeExpiry(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	k := &fakeKeystone{life: time.Hour, now: clock}
	srv := httptest.NewServer(k)
	defer srv.Close()
	s := New(Credentials{AuthURL: srv.URL + "/v3", Username: "tap", Password: "s3cret", ProjectName: "admin"}, nil)
	s.now = clock

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
		got, err := s.Token(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got != st.want {
			t.Errorf("at +%s: token %s, want %s", st.advance, got, st.want)
		}
	}
}

func TestBadPasswordErrorNamesUserNotPassword(t *testing.T) {
	k := &fakeKeystone{life: time.Hour, now: time.Now}
	srv := httptest.NewServer(k)
	defer srv.Close()
	s := New(Credentials{AuthURL: srv.URL + "/v3", Username: "tap", Password: "wrong-pass", ProjectName: "admin"}, nil)
	_, err := s.Token(context.Background())
	if err == nil || !strings.Contains(err.Error(), `"tap"`) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "wrong-pass") {
		t.Fatal("the password leaked into the error")
	}
}

func TestTransportRetriesOnceAfter401(t *testing.T) {
	k := &fakeKeystone{life: time.Hour, now: time.Now}
	ks := httptest.NewServer(k)
	defer ks.Close()
	// Mistral rejects the first token (revoked early), accepts the second.
	var seen []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := r.Header.Get("X-Auth-Token")
		seen = append(seen, tok)
		if tok == "tok1" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, `{"executions": []}`)
	}))
	defer api.Close()
	src := New(Credentials{AuthURL: ks.URL + "/v3", Username: "tap", Password: "s3cret", ProjectName: "admin"}, nil)
	c := &http.Client{Transport: &Transport{Source: src}}
	resp, err := c.Get(api.URL + "/v2/executions")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.Join(seen, ",") != "tok1,tok2" {
		t.Errorf("status %d, tokens sent %v", resp.StatusCode, seen)
	}
}
