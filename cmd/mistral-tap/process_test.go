package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runBinary starts `mistral-tap run --config cfg` with the environment
// filtered as in startTap plus env, and stops it with SIGTERM at the
// end of the test.
func runBinary(t *testing.T, cfg string, env ...string) *tapProcess {
	t.Helper()
	p := &tapProcess{stderr: &bytes.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary(t), "run", "--config", cfg)
	p.cmd.Env = append(filterEnv(os.Environ()), env...)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// waitHealthy polls /healthz until it answers 200 or the process exits.
func waitHealthy(t *testing.T, p *tapProcess, opsAddr string) {
	t.Helper()
	waitFor(t, 20*time.Second, func() bool {
		select {
		case <-p.done:
			t.Fatalf("mistral-tap exited: %v\n%s", p.cmd.ProcessState, tail(p.stderr.String(), 2000))
		default:
		}
		resp, err := http.Get("http://" + opsAddr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

const processConfig = `
listen: %[1]s
upstream: http://127.0.0.1:9
state_dir: %[2]s
ops: {listen: %[3]s}
watch: {interval: 0s}
callbacks:
  - name: all
    events: ["*"]
    url: http://127.0.0.1:8080/
`

// TestRunWithKubernetesServiceLinks: the variables Kubernetes injects for
// a Service named mistral-tap do not stop `run`; a typo still does.
func TestRunWithKubernetesServiceLinks(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "mistral-tap.yaml")
	opsAddr := freePort(t)
	writeFile(t, cfg, fmt.Sprintf(processConfig, freePort(t), filepath.Join(dir, "state"), opsAddr))

	p := runBinary(t, cfg,
		"MISTRAL_TAP_SERVICE_HOST=10.96.0.12", "MISTRAL_TAP_SERVICE_PORT=8990",
		"MISTRAL_TAP_PORT=tcp://10.96.0.12:8990", "MISTRAL_TAP_PORT_8990_TCP=tcp://10.96.0.12:8990",
		"MISTRAL_TAP_PORT_8990_TCP_PROTO=tcp", "MISTRAL_TAP_PORT_8990_TCP_PORT=8990",
		"MISTRAL_TAP_PORT_8990_TCP_ADDR=10.96.0.12")
	waitHealthy(t, p, opsAddr)

	typo := runBinary(t, cfg, "MISTRAL_TAP_WATCH__INTERVALL=2s")
	select {
	case <-typo.done:
	case <-time.After(20 * time.Second):
		t.Fatal("run with a mistyped MISTRAL_TAP_ variable did not exit")
	}
	if code := typo.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(typo.stderr.String(), "MISTRAL_TAP_WATCH__INTERVALL") {
		t.Errorf("typo: exit %d, stderr:\n%s", code, typo.stderr.String())
	}
}

const adminConfig = processConfig + `
admin:
  listen: %[4]s
  token: %[5]s
`

// TestAdminTokenRotatesOnReload: a reload that changes admin.token takes
// effect at once: the old token gets 401, the new one 200.
func TestAdminTokenRotatesOnReload(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "mistral-tap.yaml")
	listen, state, opsAddr, adminAddr := freePort(t), filepath.Join(dir, "state"), freePort(t), freePort(t)
	const oldTok, newTok = "old-admin-token-0123456789", "new-admin-token-9876543210"
	writeFile(t, cfg, fmt.Sprintf(adminConfig, listen, state, opsAddr, adminAddr, oldTok))
	p := runBinary(t, cfg)
	waitHealthy(t, p, opsAddr)
	status := func(tok string) int {
		req, _ := http.NewRequest("GET", "http://"+adminAddr+"/callbacks", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(oldTok); got != 200 {
		t.Fatalf("old token before the reload: %d", got)
	}
	writeFile(t, cfg, fmt.Sprintf(adminConfig, listen, state, opsAddr, adminAddr, newTok))
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 15*time.Second, func() bool { return status(newTok) == 200 })
	if got := status(oldTok); got != 401 {
		t.Errorf("old token after the reload: %d, want 401", got)
	}
}
