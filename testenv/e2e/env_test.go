package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/testenv/receiver"
)

const skipMsg = "MISTRAL_E2E_URL not set: real-engine tests need testenv/realmistral/mistral.sh start"

var (
	// mistralURL is Mistral's API root (MISTRAL_E2E_URL).
	mistralURL string
	// noTap runs the scenarios against Mistral only (MISTRAL_E2E_NO_TAP=1):
	// ground truth is recorded, parity is not checked.
	noTap bool
	// workDir holds the binary, configs, state and logs of this run.
	workDir  string
	tapBin   string
	buildErr error
)

func TestMain(m *testing.M) {
	mistralURL = strings.TrimRight(os.Getenv("MISTRAL_E2E_URL"), "/")
	noTap = os.Getenv("MISTRAL_E2E_NO_TAP") == "1"
	if mistralURL != "" {
		var err error
		workDir, err = os.MkdirTemp("", "mistral-tap-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if !noTap {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			tapBin, buildErr = BuildTap(ctx, workDir)
			cancel()
		}
	}
	code := m.Run()
	if workDir != "" {
		if code == 0 && os.Getenv("MISTRAL_E2E_KEEP") == "" {
			os.RemoveAll(workDir)
		} else {
			fmt.Printf("e2e work dir (binary, config, logs): %s\n", workDir)
		}
	}
	os.Exit(code)
}

// env is one test's world: the receivers, the mistral-tap process and API
// clients for Mistral directly and through the proxy.
type env struct {
	t      *testing.T
	direct *Client // Mistral itself
	api    *Client // through mistral-tap (Mistral itself when noTap)

	// mistral records Mistral's own notifier (ground truth), under
	// /mistral/<scenario>; tapHook and tapEnv record mistral-tap's two
	// callbacks (format mistral and envelope).
	mistral, tapHook, tapEnv *receiver.Receiver
	mistralURL               string // receiver base for notify URLs

	tap    *Tap
	tapCfg TapConfig
}

func newEnv(t *testing.T) *env { t.Helper(); return newEnvWith(t, "") }

// newEnvWith is newEnv with extra callbacks in mistral-tap's config.
func newEnvWith(t *testing.T, extraCallbacks string) *env {
	t.Helper()
	return newEnvTuned(t, extraCallbacks, nil)
}

// newEnvTuned is newEnvWith with a last say on mistral-tap's config.
func newEnvTuned(t *testing.T, extraCallbacks string, tune func(*TapConfig)) *env {
	t.Helper()
	if mistralURL == "" {
		t.Skip(skipMsg)
	}
	if !noTap && buildErr != nil {
		t.Fatalf("mistral-tap does not build (set MISTRAL_E2E_NO_TAP=1 to record Mistral's events only): %v", buildErr)
	}
	e := &env{t: t, direct: NewClient(mistralURL),
		mistral: receiver.New(), tapHook: receiver.New(), tapEnv: receiver.New()}
	serve := func(h http.Handler) string {
		s := httptest.NewServer(h)
		t.Cleanup(s.Close)
		return s.URL
	}
	e.mistralURL = serve(e.mistral)
	e.api = e.direct
	if noTap {
		return e
	}
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := testDir(t)
	e.tapCfg = TapConfig{
		Listen:      fmt.Sprintf("127.0.0.1:%d", port),
		Upstream:    mistralURL,
		StateDir:    filepath.Join(dir, "state"),
		MistralURL:  serve(e.tapHook) + "/hook",
		EnvelopeURL: serve(e.tapEnv) + "/envelope",
		Extra:       extraCallbacks,
	}
	return e.launch(tune)
}

// launch applies tune to e's configuration, starts mistral-tap, stops it
// when the test ends, and points e.api at it.
func (e *env) launch(tune func(*TapConfig)) *env {
	if tune != nil {
		tune(&e.tapCfg)
	}
	e.startTap()
	t := e.t // subtests swap e.t; the cleanup belongs to the test that launched
	t.Cleanup(func() {
		if e.tap != nil {
			if err := e.tap.Stop(); err != nil {
				t.Errorf("mistral-tap did not stop cleanly: %v\n%s", err, Tail(e.tap.Log, 30))
			}
		}
	})
	e.api = NewClient(e.tap.URL)
	return e
}

// testDir is a new directory in workDir for t's configs, state and logs,
// named after the test: new for every run of it, so that -count=2 does not
// start from the state and log of the run before.
func testDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp(workDir, strings.NewReplacer("/", "_").Replace(t.Name())+"-")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func (e *env) startTap() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := filepath.Join(filepath.Dir(e.tapCfg.StateDir), "mistral-tap.log")
	tap, err := StartTap(ctx, tapBin, e.tapCfg, log)
	if err != nil {
		e.t.Fatal(err)
	}
	e.tap = tap
}

// stopTap stops mistral-tap (SIGTERM); startTap runs it again with the
// same config and state dir.
func (e *env) stopTap() {
	e.t.Helper()
	if err := e.tap.Stop(); err != nil {
		e.t.Errorf("mistral-tap did not stop cleanly: %v", err)
	}
	e.tap = nil
}

// skipWithoutTap skips tests that need both a real Mistral and mistral-tap.
func skipWithoutTap(t *testing.T) {
	t.Helper()
	if mistralURL == "" {
		t.Skip(skipMsg)
	}
	if noTap {
		t.Skip("MISTRAL_E2E_NO_TAP set")
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
