package listeners

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Grant is what an Authorizer learned about a caller.
type Grant struct {
	// ProjectID is the project a listener is recorded in: the scoped
	// resource's project_id for Authorize, the caller's project for Caller.
	// "" with Admin: every project.
	ProjectID string
	// RootID is the root execution of an execution or task scope ("" for
	// workflow and workbook scopes).
	RootID string
	// Admin sees and manages every project's listeners: mistral-tap's admin
	// token, or Mistral with auth off (open as Mistral itself is).
	Admin bool
}

// Errors an Authorizer returns; the handler maps them to 401, 403 and 404.
// Anything else is a failure to ask (502).
var (
	ErrUnauthorized = errors.New("the token was refused")
	ErrForbidden    = errors.New("the token may not read this resource")
	ErrNotFound     = errors.New("not found")
	// ErrNoProject: the token is valid but its project could not be told
	// (no Keystone, and nothing in Mistral carries it).
	ErrNoProject = errors.New("the token's project could not be found")
)

// Authorizer decides who may register and see listeners. token is the
// caller's X-Auth-Token ("" when none was sent).
type Authorizer interface {
	// Authorize checks that token may read the scoped resource, and
	// returns its project and root execution.
	Authorize(ctx context.Context, token string, s Scope) (Grant, error)
	// Caller returns the project token is scoped to (for listing), or
	// Admin when Mistral needs no token at all.
	Caller(ctx context.Context, token string) (Grant, error)
}

// MistralOptions configure a MistralAuthorizer.
type MistralOptions struct {
	// URL is Mistral's API root, the part before /v2 (the proxy's
	// upstream). Required.
	URL string
	// Client sends the requests; nil is a client with a 10s timeout.
	Client *http.Client
	// KeystoneURL, when set (e.g. http://keystone:5000), lets Caller read
	// a token's project from Keystone (GET /v3/auth/tokens, the token
	// validating itself). Without it, Caller takes the project_id of the
	// first execution, workbook or private workflow the token can list.
	KeystoneURL string
}

// MistralAuthorizer asks Mistral, with the caller's own token, whether the
// caller can read the scoped resource: what Mistral lets the token read is
// exactly what the token may listen to.
type MistralAuthorizer struct {
	base     string
	keystone string
	c        *http.Client
	now      func() time.Time

	// authOnUntil caches the answer "Mistral refuses requests without a
	// token" for probeTTL, so that listing does not cost a refused request
	// every time. Auth being turned off is seen within probeTTL.
	mu          sync.Mutex
	authOnUntil time.Time
}

const probeTTL = 30 * time.Second

// NewMistralAuthorizer returns an Authorizer backed by Mistral's API.
func NewMistralAuthorizer(o MistralOptions) (*MistralAuthorizer, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("listeners: Mistral URL must be an absolute http(s) URL")
	}
	c := o.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	return &MistralAuthorizer{base: strings.TrimSuffix(o.URL, "/"), keystone: strings.TrimSuffix(o.KeystoneURL, "/"), c: c, now: time.Now}, nil
}

// resource is the part of Mistral's execution, task, workflow and workbook
// objects the authorizer reads.
type resource struct {
	ID                  string  `json:"id"`
	ProjectID           string  `json:"project_id"`
	RootExecutionID     *string `json:"root_execution_id"`
	WorkflowExecutionID string  `json:"workflow_execution_id"`
}

// Authorize implements Authorizer.
func (m *MistralAuthorizer) Authorize(ctx context.Context, token string, s Scope) (Grant, error) {
	esc := url.PathEscape(s.Value)
	switch s.Kind {
	case ScopeExecution:
		return m.execution(ctx, token, s.Value)
	case ScopeTask:
		var t resource
		if err := m.get(ctx, token, "/v2/tasks/"+esc, &t); err != nil {
			return Grant{}, fmt.Errorf("task execution %s: %w", s.Value, err)
		}
		g, err := m.execution(ctx, token, t.WorkflowExecutionID)
		if err != nil {
			return Grant{}, fmt.Errorf("task execution %s: %w", s.Value, err)
		}
		g.ProjectID = t.ProjectID
		return g, nil
	case ScopeWorkflow:
		return m.workflows(ctx, token, s.Value)
	case ScopeWorkbook:
		var wb resource
		if err := m.get(ctx, token, "/v2/workbooks/"+esc, &wb); err != nil {
			return Grant{}, fmt.Errorf("workbook %s: %w", s.Value, err)
		}
		return Grant{ProjectID: wb.ProjectID}, nil
	}
	return Grant{}, fmt.Errorf("scope %q: %w", s.Kind, ErrNotFound)
}

