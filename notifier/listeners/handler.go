package listeners

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/mistral-tap/mistral-tap/config/redact"
	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// Reader reads stored listeners (the handler and the registry).
type Reader interface {
	Listeners(ctx context.Context) ([]store.Listener, error)
	Listener(ctx context.Context, id string) (store.Listener, error)
}

// Writer creates and deletes stored listeners.
type Writer interface {
	CreateListener(ctx context.Context, l store.Listener, perProject int) error
	DeleteListener(ctx context.Context, id string) (bool, error)
}

// Store is what the handler needs of the store; *store.Store and
// *pgstore.Store are one.
type Store interface {
	Reader
	Writer
}

// HandlerOptions configure a Handler.
type HandlerOptions struct {
	// Store keeps the listeners. Required.
	Store Store
	// Sealer seals each listener's spec. Required.
	Sealer *Sealer
	// Auth decides who may register and see what. Required.
	Auth Authorizer
	// AdminToken is mistral-tap's admin token (admin.token): a request that
	// carries it (Authorization: Bearer, or X-Auth-Token) sees every
	// project. "" disables it. SetAdminToken changes it.
	AdminToken string
	// TTL bounds expires_at.
	TTL TTL
	// PerProject caps the listeners of one project; 0: no cap.
	PerProject int
	// Changed is called after a listener was created or deleted, so that
	// the registry syncs at once (Registry.Changed). Optional.
	Changed func()
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// Handler serves the /v2/listeners subtree: POST and GET on the collection,
// GET and DELETE on /v2/listeners/{id}. It accepts any path prefix before
// /v2/listeners, so that it works behind the proxy's path_prefix.
type Handler struct {
	o   HandlerOptions
	log *slog.Logger
	// admin is the SHA-256 of the admin token (nil: none); SetAdminToken
	// swaps it while requests are served.
	admin atomic.Pointer[[sha256.Size]byte]
}

// NewHandler checks o and returns the handler.
func NewHandler(o HandlerOptions) (*Handler, error) {
	if o.Store == nil || o.Sealer == nil || o.Auth == nil {
		return nil, errors.New("listeners: handler needs a store, a sealer and an authorizer")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Changed == nil {
		o.Changed = func() {}
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{o: o, log: log}
	h.SetAdminToken(o.AdminToken)
	return h, nil
}

// SetAdminToken replaces the admin token (a reload rotates admin.token):
// from its return on, the previous one is an ordinary token. "" turns the
// admin access off.
func (h *Handler) SetAdminToken(token string) {
	if token == "" {
		h.admin.Store(nil)
		return
	}
	// Comparing fixed-size hashes keeps the compare constant-time even in
	// the token's length.
	sum := sha256.Sum256([]byte(token))
	h.admin.Store(&sum)
}

// isAdmin reports whether tok is the admin token.
func (h *Handler) isAdmin(tok string) bool {
	want := h.admin.Load()
	if want == nil || tok == "" {
		return false
	}
	got := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// Path is the collection's path below the API root.
const Path = "/v2/listeners"

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i := strings.Index(r.URL.Path, Path)
	rest, ok := "", i >= 0
	if ok {
		// "/v2/listeners", "/v2/listeners/" or "/v2/listeners/{id}", not
		// "/v2/listenersX".
		rest, ok = strings.CutPrefix(r.URL.Path[i+len(Path):], "/")
		ok = ok || rest == ""
	}
	if !ok {
		h.fault(w, http.StatusNotFound, "The resource could not be found.")
		return
	}
	switch {
	case rest == "" && r.Method == http.MethodPost:
		h.create(w, r)
	case rest == "" && r.Method == http.MethodGet:
		h.list(w, r)
	case rest == "":
		w.Header().Set("Allow", "GET, POST")
		h.fault(w, http.StatusMethodNotAllowed, "The method is not allowed for this resource.")
	case strings.Contains(rest, "/"):
		h.fault(w, http.StatusNotFound, "The resource could not be found.")
	case r.Method == http.MethodGet:
		h.get(w, r, rest)
	case r.Method == http.MethodDelete:
		h.delete(w, r, rest)
	default:
		w.Header().Set("Allow", "GET, DELETE")
		h.fault(w, http.StatusMethodNotAllowed, "The method is not allowed for this resource.")
	}
}

// caller is who sent a request: mistral-tap's admin, or the holder of a
// Mistral token ("" when none).
type caller struct {
	admin bool
	token string
}

func (h *Handler) callerOf(r *http.Request) caller {
	tok := r.Header.Get("X-Auth-Token")
	bearer, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch {
	case h.isAdmin(bearer):
		// A Mistral token may come along in X-Auth-Token.
		return caller{admin: true, token: tok}
	case h.isAdmin(tok):
		// The admin token is mistral-tap's, not Mistral's: never forward it.
		return caller{admin: true}
	}
	return caller{token: tok}
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			h.fault(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("Request body is larger than %d bytes.", MaxBody))
			return
		}
		h.fault(w, http.StatusBadRequest, "Cannot read the request body.")
		return
	}
	body, err := Decode(data)
	if err != nil {
		h.fault(w, http.StatusBadRequest, "Invalid listener: "+err.Error())
		return
	}
	now := h.o.Now().UTC()
	req, err := body.Check(now, h.o.TTL)
	if err != nil {
		h.fault(w, http.StatusBadRequest, "Invalid listener: "+err.Error())
		return
	}
	c := h.callerOf(r)
	g, err := h.o.Auth.Authorize(r.Context(), c.token, req.Scope)
	if err != nil {
		h.authFault(w, err, c)
		return
	}
	l, err := h.newListener(req, g, now)
	if err != nil {
		h.log.Error("listeners: sealing a new listener", "err", err)
		h.fault(w, http.StatusInternalServerError, "Cannot seal the listener.")
		return
	}
	switch err := h.o.Store.CreateListener(r.Context(), l, h.o.PerProject); {
	case errors.Is(err, store.ErrListenerLimit):
		h.fault(w, http.StatusConflict, fmt.Sprintf("Listener limit reached: project %q already has %d listeners.", l.ProjectID, h.o.PerProject))
		return
	case err != nil:
		h.log.Error("listeners: storing a listener", "err", err)
		h.fault(w, http.StatusInternalServerError, "Cannot store the listener.")
		return
	}
	h.o.Changed()
	v := viewOf(l, req.Spec)
	if req.SecretGenerated {
		v.Secret = req.Spec.Secret
	}
	writeJSON(w, http.StatusCreated, v)
}

func (h *Handler) newListener(req Request, g Grant, now time.Time) (store.Listener, error) {
	id := uuid.NewString()
	sealed, err := h.o.Sealer.Seal(id, req.Spec)
	if err != nil {
		return store.Listener{}, err
	}
	now = now.Truncate(time.Second)
	return store.Listener{
		ID: id, ProjectID: g.ProjectID, Scope: req.Scope.Kind, ScopeValue: req.Scope.Value,
		RootID: g.RootID, Events: req.Events, Spec: sealed,
		CreatedAt: now, UpdatedAt: now, ExpiresAt: req.ExpiresAt,
	}, nil
}

// authFault answers a refusal by the Authorizer.
func (h *Handler) authFault(w http.ResponseWriter, err error, c caller) {
	switch {
	case errors.Is(err, ErrUnauthorized) && c.token == "":
		h.fault(w, http.StatusUnauthorized, "Mistral requires authentication: send your token in X-Auth-Token.")
	case errors.Is(err, ErrUnauthorized):
		h.fault(w, http.StatusUnauthorized, "Mistral refused the token: "+err.Error()+".")
	case errors.Is(err, ErrForbidden):
		h.fault(w, http.StatusForbidden, "Not allowed: "+err.Error()+".")
	case errors.Is(err, ErrNotFound):
		h.fault(w, http.StatusNotFound, capitalize(err.Error())+".")
	case errors.Is(err, ErrNoProject):
		// A glob is recorded in the caller's project: without one it
		// would match every project's events.
		h.fault(w, http.StatusForbidden, "Not allowed: "+err.Error()+" (a workflow_name glob is limited to your project; name one workflow instead).")
	default:
		h.log.Warn("listeners: cannot ask Mistral", "err", err)
		writeFault(w, http.StatusBadGateway, "Server", "Cannot check with Mistral: "+err.Error()+".")
	}
}

// visibility returns which listeners the caller may see: all, or those
// of one project (project "" with all false: none).
func (h *Handler) visibility(ctx context.Context, c caller) (all bool, project string, err error) {
	if c.admin {
		return true, "", nil
	}
	g, err := h.o.Auth.Caller(ctx, c.token)
	switch {
	case errors.Is(err, ErrNoProject):
		return false, "", nil
	case err != nil:
		return false, "", err
	}
	return g.Admin, g.ProjectID, nil
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	limit, marker, err := pageArgs(r.URL.Query())
	if err != nil {
		h.fault(w, http.StatusBadRequest, err.Error())
		return
	}
	c := h.callerOf(r)
	all, project, err := h.visibility(r.Context(), c)
	if err != nil {
		h.authFault(w, err, c)
		return
	}
	ls, err := h.o.Store.Listeners(r.Context())
	if err != nil {
		h.log.Error("listeners: listing", "err", err)
		h.fault(w, http.StatusInternalServerError, "Cannot read the listeners.")
		return
	}
	now := h.o.Now()
	var page []view
	started := marker == ""
	for _, l := range ls {
		if !(all || (project != "" && l.ProjectID == project)) || expired(l, now) {
			continue
		}
		if !started {
			started = l.ID == marker
			continue
		}
		page = append(page, h.view(l))
		if limit > 0 && len(page) == limit {
			break
		}
	}
	if !started {
		h.fault(w, http.StatusBadRequest, fmt.Sprintf("Invalid marker %q: no such listener.", marker))
		return
	}
	out := listBody{Listeners: page}
	if out.Listeners == nil {
		out.Listeners = []view{}
	}
	if limit > 0 && len(page) == limit {
		out.Next = nextURL(r, limit, page[len(page)-1].ID)
	}
	writeJSON(w, http.StatusOK, out)
}

type listBody struct {
	Listeners []view `json:"listeners"`
	Next      string `json:"next,omitempty"`
}

// pageArgs reads limit and marker; any other argument is refused, as
// Mistral (WSME) does.
func pageArgs(q url.Values) (int, string, error) {
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if k != "limit" && k != "marker" {
			return 0, "", fmt.Errorf("Unknown argument: %q (want limit, marker).", k)
		}
	}
	limit := 0
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return 0, "", fmt.Errorf("Limit must be a positive integer, got %q.", truncate(s, 32))
		}
		limit = n
	}
	return limit, q.Get("marker"), nil
}

