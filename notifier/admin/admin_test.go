package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/notifier/store"
)

type fakeBackend struct {
	lastList   store.Filter
	lastReplay store.ReplayFilter
	fail       bool
}

func (f *fakeBackend) List(_ context.Context, flt store.Filter) ([]store.Delivery, error) {
	f.lastList = flt
	if f.fail {
		return nil, errors.New("disk on fire /secret/path")
	}
	return []store.Delivery{{ID: "evt_1/a", Callback: "a", State: store.Dead, LastStatus: 400, LastError: "HTTP 400"}}, nil
}

func (f *fakeBackend) Replay(_ context.Context, flt store.ReplayFilter) (int, error) {
	f.lastReplay = flt
	return 3, nil
}

func (f *fakeBackend) Status() []notifier.CallbackStatus {
	return []notifier.CallbackStatus{{Name: "a", Pending: 2, Breaker: notifier.BreakerOpen, ConsecutiveFailures: 5}}
}

func TestNewRequiresToken(t *testing.T) {
	if _, err := New(&fakeBackend{}, "", nil); err == nil {
		t.Fatal("New with empty token: want error")
	}
}

func TestAdmin(t *testing.T) {
	fb := &fakeBackend{}
	h, err := New(fb, "s3cret", nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	tests := []struct {
		name, method, path, token, body string
		wantStatus                      int
		wantBody                        string
		check                           func(t *testing.T)
	}{
		{name: "no token", method: "GET", path: "/callbacks", wantStatus: 401, wantBody: "bearer token"},
		{name: "wrong token", method: "GET", path: "/callbacks", token: "s3cre", wantStatus: 401},
		{name: "callbacks", method: "GET", path: "/callbacks", token: "s3cret", wantStatus: 200, wantBody: `"breaker": "open"`},
		{name: "list", method: "GET", path: "/deliveries?callback=a&state=dead&limit=5&since=2025-01-01T00:00:00Z", token: "s3cret",
			wantStatus: 200, wantBody: `"last_status": 400`, check: func(t *testing.T) {
				want := store.Filter{Callback: "a", State: store.Dead, Limit: 5, Since: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
				if fb.lastList != want {
					t.Errorf("filter = %+v, want %+v", fb.lastList, want)
				}
			}},
		{name: "list bad state", method: "GET", path: "/deliveries?state=lost", token: "s3cret", wantStatus: 400},
		{name: "list bad limit", method: "GET", path: "/deliveries?limit=-1", token: "s3cret", wantStatus: 400},
		{name: "list bad since", method: "GET", path: "/deliveries?since=yesterday", token: "s3cret", wantStatus: 400},
		{name: "replay id", method: "POST", path: "/deliveries/replay", token: "s3cret", body: `{"id":"evt_1/a"}`,
			wantStatus: 200, wantBody: `"replayed": 3`, check: func(t *testing.T) {
				if fb.lastReplay != (store.ReplayFilter{ID: "evt_1/a"}) {
					t.Errorf("replay filter = %+v", fb.lastReplay)
				}
			}},
		{name: "replay since", method: "POST", path: "/deliveries/replay", token: "s3cret", body: `{"since":"2025-01-01T00:00:00Z"}`,
			wantStatus: 200, check: func(t *testing.T) {
				if !fb.lastReplay.Since.Equal(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)) {
					t.Errorf("replay filter = %+v", fb.lastReplay)
				}
			}},
		{name: "replay empty", method: "POST", path: "/deliveries/replay", token: "s3cret", body: `{}`, wantStatus: 400},
		{name: "replay unknown field", method: "POST", path: "/deliveries/replay", token: "s3cret", body: `{"all":true}`, wantStatus: 400},
		{name: "replay not json", method: "POST", path: "/deliveries/replay", token: "s3cret", body: `id=1`, wantStatus: 400},
		{name: "wrong method", method: "DELETE", path: "/deliveries", token: "s3cret", wantStatus: 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var raw json.RawMessage
			_ = json.NewDecoder(resp.Body).Decode(&raw)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tc.wantStatus, raw)
			}
			if tc.wantStatus != 405 && !json.Valid(raw) {
				t.Fatalf("body is not JSON: %s", raw)
			}
			if !strings.Contains(string(raw), tc.wantBody) {
				t.Fatalf("body %s does not contain %q", raw, tc.wantBody)
			}
			if tc.check != nil {
				tc.check(t)
			}
		})
	}
}

func TestInternalErrorsAreNotLeaked(t *testing.T) {
	h, _ := New(&fakeBackend{fail: true}, "t", nil)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/deliveries", nil)
	req.Header.Set("Authorization", "Bearer t")
	h.ServeHTTP(rec, req)
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "secret") {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
}

// TestSetTokenRotates: after SetToken the old token is refused and the new
// one accepted; an empty token keeps the current one.
func TestSetTokenRotates(t *testing.T) {
	h, err := New(&fakeBackend{}, "old-token-0123456789", nil)
	if err != nil {
		t.Fatal(err)
	}
	status := func(tok string) int {
		req := httptest.NewRequest("GET", "/callbacks", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if got := status("old-token-0123456789"); got != 200 {
		t.Fatalf("old token before rotation: %d", got)
	}
	if err := h.SetToken("new-token-9876543210"); err != nil {
		t.Fatal(err)
	}
	if got := status("old-token-0123456789"); got != 401 {
		t.Errorf("old token after rotation: %d, want 401", got)
	}
	if got := status("new-token-9876543210"); got != 200 {
		t.Errorf("new token after rotation: %d, want 200", got)
	}
	if err := h.SetToken(""); err == nil {
		t.Error("SetToken(\"\"): want an error")
	}
	if got := status("new-token-9876543210"); got != 200 {
		t.Errorf("after a refused empty token: %d, want 200", got)
	}
}
