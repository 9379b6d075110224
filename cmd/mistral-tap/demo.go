package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/mistral-tap/mistral-tap/cmd/mistral-tap/app"
	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/testenv/fakemistral"
	"github.com/mistral-tap/mistral-tap/testenv/receiver"
)

// demoWorkflows are run by the demo: one succeeds, one fails, one is paused
// and resumed. They are Mistral DSL v2, the same text a real Mistral takes.
const demoWorkflows = `version: '2.0'
demo_deploy:
  tasks:
    build:
      action: std.echo output="built"
      on-success: [test]
    test:
      action: std.sleep seconds=0.3
      on-success: [release]
    release:
      action: std.noop
demo_migrate:
  tasks:
    migrate:
      action: std.fail
demo_backup:
  tasks:
    snapshot:
      action: std.sleep seconds=1.5
`

// demoConfig is the configuration the demo writes and loads; %s are the
// fake engine's URL, the state directory and the console receiver's URL.
const demoConfig = `# mistral-tap demo configuration (generated)
listen: 127.0.0.1:0
upstream: %s
state_dir: %s
watch:
  interval: 500ms
delivery:
  allow_networks: ["127.0.0.0/8"]   # the console receiver is on loopback
callbacks:
  - name: console
    events: ["*"]
    url: %s/hook
    format: envelope
`

// cmdDemo runs a fake Mistral, mistral-tap in front of it and a console
// receiver, drives three workflows through the proxy and prints every
// notification as it arrives.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("demo", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	keep := fs.Bool("keep", false, "keep running after the scripted workflows (Ctrl-C to stop); the proxy stays usable")
	verbose := fs.Bool("verbose", false, "show mistral-tap's own logs")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}

	dir, err := os.MkdirTemp("", "mistral-tap-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	engine := fakemistral.New(fakemistral.Options{})
	defer engine.Close()
	engineURL, stopEngine, err := serveLoopback(engine)
	if err != nil {
		return err
	}
	defer stopEngine()

	out := &lockedWriter{w: stdout}
	rec := receiver.New()
	recURL, stopRec, err := serveLoopback(demoReceiver(rec, out))
	if err != nil {
		return err
	}
	defer stopRec()

	cfgPath, cfg, err := writeDemoConfig(dir, engineURL, recURL)
	if err != nil {
		return err
	}
	log := demoLogger(*verbose, stderr)

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	proxyURL, done, err := startDemoProxy(runCtx, cfg, log)
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "mistral-tap demo\n  fake Mistral   %s\n  mistral-tap    %s   (clients talk to this)\n  receiver       %s/hook (prints below)\n  config         %s\n\n", engineURL, proxyURL, recURL, cfgPath)

	// Ctrl-C during the script is a normal way to end the demo, not a failure.
	if err := driveDemo(runCtx, proxyURL, out, rec); err != nil && !errors.Is(err, context.Canceled) {
		stop()
		<-done
		return err
	}
	if *keep && ctx.Err() == nil {
		fmt.Fprintf(out, "Still running (--keep). Try: curl -s %s/v2/executions | head -c 300; Ctrl-C to stop.\n", proxyURL)
		<-ctx.Done()
	}
	stop()
	return <-done
}

// demoReceiver prints each notification on out and also records it in rec,
// which settle watches to tell when the notifications have stopped coming.
// Both read the body, so it is buffered and handed to each in turn.
func demoReceiver(rec *receiver.Receiver, out io.Writer) http.Handler {
	console := receiver.ConsolePrinter(out)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		console.ServeHTTP(w, r)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec.ServeHTTP(httpDiscard{}, r)
	})
}

// writeDemoConfig writes the demo's configuration into dir and loads it
// back through config.Load, so the demo runs on exactly what a user's file
// would give (defaults, validation) and the banner can show the file.
func writeDemoConfig(dir, engineURL, recURL string) (string, *config.Config, error) {
	cfgPath := filepath.Join(dir, "mistral-tap.yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, demoConfig, engineURL, filepath.Join(dir, "state"), recURL), 0o600); err != nil {
		return "", nil, err
	}
	cfg, err := config.Load(config.Source{Path: cfgPath})
	if err != nil {
		return "", nil, fmt.Errorf("demo config: %w", err)
	}
	return cfgPath, cfg, nil
}

