package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// receiver acknowledges webhooks and records when each entity's first
// notification arrived.
type receiver struct {
	url   string
	count atomic.Int64
	// tap counts the webhooks mistral-tap sent (to url + "/tap"), apart
	// from the other senders'.
	tap atomic.Int64
	srv *http.Server

	mu      sync.Mutex
	arrived map[string]time.Time
	last    time.Time
	waiters map[string]chan time.Time
}

func startReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{url: "http://" + ln.Addr().String() + "/hook", arrived: map[string]time.Time{}, waiters: map[string]chan time.Time{}}
	r.srv = &http.Server{Handler: r}
	go r.srv.Serve(ln)
	return r, nil
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	now := time.Now()
	b, _ := io.ReadAll(req.Body)
	var doc struct {
		ID string `json:"id"`
	}
	json.Unmarshal(b, &doc)
	r.mu.Lock()
	if _, ok := r.arrived[doc.ID]; !ok {
		r.arrived[doc.ID] = now
		if ch := r.waiters[doc.ID]; ch != nil {
			ch <- now
			delete(r.waiters, doc.ID)
		}
	}
	r.last = now
	r.mu.Unlock()
	r.count.Add(1)
	if strings.HasSuffix(req.URL.Path, "/tap") {
		r.tap.Add(1)
	}
	w.WriteHeader(http.StatusOK)
}

// wait returns when id's first notification arrived, or false after d.
func (r *receiver) wait(id string, d time.Duration) (time.Time, bool) {
	r.mu.Lock()
	if t, ok := r.arrived[id]; ok {
		r.mu.Unlock()
		return t, true
	}
	ch := make(chan time.Time, 1)
	r.waiters[id] = ch
	r.mu.Unlock()
	select {
	case t := <-ch:
		return t, true
	case <-time.After(d):
		return time.Time{}, false
	}
}

func (r *receiver) lastArrival() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

func (r *receiver) reset() {
	r.mu.Lock()
	r.arrived = map[string]time.Time{}
	r.mu.Unlock()
	r.count.Store(0)
}
