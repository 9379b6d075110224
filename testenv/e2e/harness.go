// Package e2e runs mistral-tap end to end against a real Mistral 15 (started
// by testenv/realmistral/mistral.sh): it defines and runs workflows through
// the proxy, captures Mistral's own notifier events as ground truth, and
// compares them with what mistral-tap delivered.
//
// The tests skip unless MISTRAL_E2E_URL points at Mistral's API root.
// With MISTRAL_E2E_NO_TAP=1 they drive Mistral directly and only record
// its notifier's events (useful while the binary does not build).
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Execution is the part of a Mistral execution the tests look at.
type Execution struct {
	ID              string  `json:"id"`
	WorkflowName    string  `json:"workflow_name"`
	State           string  `json:"state"`
	StateInfo       *string `json:"state_info"`
	TaskExecutionID *string `json:"task_execution_id"`
	RootExecutionID *string `json:"root_execution_id"`
}

// Task is the part of a Mistral task execution the tests look at.
type Task struct {
	ID                  string `json:"id"`
	Name                string `json:"name"`
	State               string `json:"state"`
	WorkflowExecutionID string `json:"workflow_execution_id"`
}

// Client talks to Mistral's v2 API, directly or through mistral-tap.
type Client struct {
	// Base is the API root, without /v2.
	Base string
	HTTP *http.Client
	// Token, when set, is sent as X-Auth-Token (Mistral with auth on).
	Token string
}

// NewClient returns a client for the API root base.
func NewClient(base string) *Client {
	return &Client{Base: strings.TrimRight(base, "/"), HTTP: &http.Client{Timeout: 90 * time.Second}}
}

// HTTPError is a non-2xx answer.
type HTTPError struct {
	Method, Path string
	Status       int
	Body         string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, e.Body)
}

// Do sends one request; body is sent as is when it is a string (with
// contentType) and JSON-encoded otherwise. A non-2xx answer is an *HTTPError.
func (c *Client) Do(ctx context.Context, method, path string, body any, contentType string) (*http.Response, []byte, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, nil, fmt.Errorf("encode %s body: %w", path, err)
		}
		rd = bytes.NewReader(j)
		contentType = "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return nil, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.Token != "" {
		req.Header.Set("X-Auth-Token", c.Token)
	}
	// Workflow/workbook POST/PUT answer JSON labelled text/plain: an
	// Accept of application/json gets 406 there.
	if contentType != "text/plain" {
		req.Header.Set("Accept", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, nil, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return resp, data, &HTTPError{method, path, resp.StatusCode, strings.TrimSpace(string(data))}
	}
	return resp, data, nil
}

func (c *Client) doJSON(ctx context.Context, method, path string, body, out any) error {
	_, data, err := c.Do(ctx, method, path, body, "")
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode: %w", method, path, err)
	}
	return nil
}

// isStatus reports whether err is an *HTTPError with that status.
func isStatus(err error, status int) bool {
	var he *HTTPError
	return errors.As(err, &he) && he.Status == status
}

// DefineWorkflows creates the workflows of a DSL v2 document, or updates them
// when they exist (so reruns of the suite against the same engine work).
func (c *Client) DefineWorkflows(ctx context.Context, dsl string) error {
	_, _, err := c.Do(ctx, http.MethodPost, "/v2/workflows", dsl, "text/plain")
	if isStatus(err, http.StatusConflict) {
		_, _, err = c.Do(ctx, http.MethodPut, "/v2/workflows", dsl, "text/plain")
	}
	return err
}

// DefineWorkbook creates or updates a workbook.
func (c *Client) DefineWorkbook(ctx context.Context, dsl string) error {
	_, _, err := c.Do(ctx, http.MethodPost, "/v2/workbooks", dsl, "text/plain")
	if isStatus(err, http.StatusConflict) {
		_, _, err = c.Do(ctx, http.MethodPut, "/v2/workbooks", dsl, "text/plain")
	}
	return err
}

