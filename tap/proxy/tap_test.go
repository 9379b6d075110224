package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// TestObservations: each tapped route yields one observation per resource,
// of the route's kind, with the request's receive time.
func TestObservations(t *testing.T) {
	cases := []struct {
		name, method, path, body string
		kind                     event.Kind
		ids                      []string
		skipped                  uint64
	}{
		{"execution list", "GET", "/v2/executions", "", event.KindExecution,
			[]string{"6b9f0c1e-1111-4a5b-9c1d-000000000001", "6b9f0c1e-1111-4a5b-9c1d-000000000002", "6b9f0c1e-1111-4a5b-9c1d-000000000003"}, 0},
		{"execution list trailing slash", "GET", "/v2/executions/", "", event.KindExecution,
			[]string{"6b9f0c1e-1111-4a5b-9c1d-000000000001", "6b9f0c1e-1111-4a5b-9c1d-000000000002", "6b9f0c1e-1111-4a5b-9c1d-000000000003"}, 0},
		{"execution create", "POST", "/v2/executions", `{"workflow_name": "wb1.main"}`, event.KindExecution,
			[]string{"6b9f0c1e-1111-4a5b-9c1d-000000000001"}, 0},
		{"execution get", "GET", "/v2/executions/6b9f0c1e-1111-4a5b-9c1d-000000000001", "", event.KindExecution,
			[]string{"6b9f0c1e-1111-4a5b-9c1d-000000000001"}, 0},
		{"execution put", "PUT", "/v2/executions/6b9f0c1e-1111-4a5b-9c1d-000000000001", `{"state": "PAUSED"}`, event.KindExecution,
			[]string{"6b9f0c1e-1111-4a5b-9c1d-000000000001"}, 0},
		{"execution tasks", "GET", "/v2/executions/6b9f0c1e-1111-4a5b-9c1d-000000000001/tasks", "", event.KindTask,
			[]string{"7a000000-0000-4000-8000-000000000001", "7a000000-0000-4000-8000-000000000002"}, 0},
		{"task list", "GET", "/v2/tasks", "", event.KindTask,
			[]string{"7a000000-0000-4000-8000-000000000001", "7a000000-0000-4000-8000-000000000002"}, 0},
		{"task get", "GET", "/v2/tasks/7a000000-0000-4000-8000-000000000001", "", event.KindTask,
			[]string{"7a000000-0000-4000-8000-000000000001"}, 0},
		{"task rerun", "PUT", "/v2/tasks/7a000000-0000-4000-8000-000000000001", `{"state": "RUNNING", "reset": true}`, event.KindTask,
			[]string{"7a000000-0000-4000-8000-000000000001"}, 0},
		{"404 not tapped", "GET", "/v2/executions/nope", "", "", nil, 0},
		{"500 not tapped", "GET", "/v2/executions/boom", "", "", nil, 0},
		{"400 not tapped", "PUT", "/v2/executions/x", `{"state": "BOGUS"}`, "", nil, 0},
		{"delete not tapped", "DELETE", "/v2/executions/x", "", "", nil, 0},
		{"other route not tapped", "GET", "/v2/workflows", "", "", nil, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var tick atomic.Int64
			e := newEnv(t, nil, func(o *Options) {
				o.Now = func() time.Time { return testClock.Add(time.Duration(tick.Add(1)) * time.Second) }
			})
			do(t, e.client, tc.method, e.front.URL+tc.path, tc.body)
			e.p.Wait()
			obs := e.rec.all()
			if len(obs) != len(tc.ids) {
				t.Fatalf("%d observations, want %d", len(obs), len(tc.ids))
			}
			for i, o := range obs {
				if o.Source != event.SourceTap {
					t.Errorf("Source %q", o.Source)
				}
				if !o.RequestedAt.Equal(testClock.Add(time.Second)) {
					t.Errorf("RequestedAt %v, want the receive time", o.RequestedAt)
				}
				id := ""
				switch tc.kind {
				case event.KindExecution:
					if o.Execution == nil || o.Task != nil {
						t.Fatalf("observation %d is not an execution: %+v", i, o)
					}
					id = o.Execution.ID
				case event.KindTask:
					if o.Task == nil || o.Execution != nil {
						t.Fatalf("observation %d is not a task: %+v", i, o)
					}
					id = o.Task.ID
				}
				if id != tc.ids[i] {
					t.Errorf("observation %d id %q, want %q", i, id, tc.ids[i])
				}
			}
			st := e.p.Stats()
			if st.Observations != uint64(len(tc.ids)) || st.SkippedResources != tc.skipped {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// TestObservationFields checks the decoded fields, nulls and JSON-encoded
// strings of one execution and one task.
func TestObservationFields(t *testing.T) {
	e := newEnv(t, nil, nil)
	do(t, e.client, "GET", e.front.URL+"/v2/executions", "")
	do(t, e.client, "GET", e.front.URL+"/v2/tasks/7a000000-0000-4000-8000-000000000001", "")
	e.p.Wait()
	obs := e.rec.all()
	if len(obs) != 4 {
		t.Fatalf("%d observations", len(obs))
	}
	var sub *event.Execution
	var task *event.Task
	for _, o := range obs {
		if o.Execution != nil && o.Execution.ID == "6b9f0c1e-1111-4a5b-9c1d-000000000002" {
			sub = o.Execution
		}
		if o.Task != nil {
			task = o.Task
		}
	}
	if sub == nil || task == nil {
		t.Fatalf("missing resources: %+v", obs)
	}
	str := func(p *string) string {
		if p == nil {
			return "<nil>"
		}
		return *p
	}
	checks := []struct{ name, got, want string }{
		{"workflow_name", sub.WorkflowName, "wb1.sub"},
		{"namespace", sub.WorkflowNamespace, "ns1"},
		{"state", sub.State, "ERROR"},
		{"state_info", str(sub.StateInfo), "Failure caused by error in tasks: t1"},
		{"root", str(sub.RootExecutionID), "6b9f0c1e-1111-4a5b-9c1d-000000000001"},
		{"task_execution_id", str(sub.TaskExecutionID), "7a000000-0000-4000-8000-000000000001"},
		{"updated_at", str(sub.UpdatedAt), "2024-05-01 10:00:02"},
		{"task name", task.Name, "t1"},
		{"task type", task.Type, "ACTION"},
		{"task wf ex", task.WorkflowExecutionID, "6b9f0c1e-1111-4a5b-9c1d-000000000001"},
		{"runtime_context", str(task.RuntimeContext), `{"retry_task_policy": {"retry_no": 2}, "triggered_by": [{"event": "on-success", "task_id": "x"}]}`},
		{"finished_at", str(task.FinishedAt), "2024-05-01 10:00:02"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	for _, o := range obs {
		if o.Execution != nil && o.Execution.ID == "6b9f0c1e-1111-4a5b-9c1d-000000000003" && o.Execution.UpdatedAt != nil {
			t.Errorf("null updated_at decoded as %q", *o.Execution.UpdatedAt)
		}
	}
}

// TestTapSkips: bodies that cannot be used are counted and change nothing
// for the client.
func TestTapSkips(t *testing.T) {
	serve := func(ct string, body []byte, withCL bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if ct != "" {
				w.Header().Set("Content-Type", ct)
			}
			if withCL {
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			}
			w.WriteHeader(200)
			// Two writes with a flush between force chunking when no
			// Content-Length was set.
			half := len(body) / 2
			_, _ = w.Write(body[:half])
			w.(http.Flusher).Flush()
			_, _ = w.Write(body[half:])
		}
	}
	big := bigList(50) // ~22 KB
	cases := []struct {
		name    string
		h       http.HandlerFunc
		path    string
		check   func(Stats) bool
		wantObs int
	}{
		{"too large, length known", serve("application/json", big, true), "/v2/executions",
			func(s Stats) bool { return s.SkippedTooLarge == 1 }, 0},
		{"too large, chunked", serve("application/json", big, false), "/v2/executions",
			func(s Stats) bool { return s.SkippedTooLarge == 1 }, 0},
		{"not JSON", serve("text/html", []byte("<html></html>"), true), "/v2/executions",
			func(s Stats) bool { return s.SkippedNotJSON == 1 }, 0},
		{"malformed JSON", serve("application/json", []byte(`{"executions": [{"id": "x", "state": "RUN`), true), "/v2/executions",
			func(s Stats) bool { return s.ParseErrors == 1 }, 0},
		{"fields without state", serve("application/json", fixture(t, "executions_fields.json"), true), "/v2/executions",
			func(s Stats) bool { return s.SkippedResources == 2 && s.Tapped == 1 }, 0},
		{"mixed elements", serve("application/json", fixture(t, "executions_mixed.json"), true), "/v2/executions",
			func(s Stats) bool { return s.SkippedResources == 4 && s.Tapped == 1 }, 2},
		{"text/plain JSON", serve("text/plain", fixture(t, "executions_list.json"), true), "/v2/executions",
			func(s Stats) bool { return s.Tapped == 1 }, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.h, func(o *Options) { o.MaxTapBody = 16 << 10 })
			direct := do(t, e.client, "GET", e.up.URL+tc.path, "")
			got := do(t, e.client, "GET", e.front.URL+tc.path, "")
			if got.body != direct.body || got.status != direct.status {
				t.Errorf("response changed by the tap")
			}
			e.p.Wait()
			if st := e.p.Stats(); !tc.check(st) {
				t.Errorf("stats %+v", st)
			}
			if n := len(e.rec.all()); n != tc.wantObs {
				t.Errorf("%d observations, want %d", n, tc.wantObs)
			}
		})
	}
}

// slowList is an upstream that writes part of a list, flushes, and blocks
// until released (or the request is cancelled), then writes the rest.
type slowList struct {
	body    []byte
	split   int
	withCL  bool
	release chan struct{}
	done    chan error
}

func newSlowList(n, split int, withCL bool) *slowList {
	return &slowList{body: bigList(n), split: split, withCL: withCL, release: make(chan struct{}), done: make(chan error, 1)}
}

func (s *slowList) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if s.withCL {
		w.Header().Set("Content-Length", strconv.Itoa(len(s.body)))
	}
	w.WriteHeader(200)
	_, _ = w.Write(s.body[:s.split])
	w.(http.Flusher).Flush()
	select {
	case <-s.release:
	case <-r.Context().Done():
		s.done <- r.Context().Err()
		return
	}
	_, err := w.Write(s.body[s.split:])
	s.done <- err
}

// TestStreaming: the first part of a list reaches the client while the
// upstream still holds the rest, with and without Content-Length, and the
// tap still sees the whole body. Content-Length is preserved.
func TestStreaming(t *testing.T) {
	for _, withCL := range []bool{false, true} {
		t.Run(fmt.Sprintf("content-length=%v", withCL), func(t *testing.T) {
			// Without Content-Length the proxy flushes before every read
			// that may block, so even a part smaller than the server's
			// buffers (2 KiB + 4 KiB) must arrive whole. With it, the proxy
			// does not flush (as httputil), and a large part arrives
			// except for at most those buffers.
			split := 1500
			if withCL {
				split = 64 << 10
			}
			up := newSlowList(300, split, withCL)
			e := newEnv(t, up, nil)
			resp, err := e.client.Get(e.front.URL + "/v2/executions")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if withCL && resp.ContentLength != int64(len(up.body)) {
				t.Errorf("client Content-Length %d, want %d (preserved)", resp.ContentLength, len(up.body))
			}
			first := up.split
			if withCL {
				first -= 8 << 10
			}
			got := make([]byte, first)
			read := make(chan error, 1)
			go func() { _, err := io.ReadFull(resp.Body, got); read <- err }()
			select {
			case err := <-read:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				close(up.release)
				t.Fatal("first part did not reach the client while the upstream was blocked")
			}
			if len(e.rec.all()) != 0 {
				t.Error("observed before the body was complete")
			}
			close(up.release)
			rest, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(append(got, rest...), up.body) {
				t.Error("body differs")
			}
			e.p.Wait()
			if n := len(e.rec.all()); n != 300 {
				t.Errorf("%d observations, want 300", n)
			}
		})
	}
}

// TestClientAbortNotTapped: a client that leaves mid-body gets no
// observation derived from the partial body.
func TestClientAbortNotTapped(t *testing.T) {
	up := newSlowList(300, 32<<10, false)
	e := newEnv(t, up, nil)
	resp, err := e.client.Get(e.front.URL + "/v2/executions")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // mid-body: the transport closes the connection
	waitFor(t, "the upstream request to be cancelled", func() bool {
		select {
		case err := <-up.done:
			if err == nil {
				t.Error("upstream finished writing")
			}
			return true
		default:
			return false
		}
	})
	waitFor(t, "the tap to give up", func() bool { return e.p.Stats().SkippedIncomplete == 1 })
	e.p.Wait()
	if n := len(e.rec.all()); n != 0 {
		t.Errorf("%d observations from an aborted body", n)
	}
}

// TestWorkbooksChanged: only 2xx writes on workbooks/workflows notify.
func TestWorkbooksChanged(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.fake.extra["/v2/workflows"] = func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(201)
		_, _ = io.WriteString(w, `{"workflows": []}`)
	}
	steps := []struct {
		method, path string
		want         int
	}{
		{"GET", "/v2/workbooks", 0},
		{"POST", "/v2/workbooks", 1},
		{"PUT", "/v2/workbooks", 1}, // 400
		{"DELETE", "/v2/workbooks/wb1", 2},
		{"POST", "/v2/workflows", 3},
		{"GET", "/v2/workflows", 3}, // GET never notifies
		{"POST", "/v2/executions", 3},
	}
	for _, s := range steps {
		do(t, e.client, s.method, e.front.URL+s.path, "x")
		e.p.Wait()
		if n := e.wb.count(); n != s.want {
			t.Errorf("after %s %s: %d calls, want %d", s.method, s.path, n, s.want)
		}
	}
}
