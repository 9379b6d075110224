package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/testenv/fakemistral"
	"github.com/mistral-tap/mistral-tap/testenv/receiver"
)

const reloadConfig = `
listen: 127.0.0.1:0
upstream: %s
state_dir: %s
ops: {listen: %s}
watch: {interval: 100ms}
delivery: {allow_networks: ["127.0.0.0/8"]}
callbacks:
  - name: %s
    events: [WORKFLOW_SUCCEEDED]
    url: %s/%s
`

// TestLiveReload: editing the callbacks file takes effect without a
// restart; an invalid edit keeps the running configuration.
func TestLiveReload(t *testing.T) {
	t.Parallel() // own engine, receivers, ports and state dir
	eng := fakemistral.New(fakemistral.Options{})
	defer eng.Close()
	es := httptest.NewServer(eng)
	defer es.Close()
	first, second := receiver.New(), receiver.New()
	mux := http.NewServeMux()
	mux.Handle("/first", first)
	mux.Handle("/second", second)
	rs := httptest.NewServer(mux)
	defer rs.Close()

	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	ops := freeAddr(t)
	path := filepath.Join(dir, "mistral-tap.yaml")
	writeCfg := func(name string) {
		t.Helper()
		// Write-then-rename, as editors and config management do.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, fmt.Appendf(nil, reloadConfig, es.URL, state, ops, name, rs.URL, name), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg("first")
	proxy, _ := runApp(t, path, true)
	if err := eng.DefineWorkflow("version: '2.0'\nwf:\n  tasks:\n    a:\n      action: std.noop\n", ""); err != nil {
		t.Fatal(err)
	}
	run := func() string {
		t.Helper()
		resp, err := http.Post(proxy+"/v2/executions", "application/json", strings.NewReader(`{"workflow_name": "wf"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var x struct{ ID string }
		json.NewDecoder(resp.Body).Decode(&x)
		wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer wcancel()
		if err := eng.WaitDone(wctx, x.ID); err != nil {
			t.Fatal(err)
		}
		return x.ID
	}
	wait := func(r *receiver.Receiver, n int) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer wcancel()
		if _, err := r.WaitFor(wctx, n); err != nil {
			t.Fatalf("waiting for %d deliveries: %v", n, err)
		}
	}

	run()
	wait(first, 1)

	// reloaded waits until the reloader reported one more result.
	reloaded := func(result string) func() { return reloadCounter(t, ops, result) }

	// Replace the callback: new executions go to the new one only.
	applied := reloaded("success")
	writeCfg("second")
	applied()
	firstAfter := len(first.Requests())
	run()
	wait(second, 1)
	if n := len(first.Requests()); n != firstAfter {
		t.Errorf("removed callback still received %d deliveries", n-firstAfter)
	}

	// A broken edit is refused; the running configuration keeps working.
	refused := reloaded("failure")
	if err := os.WriteFile(path, []byte("callbacks:\n  - name: x\n    events: [NOPE]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	refused()
	before := len(second.Requests())
	run()
	wait(second, before+1)
}
