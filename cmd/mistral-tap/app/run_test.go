package app_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/cmd/mistral-tap/app"
	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/testenv/fakemistral"
)

// TestRunLifecycle covers what Run does around its components: Ready gets
// the proxy's address, a manual reload request reaches the reloader, and a
// failing component shuts everything down in order and is Run's error.
func TestRunLifecycle(t *testing.T) {
	tests := []struct {
		name       string
		closeFirst bool   // the proxy's listener is closed before Run: the proxy fails
		wantErr    string // prefix of Run's error; "" for nil
		wantLogs   []string
	}{
		{"ready and manual reload", false, "", []string{"mistral-tap running", "shutting down", "stopped"}},
		{"component fails", true, "proxy: ", []string{"component failed; shutting down", "shutting down", "stopped"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es := httptest.NewServer(fakemistral.New(fakemistral.Options{}))
			t.Cleanup(es.Close)
			ops := freeAddr(t)
			path := writeConfig(t, fmt.Sprintf("listen: 127.0.0.1:0\nupstream: %s\nstate_dir: %s\nops:\n  listen: %s\nwatch:\n  interval: 100ms\n",
				es.URL, t.TempDir(), ops))
			src := config.Source{Path: path}
			cfg, err := config.Load(src)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			if tt.closeFirst {
				ln.Close()
			}
			var logs bytes.Buffer
			ready := make(chan string, 1)
			reload := make(chan struct{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				done <- app.Run(ctx, app.Options{Config: cfg, Source: src, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
					Listener: ln, Reload: reload, Ready: func(addr string) { ready <- addr }})
			}()
			if !tt.closeFirst {
				select {
				case addr := <-ready:
					if addr != ln.Addr().String() {
						t.Errorf("Ready(%q), want %q", addr, ln.Addr().String())
					}
				case <-time.After(10 * time.Second):
					t.Fatal("Ready was not called")
				}
				reloaded := reloadCounter(t, ops, "success")
				reload <- struct{}{}
				reloaded()
				cancel()
			}
			var runErr error
			select {
			case runErr = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return")
			}
			switch {
			case tt.wantErr == "" && runErr != nil:
				t.Errorf("Run: %v", runErr)
			case tt.wantErr != "" && (runErr == nil || !strings.HasPrefix(runErr.Error(), tt.wantErr)):
				t.Errorf("Run: %v, want an error starting with %q", runErr, tt.wantErr)
			}
			rest := logs.String()
			for _, want := range tt.wantLogs {
				// slog's text format quotes only messages with spaces.
				loc := regexp.MustCompile(`msg=("` + regexp.QuoteMeta(want) + `"|` + regexp.QuoteMeta(want) + `[ \n])`).FindStringIndex(rest)
				i := -1
				if loc != nil {
					i = loc[0]
				}
				if i < 0 {
					t.Fatalf("log lacks %q (in order):\n%s", want, logs.String())
				}
				rest = rest[i:]
			}
		})
	}
}
