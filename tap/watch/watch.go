// Package watch polls Mistral's API for executions and tasks that changed
// since a checkpoint, so that events fire even when no client looks.
//
// Each poll costs a constant number of requests when nothing changes: lists
// of executions and of tasks, filtered by updated_at >= checkpoint minus a
// small overlap (and by created_at, for rows never updated), sorted by
// (updated_at, id) and paged with limit/marker. The checkpoint advances only after the tracker has durably
// recorded what the poll revealed, so a crash repeats a poll rather than
// skipping one; repeats are harmless because the tracker ignores what it
// already knows.
package watch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// Observer takes a poll's observations and returns once they are recorded.
type Observer interface {
	ObserveSync(ctx context.Context, obs []event.Observation) error
}

// Checkpoints persist the watcher's position across restarts.
type Checkpoints interface {
	Checkpoint(ctx context.Context, key string) (string, error)
	SetCheckpoint(ctx context.Context, key, value string) error
}

// TokenSource supplies an auth token (X-Auth-Token) for every request, e.g.
// from Keystone; it is asked before each request and may cache.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// Options configure a Watcher.
type Options struct {
	// Upstream is Mistral's API root (the part before /v2). Required.
	Upstream *url.URL
	// Interval between polls; 0 disables polling (Fetch still works).
	Interval time.Duration
	// PageSize is the list limit. Default 500.
	PageSize int
	// Replay makes the first poll of a fresh state start this far in the
	// past. Default 0: start from now.
	Replay time.Duration
	// AllProjects adds all_projects=true to execution lists (admin only).
	AllProjects bool
	// Headers are added to every request (e.g. a static X-Auth-Token).
	Headers map[string]string
	// Token, when set, provides X-Auth-Token for every request.
	Token TokenSource
	// Client makes the requests. Default: a client with a 30s timeout that
	// ignores HTTP_PROXY.
	Client *http.Client
	// Observer receives each poll's observations. Required for Run.
	Observer Observer
	// Checkpoints, when set, persists the position.
	Checkpoints Checkpoints
	Logger      *slog.Logger
	Now         func() time.Time
}

// checkpointKey names the watcher's position in the store.
const checkpointKey = "watch.updated_at"

// overlap is subtracted from the checkpoint in each query. Mistral stamps
// updated_at when a transaction starts, with whole seconds, and commits it
// later, so a row can become visible with a time slightly before the newest
// one already seen; re-reading a couple of seconds costs little because
// the tracker drops what it knows.
const overlap = 2 * time.Second

// maxPages bounds one poll so that a misbehaving engine (a marker that never
// advances) cannot trap the watcher.
const maxPages = 10000

const tsLayout = "2006-01-02 15:04:05"

// Execution and task fields the watcher asks for: everything Mistral's
// notifier payload has (so events are complete), nothing heavy (input,
// output, params, published).
var (
	executionFields = "id,workflow_id,workflow_name,workflow_namespace,state,state_info,project_id,task_execution_id,root_execution_id,created_at,updated_at"
	taskFields      = "id,name,workflow_execution_id,workflow_name,workflow_namespace,workflow_id,state,state_info,type,project_id,created_at,updated_at,started_at,finished_at,runtime_context"
)

// Watcher polls the API. Create it with New and start it with Run.
type Watcher struct {
	o   Options
	log *slog.Logger

	mu          sync.Mutex
	checkpoint  string
	seenAt      time.Time // when a poll first saw the checkpoint's row (Now); zero after a start
	settled     string    // the checkpoint once no row stamped at or before it can still appear
	stats       Stats
	lastErr     string
	lastContact time.Time
}

// Stats are the watcher's counters.
type Stats struct {
	Polls     uint64 // completed polls
	Errors    uint64 // failed polls
	Requests  uint64 // HTTP requests made
	Resources uint64 // executions and tasks received
	// Lag is how far the checkpoint trails the wall clock after the last
	// successful poll.
	Lag time.Duration
}