// StartExecution starts workflow wf.
func (c *Client) StartExecution(ctx context.Context, wf string, input, params map[string]any) (Execution, error) {
	body := map[string]any{"workflow_name": wf}
	if input != nil {
		body["input"] = input
	}
	if params != nil {
		body["params"] = params
	}
	var ex Execution
	err := c.doJSON(ctx, http.MethodPost, "/v2/executions", body, &ex)
	return ex, err
}

// GetExecution returns one execution.
func (c *Client) GetExecution(ctx context.Context, id string) (Execution, error) {
	var ex Execution
	err := c.doJSON(ctx, http.MethodGet, "/v2/executions/"+url.PathEscape(id), nil, &ex)
	return ex, err
}

// SetExecutionState PUTs a new state (PAUSED, RUNNING, ERROR, SUCCESS,
// CANCELLED), with info as state_info when not empty.
func (c *Client) SetExecutionState(ctx context.Context, id, state, info string) error {
	body := map[string]any{"state": state}
	if info != "" {
		body["state_info"] = info
	}
	return c.doJSON(ctx, http.MethodPut, "/v2/executions/"+url.PathEscape(id), body, nil)
}

// RerunTask reruns a failed task (PUT /v2/tasks/{id} state RUNNING, reset).
func (c *Client) RerunTask(ctx context.Context, id string, env map[string]any) error {
	body := map[string]any{"state": "RUNNING", "reset": true}
	if env != nil {
		body["env"] = env
	}
	return c.doJSON(ctx, http.MethodPut, "/v2/tasks/"+url.PathEscape(id), body, nil)
}

// Tasks lists the tasks of one execution.
func (c *Client) Tasks(ctx context.Context, execID string) ([]Task, error) {
	var out struct {
		Tasks []Task `json:"tasks"`
	}
	err := c.doJSON(ctx, http.MethodGet, "/v2/executions/"+url.PathEscape(execID)+"/tasks", nil, &out)
	return out.Tasks, err
}

// Descendants lists every execution under root (sub-workflows at any depth).
func (c *Client) Descendants(ctx context.Context, root string) ([]Execution, error) {
	var out struct {
		Executions []Execution `json:"executions"`
	}
	err := c.doJSON(ctx, http.MethodGet, "/v2/executions?root_execution_id="+url.QueryEscape(root)+"&limit=1000", nil, &out)
	return out.Executions, err
}

// errGiveUp wrapped in f's error makes poll return at once.
var errGiveUp = errors.New("giving up")

// poll calls f every 200 ms until it reports done or ctx ends.
func poll(ctx context.Context, what string, f func() (bool, error)) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		done, err := f()
		if err == nil && done {
			return nil
		}
		if errors.Is(err, errGiveUp) {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), last)
			}
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// WaitExecution polls until the execution is in one of states.
func (c *Client) WaitExecution(ctx context.Context, id string, states ...string) (Execution, error) {
	var ex Execution
	err := poll(ctx, "execution "+id+" in "+strings.Join(states, "|"), func() (bool, error) {
		var err error
		ex, err = c.GetExecution(ctx, id)
		if err != nil {
			return false, err
		}
		for _, s := range states {
			if ex.State == s {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return ex, fmt.Errorf("%w (state %s)", err, ex.State)
	}
	return ex, nil
}

// WaitTask polls until execution execID has a task called name in state.
func (c *Client) WaitTask(ctx context.Context, execID, name, state string) (Task, error) {
	var found Task
	err := poll(ctx, "task "+name+" "+state, func() (bool, error) {
		tasks, err := c.Tasks(ctx, execID)
		if err != nil {
			return false, err
		}
		for _, t := range tasks {
			if t.Name == name && t.State == state {
				found = t
				return true, nil
			}
		}
		return false, nil
	})
	return found, err
}

// Terminal lists the states an execution ends in.
var Terminal = []string{"SUCCESS", "ERROR", "CANCELLED"}

// ---------------------------------------------------------------------------
// the mistral-tap process

// ModuleRoot finds the directory holding go.mod, from the working directory
// upwards.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// BuildTap builds ./cmd/mistral-tap into dir and returns the binary's path.
func BuildTap(ctx context.Context, dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "mistral-tap")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/mistral-tap")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/mistral-tap: %w\n%s", err, out)
	}
	return bin, nil
}

