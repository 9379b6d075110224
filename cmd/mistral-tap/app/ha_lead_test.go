package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/cmd/mistral-tap/app"
	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore"
	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore/pgtest"
	"github.com/mistral-tap/mistral-tap/tap/track"
	"github.com/mistral-tap/mistral-tap/testenv/fakemistral"
)

// TestLeaderTerm runs one replica on a fresh database: with a usable store
// it leads and, on shutdown, stops its pipeline; when the pipeline cannot
// be rebuilt from the store (a malformed tracker horizon) it steps down
// with the reason and keeps proxying.
func TestLeaderTerm(t *testing.T) {
	tests := []struct {
		name        string
		horizon     string   // stored tracker horizon; "" stores none
		whileRuns   []string // log lines expected before shutdown (the watcher starting means the term is up)
		afterReturn []string // log lines expected once Run returned
	}{
		{"leads", "", []string{`msg="mistral-tap running"`, `msg="elected leader"`, `msg="watcher `}, []string{`msg="leader pipeline stopped"`, `msg="resigned leadership"`}},
		{"take-over fails", "not-a-time", []string{`msg="taking over failed; stepping down"`, `tracker horizon \"not-a-time\" in the store is malformed`}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dsn := pgtest.Database(t)
			ctx := context.Background()
			pg, err := pgstore.Open(ctx, pgstore.Options{DSN: dsn})
			if err != nil {
				t.Fatal(err)
			}
			if tt.horizon != "" {
				if err := pg.SetCheckpoint(ctx, track.HorizonCheckpoint, tt.horizon); err != nil {
					t.Fatal(err)
				}
			}
			pg.Close()
			es := httptest.NewServer(fakemistral.New(fakemistral.Options{}))
			t.Cleanup(es.Close)
			path := writeConfig(t, fmt.Sprintf(haConfig, es.URL, t.TempDir(), dsn, es.URL))
			cfg, err := config.Load(config.Source{Path: path})
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var logs syncBuffer
			runCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				done <- app.Run(runCtx, app.Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Listener: ln})
			}()
			waitLogs(t, &logs, tt.whileRuns)
			if code, _ := get(t, "http://"+ln.Addr().String()+"/v2/executions"); code != 200 {
				t.Errorf("proxy answered %d, want 200", code)
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return")
			}
			waitLogs(t, &logs, tt.afterReturn)
		})
	}
}

// waitLogs waits up to 15s until every string is in the log, looking
// again at each write.
func waitLogs(t *testing.T, logs *syncBuffer, want []string) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for _, w := range want {
		for {
			text, wrote := logs.next()
			if strings.Contains(text, w) {
				break
			}
			select {
			case <-wrote:
			case <-deadline:
				t.Fatalf("log lacks %q:\n%s", w, text)
			}
		}
	}
}
