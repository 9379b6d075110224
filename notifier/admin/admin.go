// Package admin serves mistral-tap's admin API on its own listener (off by
// default): listing deliveries, replaying dead letters and the callbacks'
// status. Every request needs `Authorization: Bearer <token>`.
//
//	GET  /deliveries?callback=&state=dead|pending|delivered&limit=&since=RFC3339
//	POST /deliveries/replay   {"id": ".."} | {"callback": ".."} | {"since": "RFC3339"}
//	GET  /callbacks
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/notifier/store"
)

// Backend is what the admin API reads and drives; *notifier.Dispatcher
// implements it.
type Backend interface {
	List(ctx context.Context, f store.Filter) ([]store.Delivery, error)
	Replay(ctx context.Context, f store.ReplayFilter) (int, error)
	Status() []notifier.CallbackStatus
}

var _ Backend = (*notifier.Dispatcher)(nil)

// MaxLimit caps `limit` on GET /deliveries.
const MaxLimit = 10000

// Handler is the admin API.
type Handler struct {
	b Backend
	// token is the SHA-256 of the bearer token; SetToken swaps it while
	// requests are served, so a leaked token can be rotated by a reload.
	token atomic.Pointer[[sha256.Size]byte]
	log   *slog.Logger
	mux   *http.ServeMux
}

// errNoToken refuses to serve an open admin API.
var errNoToken = errors.New("admin: a bearer token is required")

// New returns the admin API. token is required: an empty one is refused
// rather than serving an open admin API.
func New(b Backend, token string, log *slog.Logger) (*Handler, error) {
	if b == nil {
		return nil, errors.New("admin: backend is required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{b: b, log: log, mux: http.NewServeMux()}
	if err := h.SetToken(token); err != nil {
		return nil, err
	}
	h.mux.HandleFunc("GET /deliveries", h.list)
	h.mux.HandleFunc("POST /deliveries/replay", h.replay)
	h.mux.HandleFunc("GET /callbacks", h.callbacks)
	return h, nil
}

// SetToken replaces the bearer token: from its return on, requests with
// the previous token get 401. An empty token is refused and the previous
// one stays.
func (h *Handler) SetToken(token string) error {
	if token == "" {
		return errNoToken
	}
	// Comparing fixed-size hashes keeps the compare constant-time even in
	// the token's length.
	sum := sha256.Sum256([]byte(token))
	h.token.Store(&sum)
	return nil
}

// ServeHTTP authenticates and routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	got := sha256.Sum256([]byte(tok))
	want := h.token.Load()
	if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mistral-tap admin"`)
		writeError(w, http.StatusUnauthorized, "missing or invalid bearer token")
		return
	}
	h.mux.ServeHTTP(w, r)
}

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

// DeliveryList is the GET /deliveries response.
type DeliveryList struct {
	Deliveries []store.Delivery `json:"deliveries"`
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.Filter{ID: q.Get("id"), Callback: q.Get("callback"), State: store.State(q.Get("state"))}
	if f.State != "" && !f.State.Valid() {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("state must be pending, dead or delivered, not %q", f.State))
		return
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > MaxLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit must be 1..%d", MaxLimit))
			return
		}
		f.Limit = n
	}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "since must be an RFC 3339 time")
			return
		}
		f.Since = t
	}
	f.WithEvent = q.Get("events") == "true"
	ds, err := h.b.List(r.Context(), f)
	if err != nil {
		h.log.Error("admin: listing deliveries failed", "err", err)
		writeError(w, http.StatusInternalServerError, "listing deliveries failed")
		return
	}
	writeJSON(w, http.StatusOK, DeliveryList{Deliveries: ds})
}

// ReplayRequest is the POST /deliveries/replay body.
type ReplayRequest struct {
	ID       string `json:"id,omitempty"`
	Callback string `json:"callback,omitempty"`
	Since    string `json:"since,omitempty"` // RFC 3339
}

// ReplayResponse reports how many dead letters were re-queued.
type ReplayResponse struct {
	Replayed int `json:"replayed"`
}

func (h *Handler) replay(w http.ResponseWriter, r *http.Request) {
	var req ReplayRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body must be JSON: {\"id\"|\"callback\"|\"since\": ...}")
		return
	}
	f := store.ReplayFilter{ID: req.ID, Callback: req.Callback}
	if req.Since != "" {
		t, err := time.Parse(time.RFC3339, req.Since)
		if err != nil {
			writeError(w, http.StatusBadRequest, "since must be an RFC 3339 time")
			return
		}
		f.Since = t
	}
	if f.ID == "" && f.Callback == "" && f.Since.IsZero() {
		writeError(w, http.StatusBadRequest, "give an id, a callback or a since time")
		return
	}
	n, err := h.b.Replay(r.Context(), f)
	if err != nil {
		h.log.Error("admin: replay failed", "err", err)
		writeError(w, http.StatusInternalServerError, "replay failed")
		return
	}
	h.log.Info("admin: replayed dead letters", "id", f.ID, "callback", f.Callback, "since", f.Since, "replayed", n)
	writeJSON(w, http.StatusOK, ReplayResponse{Replayed: n})
}

// CallbackList is the GET /callbacks response.
type CallbackList struct {
	Callbacks []notifier.CallbackStatus `json:"callbacks"`
}

func (h *Handler) callbacks(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, CallbackList{Callbacks: h.b.Status()})
}
