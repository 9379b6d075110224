package ops

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestReady(t *testing.T) {
	ok := func(context.Context) error { return nil }
	bad := func(context.Context) error { return errors.New("engine last reached 1m0s ago") }
	tests := []struct {
		name   string
		checks []Check
		code   int
		failed []string
	}{
		{"all ok", []Check{{Name: "config", Run: ok}, {Name: "store", Run: ok}}, 200, nil},
		{"engine down", []Check{{Name: "config", Run: ok}, {Name: "engine", Run: bad}}, 503, []string{"engine"}},
		{"informational down", []Check{{Name: "config", Run: ok}, {Name: "store", Run: bad, Informational: true}}, 200, nil},
		{"none", nil, 200, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(Handler(nil, NewHealth(time.Second, tt.checks...)))
			defer srv.Close()
			resp, err := http.Get(srv.URL + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var b healthBody
			if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.code || len(b.Failed) != len(tt.failed) {
				t.Fatalf("got %d %+v, want %d failed=%v", resp.StatusCode, b, tt.code, tt.failed)
			}
			for i, f := range tt.failed {
				if b.Failed[i] != f || b.Checks[f] == "ok" {
					t.Errorf("failed = %v checks = %v", b.Failed, b.Checks)
				}
			}
			resp2, err := http.Get(srv.URL + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			resp2.Body.Close()
			if resp2.StatusCode != 200 {
				t.Errorf("/healthz = %d, want 200 regardless of readiness", resp2.StatusCode)
			}
			resp3, _ := http.Get(srv.URL + "/metrics")
			resp3.Body.Close()
			if resp3.StatusCode != 404 {
				t.Errorf("/metrics without Metrics = %d, want 404", resp3.StatusCode)
			}
		})
	}
}

func TestRecentContact(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	tests := []struct {
		last time.Time
		ok   bool
	}{
		{time.Time{}, false},
		{now.Add(-5 * time.Second), true},
		{now.Add(-31 * time.Second), false},
	}
	for _, tt := range tests {
		err := RecentContact(func() time.Time { return tt.last }, 30*time.Second, clock)(context.Background())
		if (err == nil) != tt.ok {
			t.Errorf("last=%v: err=%v, want ok=%v", tt.last, err, tt.ok)
		}
	}
}

func TestProberCachesAndClassifies(t *testing.T) {
	var hits atomic.Int32
	var status atomic.Int32
	status.Store(401)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get("X-Auth-Token") != "tok" {
			t.Errorf("probe lacks the configured header")
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer up.Close()
	now := time.Unix(0, 0)
	p := NewProber(up.URL+"/", nil, 5*time.Second, http.Header{"X-Auth-Token": {"tok"}})
	p.now = func() time.Time { return now }
	if err := p.Check(context.Background()); err != nil {
		t.Errorf("401 counts as reachable: %v", err)
	}
	status.Store(503)
	if err := p.Check(context.Background()); err != nil || hits.Load() != 1 {
		t.Errorf("within ttl: err=%v hits=%d, want cached nil and 1 hit", err, hits.Load())
	}
	now = now.Add(6 * time.Second)
	if err := p.Check(context.Background()); err == nil || hits.Load() != 2 {
		t.Errorf("after ttl: err=%v hits=%d, want 503 error and 2 hits", err, hits.Load())
	}
	up.Close()
	now = now.Add(6 * time.Second)
	if err := p.Check(context.Background()); err == nil {
		t.Error("closed upstream counts as reachable")
	}
}
