package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore"
	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore/pgtest"
	"github.com/mistral-tap/mistral-tap/testenv/fakemistral"
	"github.com/mistral-tap/mistral-tap/testenv/receiver"
)

const haConfig = `
listen: 127.0.0.1:0
upstream: %s
state_dir: %s
store:
  driver: postgres
  dsn: %s
  lease_ttl: 3s
listeners:
  key: ha-test-sealing-key-0123456789abcdef
watch:
  interval: 200ms
delivery:
  allow_networks: ["127.0.0.0/8"]
  retry_wait_min: 10ms
  retry_wait_max: 50ms
callbacks:
  - name: all
    events: ["*"]
    url: %s/all
`

// replicas is N mistral-tap replicas on one PostgreSQL database in front of
// one fake engine, with a round-robin client.
type replicas struct {
	t      *testing.T
	engine *fakemistral.Engine
	engURL string
	all    *receiver.Receiver
	rcvURL string
	proxy  []string
	stop   []func() error
	next   atomic.Uint64
	pg     *pgstore.Store
}

func startReplicas(t *testing.T, n int, dsn func(i int) string) *replicas {
	t.Helper()
	r := &replicas{t: t, engine: fakemistral.New(fakemistral.Options{}), all: receiver.New()}
	t.Cleanup(r.engine.Close)
	es := httptest.NewServer(r.engine)
	t.Cleanup(es.Close)
	rs := httptest.NewServer(r.all)
	t.Cleanup(rs.Close)
	r.engURL, r.rcvURL = es.URL, rs.URL+"/"
	for i := range n {
		r.add(dsn(i))
		if i == 0 {
			r.waitLeader(dsn(0))
		}
	}
	return r
}

// add starts one more replica.
func (r *replicas) add(dsn string) {
	r.t.Helper()
	cfg := writeConfig(r.t, fmt.Sprintf(haConfig, r.engURL, r.t.TempDir(), dsn, strings.TrimSuffix(r.rcvURL, "/")))
	p, stop := runApp(r.t, cfg, false)
	r.proxy, r.stop = append(r.proxy, p), append(r.stop, stop)
}