func (m *MistralAuthorizer) execution(ctx context.Context, token, id string) (Grant, error) {
	var x resource
	if err := m.get(ctx, token, "/v2/executions/"+url.PathEscape(id), &x); err != nil {
		return Grant{}, fmt.Errorf("execution %s: %w", id, err)
	}
	root := x.ID
	if x.RootExecutionID != nil && *x.RootExecutionID != "" {
		root = *x.RootExecutionID
	}
	return Grant{ProjectID: x.ProjectID, RootID: root}, nil
}

// workflows checks a workflow_name scope. A literal name must name a
// workflow the token can read; a glob needs only a token Mistral accepts,
// and its listener gets events of its own project only.
func (m *MistralAuthorizer) workflows(ctx context.Context, token, name string) (Grant, error) {
	if !strings.ContainsAny(name, `*?[\`) {
		var list struct{ Workflows []resource }
		if err := m.get(ctx, token, "/v2/workflows?"+url.Values{"name": {name}, "limit": {"1"}}.Encode(), &list); err != nil {
			return Grant{}, fmt.Errorf("workflow %s: %w", name, err)
		}
		if len(list.Workflows) == 0 {
			return Grant{}, fmt.Errorf("workflow %s: %w", name, ErrNotFound)
		}
		return Grant{ProjectID: list.Workflows[0].ProjectID}, nil
	}
	g, err := m.Caller(ctx, token)
	if err != nil {
		return Grant{}, fmt.Errorf("workflow glob %s: %w", name, err)
	}
	return Grant{ProjectID: g.ProjectID}, nil
}

// Caller implements Authorizer. A request without any token that Mistral
// answers means auth is off: everyone is admin, as in Mistral.
func (m *MistralAuthorizer) Caller(ctx context.Context, token string) (Grant, error) {
	if open, err := m.authOff(ctx); err != nil {
		return Grant{}, err
	} else if open {
		return Grant{Admin: true}, nil
	}
	switch {
	case token == "":
		return Grant{}, ErrUnauthorized
	case m.keystone != "":
		return m.keystoneProject(ctx, token)
	}
	// A list page has "next" (a string) beside the list: decode the lists
	// by name.
	var list struct{ Executions, Workbooks, Workflows []resource }
	for _, path := range []string{"/v2/executions?limit=1", "/v2/workbooks?limit=1", "/v2/workflows?limit=1&scope=private"} {
		if err := m.get(ctx, token, path, &list); err != nil {
			return Grant{}, err
		}
		for _, l := range [][]resource{list.Executions, list.Workbooks, list.Workflows} {
			if len(l) > 0 && l[0].ProjectID != "" {
				return Grant{ProjectID: l[0].ProjectID}, nil
			}
		}
	}
	return Grant{}, ErrNoProject
}

// authOff asks Mistral for one execution without a token: an answer means
// its auth is off.
func (m *MistralAuthorizer) authOff(ctx context.Context) (bool, error) {
	m.mu.Lock()
	on := m.now().Before(m.authOnUntil)
	m.mu.Unlock()
	if on {
		return false, nil
	}
	var probe struct{ Executions []resource }
	err := m.get(ctx, "", "/v2/executions?limit=1", &probe)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrUnauthorized), errors.Is(err, ErrForbidden):
		m.mu.Lock()
		m.authOnUntil = m.now().Add(probeTTL)
		m.mu.Unlock()
		return false, nil
	}
	return false, err
}

func (m *MistralAuthorizer) keystoneProject(ctx context.Context, token string) (Grant, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.keystone+"/v3/auth/tokens?nocatalog", nil)
	if err != nil {
		return Grant{}, fmt.Errorf("keystone: %w", err)
	}
	req.Header.Set("X-Auth-Token", token)
	req.Header.Set("X-Subject-Token", token)
	var body struct {
		Token struct {
			Project struct{ ID string } `json:"project"`
		} `json:"token"`
	}
	if err := m.do(req, &body); err != nil {
		return Grant{}, fmt.Errorf("keystone: %w", err)
	}
	if body.Token.Project.ID == "" {
		return Grant{}, ErrNoProject
	}
	return Grant{ProjectID: body.Token.Project.ID}, nil
}

func (m *MistralAuthorizer) get(ctx context.Context, token, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.base+path, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	return m.do(req, out)
}

// do sends req and decodes a 200 answer into out. Errors never quote the
// token; a refusal is one of the Err* values.
func (m *MistralAuthorizer) do(req *http.Request, out any) error {
	req.Header.Set("Accept", "application/json")
	resp, err := m.c.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("asking %s: %w", req.URL.Host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading %s's answer: %w", req.URL.Host, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return ErrUnauthorized
	case resp.StatusCode == http.StatusForbidden:
		return ErrForbidden
	case resp.StatusCode == http.StatusNotFound:
		return ErrNotFound
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%s answered %d", req.URL.Host, resp.StatusCode)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s answered with a body that is not the expected JSON: %w", req.URL.Host, err)
	}
	return nil
}
