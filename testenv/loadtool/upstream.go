package main

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mistral-tap/mistral-tap/testenv/fakemistral"
)

const workflows = `
version: '2.0'
lt_noop:
  tasks:
    t1:
      action: std.noop
lt_sleep:
  tasks:
    t1:
      action: std.sleep seconds=3600
lt_busy:
  tasks:
    a:
      action: std.sleep seconds=0.2
      on-success: [b]
    b:
      action: std.sleep seconds=0.2
      on-success: [c]
    c:
      action: std.noop
`

const tsLayout = "2006-01-02 15:04:05"

// Workload paths, the same on the fake engine and on the canned upstream.
const (
	pathList100  = "/v2/executions?limit=100"
	pathList1000 = "/v2/executions?limit=1000"
	postBody     = `{"workflow_name": "lt_noop", "input": {}}`
)

// upstreamServers is the "upstream" child: the fake engine (with `execs`
// completed executions) and a trivial server replaying bytes captured from
// it, both counting requests.
type upstreamServers struct {
	eng     *fakemistral.Engine
	execID  string
	canned  *canned
	fakeReq atomic.Uint64
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func capture(h http.Handler, method, target, body string) (*httptest.ResponseRecorder, error) {
	req := httptest.NewRequest(method, "http://127.0.0.1"+target, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code/100 != 2 {
		return nil, fmt.Errorf("capturing %s %s: status %d: %s", method, target, rec.Code, rec.Body.String())
	}
	return rec, nil
}

func runUpstream(execs int) error {
	eng := fakemistral.New(fakemistral.Options{})
	if err := eng.DefineWorkflow(workflows, ""); err != nil {
		return fmt.Errorf("defining workflows: %w", err)
	}
	u := &upstreamServers{eng: eng}
	for i := range execs {
		id, err := eng.Start("lt_noop", nil, nil)
		if err != nil {
			return fmt.Errorf("starting execution %d: %w", i, err)
		}
		if i == 0 {
			u.execID = id
		}
	}
	c := &canned{get: map[string][]byte{}}
	for _, p := range []string{"/v2/executions/" + u.execID, pathList100, pathList1000} {
		rec, err := capture(eng, "GET", p, "")
		if err != nil {
			return err
		}
		c.get[p] = rec.Body.Bytes()
	}
	rec, err := capture(eng, "POST", "/v2/executions", postBody)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &c.postTmpl); err != nil {
		return fmt.Errorf("decoding captured POST: %w", err)
	}
	u.canned = c

	fakeLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	cannedLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go http.Serve(fakeLn, u.fakeHandler())
	go http.Serve(cannedLn, c)
	ready(map[string]string{
		"fake": "http://" + fakeLn.Addr().String(), "canned": "http://" + cannedLn.Addr().String(),
		"exec":          u.execID,
		"bytes_small":   strconv.Itoa(len(c.get["/v2/executions/"+u.execID])),
		"bytes_list100": strconv.Itoa(len(c.get[pathList100])), "bytes_list1000": strconv.Itoa(len(c.get[pathList1000])),
	})
	serveControl()
	eng.Close()
	return nil
}

// fakeHandler is the engine plus control endpoints the parent calls
// directly (never through a proxy): /ctl/count, /ctl/populate?n=,
// /ctl/busy?rate=&seconds=.
func (u *upstreamServers) fakeHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ctl/count", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, u.fakeReq.Load())
	})
	mux.HandleFunc("/ctl/populate", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		for range n {
			if _, err := u.eng.Start("lt_sleep", nil, nil); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
		}
		fmt.Fprint(w, n)
	})
	mux.HandleFunc("/ctl/busy", func(w http.ResponseWriter, r *http.Request) {
		rate, _ := strconv.Atoi(r.URL.Query().Get("rate"))
		secs, _ := strconv.ParseFloat(r.URL.Query().Get("seconds"), 64)
		go func() {
			t := time.NewTicker(time.Second / time.Duration(max(rate, 1)))
			defer t.Stop()
			end := time.Now().Add(time.Duration(secs * float64(time.Second)))
			for now := range t.C {
				if now.After(end) {
					return
				}
				u.eng.Start("lt_busy", nil, nil)
			}
		}()
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		u.fakeReq.Add(1)
		u.eng.ServeHTTP(w, r)
	})
	return mux
}