// nextURL is the next page's link on the address the client used (the
// proxy keeps the client's Host), as Mistral builds it.
func nextURL(r *http.Request, limit int, marker string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	q := url.Values{"limit": {strconv.Itoa(limit)}, "marker": {marker}}
	return scheme + "://" + r.Host + r.URL.Path + "?" + q.Encode()
}

// find returns listener id if the caller may see it; ok false answers
// 404, as for an id that does not exist (no probing of other projects).
func (h *Handler) find(w http.ResponseWriter, r *http.Request, id string) (store.Listener, bool) {
	c := h.callerOf(r)
	all, project, err := h.visibility(r.Context(), c)
	if err != nil {
		h.authFault(w, err, c)
		return store.Listener{}, false
	}
	l, err := h.o.Store.Listener(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.notFound(w, id)
		return store.Listener{}, false
	case err != nil:
		h.log.Error("listeners: reading", "err", err)
		h.fault(w, http.StatusInternalServerError, "Cannot read the listener.")
		return store.Listener{}, false
	}
	if all || (project != "" && project == l.ProjectID) {
		return l, true
	}
	if project == "" {
		// The caller's project is unknown: it may see the listener if its
		// token reads the listener's scope in the listener's project.
		g, err := h.o.Auth.Authorize(r.Context(), c.token, Scope{l.Scope, l.ScopeValue})
		if err == nil && g.ProjectID == l.ProjectID {
			return l, true
		}
	}
	h.notFound(w, id)
	return store.Listener{}, false
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request, id string) {
	if l, ok := h.find(w, r, id); ok {
		writeJSON(w, http.StatusOK, h.view(l))
	}
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request, id string) {
	if _, ok := h.find(w, r, id); !ok {
		return
	}
	ok, err := h.o.Store.DeleteListener(r.Context(), id)
	switch {
	case err != nil:
		h.log.Error("listeners: deleting", "err", err)
		h.fault(w, http.StatusInternalServerError, "Cannot delete the listener.")
	case !ok:
		h.notFound(w, id)
	default:
		h.o.Changed()
		w.WriteHeader(http.StatusNoContent)
	}
}