// TapConfig is what the generated mistral-tap config varies on.
type TapConfig struct {
	Listen      string // host:port
	Upstream    string
	StateDir    string
	MistralURL  string // callback "all", format mistral
	EnvelopeURL string // callback "envelope", format envelope
	// Extra is appended to the callbacks list (YAML list items, indented
	// by two spaces), for tests of filters.
	Extra string
	// PageSize is watch.page_size; 0 keeps the default.
	PageSize int
	// Ops is ops.listen (metrics); "" keeps it off.
	Ops string
	// Store is a top-level YAML block (e.g. "store: {driver: postgres,
	// ...}"); "" keeps SQLite.
	Store string
	// Watch, when set, replaces the watch: mapping (flow YAML), e.g. for
	// Keystone credentials.
	Watch string
	// Top is more top-level YAML (e.g. "admin: {token: ...}"); "" adds
	// nothing.
	Top string
}

// YAML renders the config file.
func (c TapConfig) YAML() string {
	watch := "{interval: 1s}"
	if c.PageSize > 0 {
		watch = fmt.Sprintf("{interval: 1s, page_size: %d}", c.PageSize)
	}
	if c.Watch != "" {
		watch = c.Watch
	}
	var extra string
	if c.Ops != "" {
		extra += fmt.Sprintf("ops: {listen: %q}\n", c.Ops)
	}
	if c.Store != "" {
		extra += c.Store + "\n"
	}
	if c.Top != "" {
		extra += c.Top + "\n"
	}
	return fmt.Sprintf(`listen: %s
upstream: %s
state_dir: %s
watch: %s
delivery: {allow_networks: ["127.0.0.0/8"]}
log: {level: debug}
`, c.Listen, c.Upstream, c.StateDir, watch) + extra + fmt.Sprintf(`callbacks:
  - name: all
    events: ["*"]
    url: %s
    format: mistral
  - name: envelope
    events: ["*"]
    url: %s
    format: envelope
`, c.MistralURL, c.EnvelopeURL) + c.Extra
}

// Tap is a running mistral-tap process.
type Tap struct {
	URL string // http://listen
	Log string // path of its combined output
	cmd *exec.Cmd
	// exited is closed when the process has exited; err is its Wait error.
	exited chan struct{}
	err    error
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartTap writes cfg next to its state dir and runs `bin run --config F`,
// waiting up to 20 s for the listen port. Output is appended to logPath.
func StartTap(ctx context.Context, bin string, cfg TapConfig, logPath string) (*Tap, error) {
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(filepath.Dir(cfg.StateDir), "mistral-tap.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.YAML()), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "run", "--config", cfgPath)
	// The suite's own variables are MISTRAL_E2E_*, not MISTRAL_TAP_*:
	// mistral-tap reads MISTRAL_TAP_* as configuration and refuses unknown
	// ones, so they are never mixed up.
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start mistral-tap: %w", err)
	}
	t := &Tap{URL: "http://" + cfg.Listen, Log: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		t.err = cmd.Wait()
		logf.Close()
		close(t.exited)
	}()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err = poll(wctx, "mistral-tap listening on "+cfg.Listen, func() (bool, error) {
		select {
		case <-t.exited:
			return false, fmt.Errorf("mistral-tap exited (%v): %w", t.err, errGiveUp)
		default:
		}
		c, err := net.DialTimeout("tcp", cfg.Listen, time.Second)
		if err != nil {
			return false, nil
		}
		c.Close()
		return true, nil
	})
	if err != nil {
		_ = t.Stop()
		return nil, fmt.Errorf("%w\n%s", err, Tail(logPath, 40))
	}
	return t, nil
}

// Stop sends SIGTERM and waits up to 10 s, then kills. It returns the
// process's exit error when it did not exit cleanly.
func (t *Tap) Stop() error {
	select {
	case <-t.exited:
		return t.err
	default:
	}
	_ = t.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-t.exited:
		return t.err
	case <-time.After(10 * time.Second):
		_ = t.cmd.Process.Kill()
		<-t.exited
		return fmt.Errorf("mistral-tap ignored SIGTERM for 10 s; killed")
	}
}

// Tail returns the last n lines of a file (for failure messages).
func Tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