// New checks the options and returns a Watcher.
func New(o Options) (*Watcher, error) {
	if o.Upstream == nil || o.Upstream.Host == "" {
		return nil, errors.New("watch: Upstream is required")
	}
	if o.PageSize <= 0 {
		o.PageSize = 500
	}
	if o.Client == nil {
		o.Client = &http.Client{
			Timeout: 30 * time.Second,
			Transport: &http.Transport{
				Proxy:               nil, // a sidecar must not loop through HTTP_PROXY
				DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
				MaxIdleConnsPerHost: 4,
				IdleConnTimeout:     90 * time.Second,
			},
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	w := &Watcher{o: o, log: o.Logger}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	return w, nil
}

// SetObserver sets the Observer after New: the tracker and the watcher
// need each other (the tracker fetches through the watcher). Call it before
// Run.
func (w *Watcher) SetObserver(o Observer) { w.o.Observer = o }

// Stats returns a snapshot of the counters.
func (w *Watcher) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// LastContact is when the engine last answered a request successfully.
func (w *Watcher) LastContact() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastContact
}

// Run polls every Interval until ctx ends. While the engine is unreachable
// it backs off (up to 30s), logs the failure once, and logs the recovery.
func (w *Watcher) Run(ctx context.Context) error {
	if w.o.Interval <= 0 {
		<-ctx.Done()
		return nil
	}
	if w.o.Observer == nil {
		return errors.New("watch: Observer is required")
	}
	if err := w.loadCheckpoint(ctx); err != nil {
		return err
	}
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		if err := w.Poll(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			wait = w.failed(err, wait)
			continue
		}
		w.recovered()
		wait = w.o.Interval
	}
}

func (w *Watcher) loadCheckpoint(ctx context.Context) error {
	if w.o.Checkpoints != nil {
		cp, err := w.o.Checkpoints.Checkpoint(ctx, checkpointKey)
		if err != nil {
			return fmt.Errorf("watch: reading checkpoint: %w", err)
		}
		if cp != "" {
			w.setCheckpoint(cp)
			w.log.Info("watcher resumes", "since", cp)
			return nil
		}
	}
	start := w.o.Now().Add(-w.o.Replay).UTC().Format(tsLayout)
	w.setCheckpoint(start)
	w.log.Info("watcher starts", "since", start)
	return nil
}

func (w *Watcher) setCheckpoint(cp string) {
	w.mu.Lock()
	w.checkpoint = cp
	w.mu.Unlock()
}

func (w *Watcher) failed(err error, wait time.Duration) time.Duration {
	w.mu.Lock()
	w.stats.Errors++
	changed := err.Error() != w.lastErr
	w.lastErr = err.Error()
	w.mu.Unlock()
	if changed {
		w.log.Warn("watcher cannot poll the engine; backing off", "err", err)
	}
	return min(max(2*wait, w.o.Interval, time.Second), 30*time.Second)
}

func (w *Watcher) recovered() {
	w.mu.Lock()
	had := w.lastErr != ""
	w.lastErr = ""
	w.mu.Unlock()
	if had {
		w.log.Info("watcher reaches the engine again")
	}
}

// Poll lists what changed since the checkpoint, hands it to the Observer and
// advances the checkpoint. Run calls it every Interval.
func (w *Watcher) Poll(ctx context.Context) error {
	w.mu.Lock()
	cp := w.checkpoint
	w.mu.Unlock()
	if cp == "" {
		cp = w.o.Now().UTC().Format(tsLayout)
	}
	w.mu.Lock()
	settled := w.settled == cp
	w.mu.Unlock()
	since := cp
	if t, err := time.Parse(tsLayout, cp); err == nil {
		since = t.Add(-overlap).Format(tsLayout)
		if settled {
			// See settle: only rows stamped after the checkpoint's second.
			since = t.Add(time.Second).Format(tsLayout)
		}
	}
	requested := w.o.Now()

	q := url.Values{}
	q.Set("sort_dirs", "asc,asc")
	if w.o.AllProjects {
		q.Set("all_projects", "true")
	}
	var execs []event.Execution
	var tasks []event.Task
	// Mistral leaves updated_at null until an entity's first update, and
	// an updated_at filter never matches null; a second list by created_at
	// finds those. Four requests per poll, whatever the load.
	for _, col := range []string{"updated_at", "created_at"} {
		q.Del("updated_at")
		q.Del("created_at")
		q.Set(col, "gte:"+since)
		q.Set("sort_keys", col+",id")
		q.Set("fields", executionFields)
		if err := w.list(ctx, "executions", q, &execs); err != nil {
			return err
		}
		all := q.Get("all_projects")
		q.Del("all_projects")
		q.Set("fields", taskFields)
		if err := w.list(ctx, "tasks", q, &tasks); err != nil {
			return err
		}
		if all != "" {
			q.Set("all_projects", all)
		}
	}

	execs, tasks = unique(execs, execID), unique(tasks, taskID)
	obs := make([]event.Observation, 0, len(execs)+len(tasks))
	newest := cp
	for i := range execs {
		obs = append(obs, event.Observation{Source: event.SourceWatch, Execution: &execs[i], RequestedAt: requested})
		newest = maxTS(newest, execs[i].UpdatedAt)
		newest = maxTS(newest, &execs[i].CreatedAt)
	}
	for i := range tasks {
		obs = append(obs, event.Observation{Source: event.SourceWatch, Task: &tasks[i], RequestedAt: requested})
		newest = maxTS(newest, tasks[i].UpdatedAt)
		newest = maxTS(newest, &tasks[i].CreatedAt)
	}
	if len(obs) > 0 {
		if err := w.o.Observer.ObserveSync(ctx, obs); err != nil {
			return fmt.Errorf("watch: recording a poll: %w", err)
		}
	}
	if newest != cp && w.o.Checkpoints != nil {
		if err := w.o.Checkpoints.SetCheckpoint(ctx, checkpointKey, newest); err != nil {
			return fmt.Errorf("watch: saving checkpoint: %w", err)
		}
	}
	w.mu.Lock()
	w.settle(cp, newest, requested)
	w.checkpoint = newest
	w.stats.Polls++
	w.stats.Resources += uint64(len(obs))
	if t, err := time.Parse(tsLayout, newest); err == nil {
		w.stats.Lag = max(0, w.o.Now().Sub(t))
	}
	w.mu.Unlock()
	return nil
}