func (h *Handler) notFound(w http.ResponseWriter, id string) {
	h.fault(w, http.StatusNotFound, fmt.Sprintf("Listener not found [id=%s]", truncate(id, 64)))
}

func expired(l store.Listener, now time.Time) bool {
	return !l.ExpiresAt.IsZero() && !now.Before(l.ExpiresAt)
}

// view is a listener as the API shows it: never a header value or the
// secret (Secret is set in the create response only, when generated), and
// the URL with its credentials redacted.
type view struct {
	ID              string            `json:"id"`
	ExecutionID     string            `json:"execution_id,omitempty"`
	TaskExecutionID string            `json:"task_execution_id,omitempty"`
	WorkflowName    string            `json:"workflow_name,omitempty"`
	WorkbookName    string            `json:"workbook_name,omitempty"`
	Events          []string          `json:"events"`
	URL             string            `json:"url"`
	Method          string            `json:"method"`
	Headers         map[string]string `json:"headers"`
	Format          string            `json:"format"`
	ProjectID       string            `json:"project_id"`
	RootExecutionID *string           `json:"root_execution_id"`
	CreatedAt       string            `json:"created_at"`
	UpdatedAt       string            `json:"updated_at"`
	ExpiresAt       *string           `json:"expires_at"`
	Secret          string            `json:"secret,omitempty"`
}

