package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/tap/event"
	"github.com/mistral-tap/mistral-tap/testenv/fakemistral"
)

// These tests run the real binary against a state directory that an
// operator, a full disk or a bad day has damaged: the outbox must be
// reported, never silently replaced by an empty one.

const stateConfig = `
listen: %[1]s
upstream: %[2]s
state_dir: %[3]s
ops:
  listen: %[4]s
watch:
  interval: 100ms
callbacks:
  - name: all
    events: ["*"]
    url: http://127.0.0.1:9/hook
`

// stateEnv is an engine and a config file whose state_dir is dir/state.
type stateEnv struct {
	cfg, state, ops string
}

func newStateEnv(t *testing.T) stateEnv {
	t.Helper()
	eng := fakemistral.New(fakemistral.Options{})
	t.Cleanup(eng.Close)
	es := httptest.NewServer(eng)
	t.Cleanup(es.Close)
	dir := t.TempDir()
	e := stateEnv{cfg: filepath.Join(dir, "mistral-tap.yaml"), state: filepath.Join(dir, "state"), ops: freePort(t)}
	cfg := fmt.Sprintf(stateConfig, freePort(t), es.URL, e.state, e.ops)
	if err := os.WriteFile(e.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// startUmask0 starts `mistral-tap args...` under umask 000, the loosest
// one: nothing it creates may rely on the umask for privacy.
func startUmask0(t *testing.T, args ...string) *tapProcess {
	t.Helper()
	p := &tapProcess{stderr: &bytes.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command("sh", append([]string{"-c", `umask 000 && exec "$0" "$@"`, binary(t)}, args...)...)
	p.cmd.Env = filterEnv(os.Environ())
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("mistral-tap %s stderr (last 4 KiB):\n%s", args[0], tail(p.stderr.String(), 4096))
		}
	})
	return p
}

// exited waits for p to exit on its own and returns its exit code.
func exited(t *testing.T, p *tapProcess, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("mistral-tap still running after %s", within)
		return 0
	}
}

func stop(t *testing.T, p *tapProcess) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	return exited(t, p, 45*time.Second)
}

func readyz(t *testing.T, opsAddr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + opsAddr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestStateFilesPrivateAndLossDetected: in a pre-existing 0755 state_dir
// every file is 0600; deleting the files under the running process fails
// /readyz with an ERROR line and no new database appears; the next start
// refuses, naming the file, until `store reset`.
func TestStateFilesPrivateAndLossDetected(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	e := newStateEnv(t)
	if err := os.Mkdir(e.state, 0o755); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(e.state, store.FileName)

	p := startUmask0(t, "run", "--config", e.cfg)
	waitReady(t, p, e.ops)
	for _, f := range []string{db, db + "-wal", db + "-shm", db + ".lock"} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s has mode %v, want -rw-------", f, m)
		}
	}

	ents, err := os.ReadDir(e.state)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		if err := os.Remove(filepath.Join(e.state, ent.Name())); err != nil {
			t.Fatal(err)
		}
	}
	var code int
	var body string
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if code, body = readyz(t, e.ops); code == http.StatusServiceUnavailable {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"store"`) || !strings.Contains(body, "state lost") {
		t.Fatalf("/readyz after the state was deleted: %d %s; want 503 failing the store", code, body)
	}
	if _, err := os.Stat(db); err == nil {
		t.Fatalf("%s was recreated after the deletion", db)
	}
	if c := stop(t, p); c != 0 {
		t.Errorf("exit code after SIGTERM %d, want 0", c)
	}
	if _, err := os.Stat(db); err == nil {
		t.Fatalf("%s was recreated at shutdown", db)
	}
	if log := p.stderr.String(); !strings.Contains(log, "level=ERROR") || !strings.Contains(log, db) {
		t.Errorf("no ERROR line naming %s in the log", db)
	}

	p2 := startUmask0(t, "run", "--config", e.cfg)
	if c := exited(t, p2, 20*time.Second); c != 1 {
		t.Fatalf("restart after the loss exited %d, want 1", c)
	}
	if log := p2.stderr.String(); !strings.Contains(log, db) || !strings.Contains(log, "store reset") {
		t.Fatalf("restart refusal does not name %s and the way out:\n%s", db, log)
	}

	reset := startUmask0(t, "store", "reset", "--config", e.cfg)
	if c := exited(t, reset, 20*time.Second); c != 0 {
		t.Fatalf("store reset exited %d", c)
	}
	p3 := startUmask0(t, "run", "--config", e.cfg)
	waitReady(t, p3, e.ops)
	if c := stop(t, p3); c != 0 {
		t.Errorf("exit code after SIGTERM %d, want 0", c)
	}
}

// TestStartRefusesEmptyOrCorruptState: a zero-length database, or one with
// random bytes in its middle, stops `run` with an error naming the file.
func TestStartRefusesEmptyOrCorruptState(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	tests := []struct {
		name   string
		damage func(t *testing.T, db string)
		want   string
	}{
		{"zero-length", func(t *testing.T, db string) {
			if err := os.WriteFile(db, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "is empty (0 bytes)"},
		{"random bytes in the middle", func(t *testing.T, db string) {
			usedStore(t, db)
			b, err := os.ReadFile(db)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(7, 7))
			for i := len(b) / 3; i < 2*len(b)/3; i++ {
				b[i] = byte(r.Uint32())
			}
			if err := os.WriteFile(db, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "corrupt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newStateEnv(t)
			if err := os.Mkdir(e.state, 0o700); err != nil {
				t.Fatal(err)
			}
			db := filepath.Join(e.state, store.FileName)
			tt.damage(t, db)
			p := startUmask0(t, "run", "--config", e.cfg)
			if c := exited(t, p, 20*time.Second); c != 1 {
				t.Fatalf("run on a damaged state exited %d, want 1", c)
			}
			log := p.stderr.String()
			if !strings.Contains(log, db) || !strings.Contains(log, tt.want) {
				t.Fatalf("refusal does not name %s and say %q:\n%s", db, tt.want, log)
			}
			check := startUmask0(t, "store", "check", "--state-dir", e.state)
			if c := exited(t, check, 20*time.Second); c != 1 {
				t.Errorf("store check on a damaged state exited %d, want 1", c)
			}
		})
	}
}

// usedStore leaves at db a database with a few hundred deliveries, as a
// running server would.
func usedStore(t *testing.T, db string) {
	t.Helper()
	st, err := store.Open(db, store.Options{Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var ins []store.Delivery
	info := strings.Repeat("x", 400)
	for i := range 500 {
		ev := &event.Event{ID: fmt.Sprintf("evt_%04d", i), Type: event.TaskFailed, Sequence: uint64(i + 1), RootExecutionID: "r1",
			Time: time.Now(), Task: &event.Task{ID: "t1", Name: "migrate", State: "ERROR", StateInfo: &info}}
		d, err := store.NewDelivery(ev, "all", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		ins = append(ins, d)
	}
	if err := st.Commit(context.Background(), store.Write{Insert: ins}); err != nil {
		t.Fatal(err)
	}
}