// settle decides, after a good poll that started at started and moved the
// checkpoint from cp to newest, whether the next polls may skip the overlap.
// Called with w.mu held.
//
// Why: the checkpoint is the newest timestamp seen, so while nothing changes
// it stays put and every poll re-read every row stamped in the overlap
// before it — a burst of 1,000 executions finishing in one second cost 3
// pages per list on every idle poll, for as long as nothing else changed.
// The overlap exists for rows committed up to overlap after they were
// stamped. When the checkpoint's row was seen, the engine's clock had
// reached its stamp; so every row stamped at or before the checkpoint is
// committed within overlap (+1 s, stamps are truncated to the second) of
// that moment, measured on our own clock: no clock is compared across
// hosts. A poll that started after that and read the overlap has seen them
// all, and until the checkpoint moves the next polls ask only for rows
// stamped after its second: four requests when idle. The assumption is the
// overlap's own (a row committed later than that after its stamp was never
// guaranteed).
func (w *Watcher) settle(cp, newest string, started time.Time) {
	switch {
	case newest != cp || w.seenAt.IsZero():
		// A new checkpoint (or the first poll since the start): its row
		// was visible by now at the latest.
		w.seenAt = w.o.Now()
		w.settled = ""
	case w.settled != cp && started.Sub(w.seenAt) > overlap+time.Second:
		w.settled = cp
	}
}

// unique drops repeats (a row found by both the updated_at and the
// created_at list), keeping the first.
func unique[T any](in []T, id func(*T) string) []T {
	seen := make(map[string]bool, len(in))
	out := in[:0]
	for i := range in {
		if k := id(&in[i]); !seen[k] {
			seen[k] = true
			out = append(out, in[i])
		}
	}
	return out
}

func execID(x *event.Execution) string { return x.ID }
func taskID(x *event.Task) string      { return x.ID }

func maxTS(cur string, ts *string) string {
	if ts == nil || len(*ts) < len(tsLayout) {
		return cur
	}
	s := (*ts)[:len(tsLayout)]
	if s > cur {
		return s
	}
	return cur
}

// list reads every page of /v2/<res> matching q into out (a pointer to a
// slice of event.Execution or event.Task).
func (w *Watcher) list(ctx context.Context, res string, q url.Values, out any) error {
	q = cloneValues(q)
	q.Set("limit", fmt.Sprint(w.o.PageSize))
	q.Del("marker")
	for page := 0; page < maxPages; page++ {
		var env map[string]json.RawMessage
		if err := w.get(ctx, "/v2/"+res, q, &env); err != nil {
			return err
		}
		n, last, err := appendPage(out, env[res])
		if err != nil {
			return fmt.Errorf("watch: malformed %s list from the engine: %w", res, err)
		}
		if n < w.o.PageSize || last == "" {
			return nil
		}
		q.Set("marker", last)
	}
	return fmt.Errorf("watch: %s list did not end after %d pages", res, maxPages)
}

// appendPage decodes one page and appends it to out; it returns the page
// length and the last id (the next marker).
func appendPage(out any, raw json.RawMessage) (int, string, error) {
	if len(raw) == 0 {
		return 0, "", nil
	}
	switch out := out.(type) {
	case *[]event.Execution:
		return decodePage(raw, out, func(x *event.Execution) (string, string) { return x.ID, x.State })
	case *[]event.Task:
		return decodePage(raw, out, func(x *event.Task) (string, string) { return x.ID, x.State })
	}
	return 0, "", fmt.Errorf("unsupported type %T", out)
}

// decodePage decodes one page into out. The marker for the next page is the
// last row as the engine sent it, taken before unusable rows are dropped.
func decodePage[T any](raw json.RawMessage, out *[]T, idState func(*T) (string, string)) (int, string, error) {
	var page []T
	if err := json.Unmarshal(raw, &page); err != nil {
		return 0, "", err
	}
	if len(page) == 0 {
		return 0, "", nil
	}
	n := len(page)
	last, _ := idState(&page[n-1])
	*out = append(*out, usable(page, idState)...)
	return n, last, nil
}