func (h *Handler) view(l store.Listener) view {
	sp, err := h.o.Sealer.Open(l.ID, l.Spec)
	if err != nil {
		h.log.Warn("listeners: a listener's spec does not open (sealing key changed?)", "listener", l.ID)
		sp = Spec{URL: redact.Marker}
	}
	return viewOf(l, sp)
}

func viewOf(l store.Listener, sp Spec) view {
	v := view{
		ID: l.ID, Events: l.Events, URL: redact.URL(sp.URL), Method: sp.Method,
		Headers: map[string]string{}, Format: sp.Format, ProjectID: l.ProjectID,
		CreatedAt: l.CreatedAt.UTC().Format(event.TimeLayout), UpdatedAt: l.UpdatedAt.UTC().Format(event.TimeLayout),
	}
	if sp.URL == redact.Marker {
		v.URL = redact.Marker
	}
	for k := range sp.Headers {
		v.Headers[k] = redact.Marker
	}
	switch l.Scope {
	case ScopeExecution:
		v.ExecutionID = l.ScopeValue
	case ScopeTask:
		v.TaskExecutionID = l.ScopeValue
	case ScopeWorkflow:
		v.WorkflowName = l.ScopeValue
	case ScopeWorkbook:
		v.WorkbookName = l.ScopeValue
	}
	if l.RootID != "" {
		v.RootExecutionID = &l.RootID
	}
	if !l.ExpiresAt.IsZero() {
		s := l.ExpiresAt.UTC().Format(event.TimeLayout)
		v.ExpiresAt = &s
	}
	return v
}

func (h *Handler) fault(w http.ResponseWriter, status int, msg string) {
	code := "Client"
	if status >= 500 {
		code = "Server"
	}
	writeFault(w, status, code, msg)
}

// writeFault writes WSME's error body, as Mistral does.
func writeFault(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, struct {
		Code  string  `json:"faultcode"`
		Msg   string  `json:"faultstring"`
		Debug *string `json:"debuginfo"`
	}{code, msg, nil})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	// No HTML escaping: a next link's "&" stays readable, as Mistral's.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"faultcode": "Server", "faultstring": "encoding failed", "debuginfo": null}` + "\n")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