// waitLeader waits until some replica holds the lease.
func (r *replicas) waitLeader(dsn string) {
	r.t.Helper()
	if r.pg == nil {
		var err error
		if r.pg, err = pgstore.Open(context.Background(), pgstore.Options{DSN: dsn}); err != nil {
			r.t.Fatal(err)
		}
		r.t.Cleanup(func() { r.pg.Close() })
	}
	for range 200 {
		if li, ok, _ := r.pg.Lease(context.Background(), "leader"); ok && li.ExpiresAt.After(time.Now()) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.t.Fatal("no leader elected within 10s")
}

// do sends a request to the next replica (round robin), or to the engine
// directly when direct is set.
func (r *replicas) do(direct bool, method, path, ctype, body string) (int, []byte) {
	r.t.Helper()
	base := r.engURL
	if !direct {
		base = r.proxy[int(r.next.Add(1))%len(r.proxy)]
	}
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (r *replicas) startExec(direct bool, wf string) string {
	r.t.Helper()
	code, b := r.do(direct, "POST", "/v2/executions", "application/json", fmt.Sprintf(`{"workflow_name": %q, "input": {}}`, wf))
	if code != 201 {
		r.t.Fatalf("start %s: %d %s", wf, code, b)
	}
	var x struct{ ID string }
	json.Unmarshal(b, &x)
	return x.ID
}

func (r *replicas) wait(id string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.engine.WaitDone(ctx, id); err != nil {
		r.t.Fatalf("execution %s: %v", id, err)
	}
}

// pauseResume runs t_sleep and pauses and resumes it (through the replicas
// or directly at the engine).
func (r *replicas) pauseResume(direct bool) string {
	id := r.startExec(direct, "t_sleep")
	time.Sleep(300 * time.Millisecond)
	r.do(direct, "PUT", "/v2/executions/"+id, "application/json", `{"state": "PAUSED"}`)
	time.Sleep(700 * time.Millisecond) // longer than a poll interval
	r.do(direct, "PUT", "/v2/executions/"+id, "application/json", `{"state": "RUNNING"}`)
	r.wait(id)
	return id
}

// check compares the receiver's deliveries with the engine's notifier:
// the same multiset, causal order per entity, one webhook-id per event.
func (r *replicas) check(roots map[string]bool) {
	r.t.Helper()
	want := truth(r.engine, roots)
	got := waitTree(r.t, r.all, want)
	if g, w := multiset(got), multiset(want); strings.Join(g, "\n") != strings.Join(w, "\n") {
		r.t.Errorf("deliveries differ from the notifier's events:\n got %d %v\nwant %d %v", len(g), g, len(w), w)
	}
	checkCausal(r.t, got, want)
	ids := map[string]int{}
	for _, q := range r.all.Requests() {
		ids[q.Header.Get("webhook-id")]++
	}
	for id, n := range ids {
		if n > 1 {
			r.t.Errorf("webhook-id %s delivered %d times", id, n)
		}
	}
}

// TestReplicasActAsOne runs three replicas on one database, drives the
// scenarios round-robin through them and directly at the engine, then
// stops the leader mid-run (while a pause/resume cycle is driven directly
// at the engine): every event exactly once, in order, one id each.
func TestReplicasActAsOne(t *testing.T) {
	dsn := pgtest.Database(t)
	r := startReplicas(t, 3, func(int) string { return dsn })
	if code, b := r.do(false, "POST", "/v2/workflows", "text/plain", workflows); code != 201 {
		t.Fatalf("defining workflows: %d %s", code, b)
	}
	roots := map[string]bool{}
	for _, wf := range []string{"t_success", "t_fail", "t_onerror", "t_parent", "t_retry"} {
		id := r.startExec(false, wf)
		roots[id] = true
		r.wait(id)
		r.do(false, "GET", "/v2/executions/"+id, "", "")
		r.do(false, "GET", "/v2/tasks?workflow_execution_id="+id, "", "")
	}
	roots[r.pauseResume(false)] = true
	roots[r.pauseResume(true)] = true
	r.check(roots)

	// The first replica leads (it started alone). Stop it while a
	// pause/resume cycle runs directly at the engine.
	done := make(chan string, 1)
	go func() { done <- r.pauseResume(true) }()
	time.Sleep(200 * time.Millisecond)
	if err := r.stop[0](); err != nil {
		t.Fatalf("stopping the leader: %v", err)
	}
	r.proxy = r.proxy[1:]
	roots[<-done] = true
	id := r.startExec(false, "t_success")
	r.wait(id)
	roots[id] = true
	r.check(roots)
}

// TestDatabaseOutage cuts the only replica off PostgreSQL mid-run (as a
// database restart would): the proxy keeps answering at once, and once the
// database is back what happened meanwhile is derived and delivered.
func TestDatabaseOutage(t *testing.T) {
	dsn := pgtest.Database(t)
	px, via := pgtest.NewProxy(t, dsn)
	r := startReplicas(t, 1, func(int) string { return via })
	if code, b := r.do(false, "POST", "/v2/workflows", "text/plain", workflows); code != 201 {
		t.Fatalf("defining workflows: %d %s", code, b)
	}
	roots := map[string]bool{}
	id := r.startExec(false, "t_success")
	r.wait(id)
	roots[id] = true
	r.check(roots)

	px.Cut()
	for _, direct := range []bool{false, true} {
		t0 := time.Now()
		id := r.startExec(direct, "t_parent")
		if d := time.Since(t0); !direct && d > time.Second {
			t.Errorf("a POST through the proxy took %v during the outage", d)
		}
		roots[id] = true
		r.wait(id)
	}
	// Through the proxy, the tap's buffer keeps the pause and the resume;
	// a cycle driven directly at the engine and over before the database
	// is back is not in the engine's state any more (docs/ha.md).
	roots[r.pauseResume(false)] = true
	time.Sleep(4 * time.Second) // past the lease: the replica steps down meanwhile
	px.Restore()
	r.check(roots)
}

// TestReplicaStartsDuringDatabaseOutage: a replica started while
// PostgreSQL does not answer serves the API at once (it used to wait for
// the database before listening), and once the database is back it
// migrates, leads and delivers every event of what ran meanwhile.
func TestReplicaStartsDuringDatabaseOutage(t *testing.T) {
	dsn := pgtest.Database(t)
	px, via := pgtest.NewProxy(t, dsn)
	px.Cut()
	r := startReplicas(t, 0, nil)
	r.add(via)
	// A client that gives up after 10s: a replica waiting for the
	// database would hold the request until the end of the outage.
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Post(r.proxy[0]+"/v2/workflows", "text/plain", strings.NewReader(workflows))
	if err != nil {
		t.Fatalf("defining workflows through a replica started during the outage: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("defining workflows: %d", resp.StatusCode)
	}
	roots := map[string]bool{}
	for _, wf := range []string{"t_success", "t_parent"} {
		id := r.startExec(false, wf)
		r.wait(id)
		roots[id] = true
	}
	px.Restore()
	r.waitLeader(dsn)
	r.check(roots)
}
