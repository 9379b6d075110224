// Package receiver is a webhook endpoint for tests and the demo: it records
// every request it gets and answers with a scriptable status, so tests can
// assert on what mistral-tap (or Mistral's own notifier) delivered and
// simulate failing receivers.
package receiver

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// Request is one recorded request.
type Request struct {
	Method string
	// Path is the URL path, without the query.
	Path string
	// RawQuery is the query string, without '?'.
	RawQuery string
	Header   http.Header
	Body     []byte
	// At is when the request arrived.
	At time.Time
}

// Responder decides the answer to the n-th request (1-based arrival count).
// A nil header adds nothing.
type Responder func(n int, req *http.Request) (status int, header http.Header)

// Receiver is an http.Handler that records every request. The zero value is
// not usable; use New.
type Receiver struct {
	mu        sync.Mutex
	reqs      []Request
	responder Responder
	// changed is closed and replaced whenever a request is recorded, so
	// WaitFor can block without polling.
	changed chan struct{}
}

// New returns a Receiver that answers 200 to everything.
func New() *Receiver {
	return &Receiver{changed: make(chan struct{})}
}

// SetResponder scripts the answers (e.g. fail the first two with 503). Nil
// restores the default (200).
func (r *Receiver) SetResponder(f func(n int, req *http.Request) (status int, header http.Header)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.responder = f
}

// ServeHTTP records the request, then answers as the responder says.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		// A truncated body is still recorded: tests may want to see it.
		body = append(body, []byte(fmt.Sprintf("\n<read error: %v>", err))...)
	}
	rec := Request{
		Method:   req.Method,
		Path:     req.URL.Path,
		RawQuery: req.URL.RawQuery,
		Header:   req.Header.Clone(),
		Body:     body,
		At:       time.Now(),
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, rec)
	n := len(r.reqs)
	resp := r.responder
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()

	status := http.StatusOK
	var hdr http.Header
	if resp != nil {
		status, hdr = resp(n, req)
		if status == 0 {
			status = http.StatusOK
		}
	}
	for k, vs := range hdr {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(status)
}

// Requests returns a copy of every request so far, in arrival order.
func (r *Receiver) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snapshot()
}

func (r *Receiver) snapshot() []Request {
	out := make([]Request, len(r.reqs))
	for i, q := range r.reqs {
		q.Header = q.Header.Clone()
		q.Body = append([]byte(nil), q.Body...)
		out[i] = q
	}
	return out
}

// WaitFor blocks until at least n requests arrived and returns them all, or
// returns what arrived so far with an error when ctx ends first.
func (r *Receiver) WaitFor(ctx context.Context, n int) ([]Request, error) {
	got, err := r.WaitUntil(ctx, func(reqs []Request) bool { return len(reqs) >= n })
	if err != nil {
		return got, fmt.Errorf("waiting for %d webhook requests, got %d: %w", n, len(got), err)
	}
	return got, nil
}

// WaitUntil blocks until cond holds for the requests so far (checked on
// every arrival, never by polling) and returns them, or returns what arrived
// so far with ctx's error when ctx ends first. cond must not block.
func (r *Receiver) WaitUntil(ctx context.Context, cond func([]Request) bool) ([]Request, error) {
	for {
		r.mu.Lock()
		snap := r.snapshot()
		ch := r.changed
		r.mu.Unlock()
		if cond(snap) {
			return snap, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return r.Requests(), ctx.Err()
		}
	}
}