// usable drops entries without an id or a state: they cannot be tracked,
// and one bad row must not spoil the rest of the page.
func usable[T any](in []T, idState func(*T) (string, string)) []T {
	out := in[:0]
	for i := range in {
		if id, st := idState(&in[i]); id != "" && st != "" {
			out = append(out, in[i])
		}
	}
	return out
}

func cloneValues(v url.Values) url.Values {
	c := make(url.Values, len(v))
	for k, vs := range v {
		c[k] = append([]string(nil), vs...)
	}
	return c
}

// queryReplacer keeps ':' and ',' readable in queries (they are legal
// there) and spells a space %20 rather than '+', as Mistral's own clients do.
var queryReplacer = strings.NewReplacer("+", "%20", "%3A", ":", "%2C", ",")

// get does one GET and decodes the JSON body into out.
func (w *Watcher) get(ctx context.Context, path string, q url.Values, out any) error {
	u := *w.o.Upstream
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	// Mistral parses "updated_at=gte:2024-05-01 10:00:00" with the space
	// percent-encoded; url.Values encodes it as '+', which it also accepts,
	// but %20 is what its own next links and the CLI use.
	u.RawQuery = queryReplacer.Replace(q.Encode())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("watch: building request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "mistral-tap-watch")
	for k, v := range w.o.Headers {
		req.Header.Set(k, v)
	}
	if w.o.Token != nil {
		tok, err := w.o.Token.Token(ctx)
		if err != nil {
			return fmt.Errorf("watch: getting an auth token: %w", err)
		}
		req.Header.Set("X-Auth-Token", tok)
	}
	w.mu.Lock()
	w.stats.Requests++
	w.mu.Unlock()
	resp, err := w.o.Client.Do(req)
	if err != nil {
		// The URL carries no secrets (tokens travel in headers).
		return fmt.Errorf("watch: engine unreachable: %w", err)
	}
	defer resp.Body.Close()
	// Bounded: a poll page is at most PageSize small rows.
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("watch: reading %s: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("watch: GET %s: engine answered %d: %s", path, resp.StatusCode, faultString(body))
	}
	w.mu.Lock()
	w.lastContact = w.o.Now()
	w.mu.Unlock()
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("watch: GET %s: malformed JSON from the engine: %w", path, err)
	}
	return nil
}

// faultString extracts Mistral's error message, or a short excerpt.
func faultString(body []byte) string {
	var f struct {
		Fault string `json:"faultstring"`
	}
	if json.Unmarshal(body, &f) == nil && f.Fault != "" {
		return f.Fault
	}
	if len(body) > 200 {
		body = body[:200]
	}
	return strings.TrimSpace(string(body))
}

// maxFetchExecutions bounds Fetch on a root with many sub-executions.
const maxFetchExecutions = 50

// Fetch reads one execution and, with tasks, its tasks and its
// sub-executions' (for a root execution). It implements track.Fetcher.
func (w *Watcher) Fetch(ctx context.Context, executionID string, tasks bool) ([]event.Observation, error) {
	requested := w.o.Now()
	var x event.Execution
	if err := w.get(ctx, "/v2/executions/"+url.PathEscape(executionID), url.Values{}, &x); err != nil {
		return nil, err
	}
	if x.ID == "" || x.State == "" {
		return nil, fmt.Errorf("watch: execution %s: response lacks id or state", executionID)
	}
	execs := []event.Execution{x}
	if tasks && x.RootExecutionID == nil {
		q := url.Values{}
		q.Set("root_execution_id", x.ID)
		q.Set("fields", executionFields)
		var subs []event.Execution
		if err := w.list(ctx, "executions", q, &subs); err != nil {
			return nil, err
		}
		if len(subs) > maxFetchExecutions {
			subs = subs[:maxFetchExecutions]
		}
		execs = append(execs, subs...)
	}
	var obs []event.Observation
	for i := range execs {
		obs = append(obs, event.Observation{Source: event.SourceTap, Execution: &execs[i], RequestedAt: requested})
		if !tasks {
			continue
		}
		q := url.Values{}
		q.Set("workflow_execution_id", execs[i].ID)
		q.Set("fields", taskFields)
		var ts []event.Task
		if err := w.list(ctx, "tasks", q, &ts); err != nil {
			return nil, err
		}
		for j := range ts {
			obs = append(obs, event.Observation{Source: event.SourceTap, Task: &ts[j], RequestedAt: requested})
		}
	}
	return obs, nil
}