// demoLogger discards mistral-tap's own logs unless --verbose: the demo's
// output is the script and the notifications.
func demoLogger(verbose bool, stderr io.Writer) *slog.Logger {
	logOut := io.Discard
	if verbose {
		logOut = stderr
	}
	return slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// startDemoProxy runs mistral-tap on a fresh loopback port until ctx ends;
// done receives Run's result. The listener is bound before Run starts so
// that the banner can show the address and the script can use it at once.
func startDemoProxy(ctx context.Context, cfg *config.Config, log *slog.Logger) (proxyURL string, done <-chan error, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	ch := make(chan error, 1)
	go func() { ch <- app.Run(ctx, app.Options{Config: cfg, Logger: log, Version: version, Listener: ln}) }()
	return "http://" + ln.Addr().String(), ch, nil
}

// driveDemo runs the scripted workflows through the proxy, then waits for
// their notifications to settle (nothing new for a second) and says how
// many arrived. The count is printed even when settling was cut short.
func driveDemo(ctx context.Context, proxyURL string, out io.Writer, rec *receiver.Receiver) error {
	c := &demoClient{base: proxyURL + "/v2", out: out}
	if err := c.script(ctx); err != nil {
		return err
	}
	err := settle(ctx, rec, time.Second, 15*time.Second)
	fmt.Fprintf(out, "\n%d notifications delivered.\n", len(rec.Requests()))
	return err
}

// settle waits until the receiver has been quiet for quiet, or max passed.
func settle(ctx context.Context, rec *receiver.Receiver, quiet, max time.Duration) error {
	deadline := time.Now().Add(max)
	last, lastChange := -1, time.Now()
	for time.Now().Before(deadline) {
		n := len(rec.Requests())
		if n != last {
			last, lastChange = n, time.Now()
		} else if n > 0 && time.Since(lastChange) >= quiet {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// demoClient is a tiny Mistral API client that goes through the proxy, as
// any client of a real deployment would.
type demoClient struct {
	base string
	out  io.Writer
}

func (c *demoClient) script(ctx context.Context) error {
	step := func(format string, a ...any) { fmt.Fprintf(c.out, "==> "+format+"\n", a...) }

	step("defining workflows demo_deploy, demo_migrate, demo_backup")
	if _, err := c.do(ctx, http.MethodPost, "/workflows", "text/plain", demoWorkflows); err != nil {
		return err
	}
	step("starting demo_deploy (succeeds) and demo_migrate (fails)")
	deploy, err := c.start(ctx, "demo_deploy")
	if err != nil {
		return err
	}
	migrate, err := c.start(ctx, "demo_migrate")
	if err != nil {
		return err
	}
	step("starting demo_backup, then pausing and resuming it")
	backup, err := c.start(ctx, "demo_backup")
	if err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := c.do(ctx, http.MethodPut, "/executions/"+backup, "application/json", `{"state": "PAUSED"}`); err != nil {
		return err
	}
	time.Sleep(700 * time.Millisecond)
	if _, err := c.do(ctx, http.MethodPut, "/executions/"+backup, "application/json", `{"state": "RUNNING"}`); err != nil {
		return err
	}
	for _, id := range []string{deploy, migrate, backup} {
		if err := c.wait(ctx, id); err != nil {
			return err
		}
	}
	step("all three executions finished; waiting for the last notifications")
	return nil
}

func (c *demoClient) start(ctx context.Context, wf string) (string, error) {
	body, err := c.do(ctx, http.MethodPost, "/executions", "application/json", fmt.Sprintf(`{"workflow_name": %q}`, wf))
	if err != nil {
		return "", err
	}
	var x struct{ ID string }
	if err := json.Unmarshal(body, &x); err != nil || x.ID == "" {
		return "", fmt.Errorf("starting %s: unexpected answer %s", wf, body)
	}
	return x.ID, nil
}

func (c *demoClient) wait(ctx context.Context, id string) error {
	for range 300 {
		body, err := c.do(ctx, http.MethodGet, "/executions/"+id, "", "")
		if err != nil {
			return err
		}
		var x struct{ State string }
		_ = json.Unmarshal(body, &x)
		if x.State == "SUCCESS" || x.State == "ERROR" || x.State == "CANCELLED" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("execution %s did not finish", id)
}

func (c *demoClient) do(ctx context.Context, method, path, ctype, body string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return b, nil
}

// serveLoopback serves h on a fresh loopback port.
func serveLoopback(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}

// lockedWriter serialises writes from the receiver and the script.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// httpDiscard is a ResponseWriter that drops everything (the console
// printer already answered).
type httpDiscard struct{}

func (httpDiscard) Header() http.Header         { return http.Header{} }
func (httpDiscard) Write(p []byte) (int, error) { return len(p), nil }
func (httpDiscard) WriteHeader(int)             {}