// canned replays captured responses. It does no work per request beyond a
// map lookup and a write, so proxy rows measure the proxy, not the engine.
// Beyond replay:
//   - POST /v2/executions answers the captured creation with a fresh id and
//     current timestamps, so every POST is a new execution for the tap;
//   - GET /v2/executions?fresh=N answers a list of N new RUNNING executions
//     (delivery throughput);
//   - GET /v2/executions?slow=1 sends the 1,000 list in two halves 300 ms
//     apart (first byte before last);
//   - the watcher's polls (an updated_at/created_at filter) see the
//     executions created with POST /ctl/spawn in the last 30 s (watched
//     latency); other lists are empty.
type canned struct {
	get      map[string][]byte
	postTmpl map[string]any
	requests atomic.Uint64

	mu      sync.Mutex
	spawned []spawned
}

type spawned struct {
	at  time.Time
	obj map[string]any
}

func (c *canned) fresh(state string) map[string]any {
	m := make(map[string]any, len(c.postTmpl))
	for k, v := range c.postTmpl {
		m[k] = v
	}
	now := time.Now().UTC().Format(tsLayout)
	m["id"], m["state"], m["created_at"], m["updated_at"] = newID(), state, now, now
	return m
}

func writeBytes(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

func (c *canned) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/ctl/spawn" {
		m := c.fresh("RUNNING")
		c.mu.Lock()
		c.spawned = append(c.spawned, spawned{time.Now(), m})
		c.mu.Unlock()
		fmt.Fprint(w, m["id"])
		return
	}
	if r.URL.Path == "/ctl/count" {
		fmt.Fprint(w, c.requests.Load())
		return
	}
	c.requests.Add(1)
	if b, ok := c.get[r.URL.RequestURI()]; ok && r.Method == http.MethodGet {
		writeBytes(w, 200, b)
		return
	}
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v2/executions":
		b, _ := json.Marshal(c.fresh("RUNNING"))
		writeBytes(w, 201, b)
	case r.Method == http.MethodGet && q.Get("fresh") != "":
		n, _ := strconv.Atoi(q.Get("fresh"))
		list := make([]map[string]any, n)
		for i := range list {
			list[i] = c.fresh("RUNNING")
		}
		b, _ := json.Marshal(map[string]any{"executions": list})
		writeBytes(w, 200, b)
	case r.Method == http.MethodGet && q.Get("slow") != "":
		b := c.get[pathList1000]
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(200)
		w.Write(b[:len(b)/2])
		w.(http.Flusher).Flush()
		time.Sleep(300 * time.Millisecond)
		w.Write(b[len(b)/2:])
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v2/"):
		res := strings.Split(strings.TrimPrefix(r.URL.Path, "/v2/"), "/")
		if len(res) > 1 {
			writeBytes(w, 404, []byte(`{"faultcode": "Client", "faultstring": "not found", "debuginfo": null}`))
			return
		}
		var items []map[string]any
		if res[0] == "executions" && (q.Get("updated_at") != "" || q.Get("created_at") != "") && q.Get("marker") == "" {
			cut := time.Now().Add(-30 * time.Second)
			c.mu.Lock()
			for _, s := range c.spawned {
				if s.at.After(cut) {
					items = append(items, s.obj)
				}
			}
			c.mu.Unlock()
		}
		if items == nil {
			items = []map[string]any{}
		}
		b, _ := json.Marshal(map[string]any{res[0]: items})
		writeBytes(w, 200, b)
	default:
		writeBytes(w, 404, []byte(`{"faultcode": "Client", "faultstring": "not found", "debuginfo": null}`))
	}
}
