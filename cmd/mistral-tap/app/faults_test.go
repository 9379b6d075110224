package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/testenv/fakemistral"
	"github.com/mistral-tap/mistral-tap/testenv/receiver"
)

const faultConfig = `
listen: 127.0.0.1:0
upstream: %s
state_dir: %s
watch:
  interval: 100ms
delivery:
  allow_networks: ["127.0.0.0/8"]
  timeout: 2s
  retry_wait_min: 10ms
  retry_wait_max: 50ms
callbacks:
  - name: dead
    events: ["*"]
    url: %s
  - name: slow
    events: ["*"]
    url: %s/slow
  - name: live
    events: ["*"]
    url: %s/live
`

// TestDeadReceiverAndDeadEngineHarmNothingElse: a receiver that refuses
// connections and one that hangs do not delay a healthy one; a dead engine
// gives clients a Mistral-style 502 and the events resume when it is back.
func TestDeadReceiverAndDeadEngineHarmNothingElse(t *testing.T) {
	t.Parallel() // own engine, receivers, ports and state dir
	eng := fakemistral.New(fakemistral.Options{})
	defer eng.Close()
	// While the engine is down, each request that reaches it is signalled.
	var down atomic.Bool
	refused := make(chan struct{}, 64)
	es := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			select {
			case refused <- struct{}{}:
			default:
			}
		}
		eng.ServeHTTP(w, r)
	}))
	defer es.Close()

	// A port nobody listens on: connection refused.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + l.Addr().String() + "/hook"
	l.Close()

	live := receiver.New()
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.Handle("/live", live)
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select { // hangs until the test ends
		case <-release:
		case <-r.Context().Done():
		}
	})
	rs := httptest.NewServer(mux)
	defer rs.Close()

	proxy, stop := runApp(t, writeConfig(t, fmt.Sprintf(faultConfig, es.URL, t.TempDir(), deadURL, rs.URL, rs.URL)), false)
	defer func() {
		close(release) // let the hanging receiver go, then stop
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	postPath := func(path, ctype, body string) (int, []byte) { return post(t, proxy+path, ctype, body) }
	if code, b := postPath("/v2/workflows", "text/plain", "version: '2.0'\nwf:\n  tasks:\n    a:\n      action: std.noop\n"); code != 201 {
		t.Fatalf("define: %d %s", code, b)
	}

	// Dead engine: the client gets Mistral's error shape from the proxy.
	eng.SetDown(true)
	down.Store(true)
	code, body := postPath("/v2/executions", "application/json", `{"workflow_name": "wf"}`)
	var fault struct {
		Faultcode, Faultstring string
	}
	if code != http.StatusBadGateway || json.Unmarshal(body, &fault) != nil || fault.Faultcode != "Server" || !strings.HasPrefix(fault.Faultstring, "mistral-tap: ") {
		t.Fatalf("engine down: %d %s", code, body)
	}
	for range 3 { // the watcher fails a few requests meanwhile
		select {
		case <-refused:
		case <-time.After(10 * time.Second):
			t.Fatal("the watcher never tried the dead engine")
		}
	}
	down.Store(false)
	eng.SetDown(false)

	start := time.Now()
	code, body = postPath("/v2/executions", "application/json", `{"workflow_name": "wf"}`)
	if code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	var x struct{ ID string }
	json.Unmarshal(body, &x)
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := eng.WaitDone(wctx, x.ID); err != nil {
		t.Fatal(err)
	}
	// WORKFLOW_LAUNCHED, TASK_LAUNCHED, TASK_SUCCEEDED, WORKFLOW_SUCCEEDED
	if _, err := live.WaitFor(wctx, 4); err != nil {
		t.Fatalf("live receiver starved by dead ones: %v (got %d)", err, len(live.Requests()))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("live receiver took %s", d)
	}
}
