package mistral

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Keystone holds Keystone v3 password credentials scoped to a project,
// for deployments that run Mistral with auth on.
type Keystone struct {
	// AuthURL is Keystone's v3 endpoint (e.g. http://keystone:5000/v3).
	AuthURL string
	// Username and Password of the user; Password is a secret.
	Username, Password string
	// UserDomainName is the user's domain. Default "Default".
	UserDomainName string
	// ProjectName scopes the token.
	ProjectName string
	// ProjectID scopes the token by id instead (takes precedence over
	// ProjectName). Default "" (ProjectName).
	ProjectID string
	// ProjectDomainName is the project's domain. Default "Default".
	ProjectDomainName string
}

// tokenSource fetches and caches tokens. It is safe for concurrent use.
type tokenSource struct {
	creds  Keystone
	client *http.Client
	now    func() time.Time

	mu        sync.Mutex
	cached    string
	renewAt   time.Time
	failErr   error     // Keystone's last refusal, answered until failUntil
	failUntil time.Time // no request to Keystone before this
	failWait  time.Duration
	fetches   int    // token requests sent to Keystone
	scopedID  string // the project id Keystone scoped the last token to
}

// KeystoneError is Keystone refusing a token request.
type KeystoneError struct {
	User, Project string
	Status        int
	Message       string
}

func (e *KeystoneError) Error() string {
	return fmt.Sprintf("keystone: token request for user %q in project %q answered %d: %s", e.User, e.Project, e.Status, e.Message)
}

// NoAccess reports whether Keystone refused the credentials themselves
// (401, 403, 404: wrong password, no role in the project, no such project)
// rather than failing: retrying at once cannot help.
func (e *KeystoneError) NoAccess() bool {
	return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden || e.Status == http.StatusNotFound
}

// Refusal back-off: the first and the longest wait before asking Keystone
// again after it refused the credentials.
const (
	firstRefusalWait = 10 * time.Second
	maxRefusalWait   = 5 * time.Minute
)

// newTokenSource returns a tokenSource; client performs the Keystone
// requests.
func newTokenSource(c Keystone, client *http.Client, now func() time.Time) *tokenSource {
	if c.UserDomainName == "" {
		c.UserDomainName = "Default"
	}
	if c.ProjectDomainName == "" {
		c.ProjectDomainName = "Default"
	}
	return &tokenSource{creds: c, client: client, now: now}
}

// token returns a valid token, fetching a new one when the cached one is
// due for renewal.
func (s *tokenSource) token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cached != "" && s.now().Before(s.renewAt) {
		return s.cached, nil
	}
	if s.failErr != nil && s.now().Before(s.failUntil) {
		return "", s.failErr
	}
	s.fetches++
	tok, expires, err := s.fetch(ctx)
	if err != nil {
		s.refused(err)
		return "", err
	}
	s.failErr, s.failWait = nil, 0
	now := s.now()
	life := expires.Sub(now)
	renew := now.Add(life * 8 / 10)
	if early := expires.Add(-5 * time.Minute); early.Before(renew) && early.After(now) {
		renew = early
	}
	s.cached, s.renewAt = tok, renew
	return tok, nil
}

// refused remembers a refusal (see the package doc); called with s.mu held.
func (s *tokenSource) refused(err error) {
	var ke *KeystoneError
	if !errors.As(err, &ke) || !ke.NoAccess() {
		return // Keystone down or failing: the caller's own back-off applies
	}
	s.failWait = min(max(2*s.failWait, firstRefusalWait), maxRefusalWait)
	s.failErr, s.failUntil = err, s.now().Add(s.failWait)
}

// scopedProjectID is the id of the project the token is scoped to, known
// once Keystone issued one ("" before).
func (s *tokenSource) scopedProjectID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.scopedID
}

// invalidate drops the cached token (Mistral said 401).
func (s *tokenSource) invalidate() {
	s.mu.Lock()
	s.cached = ""
	s.mu.Unlock()
}

// fetch asks Keystone for a token and returns it with the time it
// expires, and records the project it is scoped to. Called with s.mu held.
func (s *tokenSource) fetch(ctx context.Context) (string, time.Time, error) {
	b, err := json.Marshal(s.authRequest())
	if err != nil {
		return "", time.Time{}, err
	}
	status, header, rb, err := s.post(ctx, b)
	if err != nil {
		return "", time.Time{}, err
	}
	if status != http.StatusCreated && status != http.StatusOK {
		return "", time.Time{}, s.refusal(status, rb)
	}
	tok := header.Get("X-Subject-Token")
	if tok == "" {
		return "", time.Time{}, errors.New("keystone: response has no X-Subject-Token header")
	}
	expires, projectID, err := parseToken(rb)
	if projectID != "" {
		s.scopedID = projectID
	}
	if err != nil || expires.IsZero() {
		// Without an expiry, renew hourly (Keystone's default lifetime).
		return tok, s.now().Add(time.Hour), nil
	}
	return tok, expires, nil
}

// authRequest is the body of Keystone's POST /v3/auth/tokens for the
// password method.
type authRequest struct {
	Auth struct {
		Identity struct {
			Methods  []string `json:"methods"`
			Password struct {
				User struct {
					Name     string     `json:"name"`
					Password string     `json:"password"`
					Domain   domainName `json:"domain"`
				} `json:"user"`
			} `json:"password"`
		} `json:"identity"`
		Scope struct {
			Project struct {
				ID     string      `json:"id,omitempty"`
				Name   string      `json:"name,omitempty"`
				Domain *domainName `json:"domain,omitempty"`
			} `json:"project"`
		} `json:"scope"`
	} `json:"auth"`
}

type domainName struct {
	Name string `json:"name"`
}

// authRequest scopes the token by project id when there is one: an id is
// unique, while a name needs its domain.
func (s *tokenSource) authRequest() *authRequest {
	var body authRequest
	a := &body.Auth
	a.Identity.Methods = []string{"password"}
	a.Identity.Password.User.Name = s.creds.Username
	a.Identity.Password.User.Password = s.creds.Password
	a.Identity.Password.User.Domain.Name = s.creds.UserDomainName
	if s.creds.ProjectID != "" {
		a.Scope.Project.ID = s.creds.ProjectID
	} else {
		a.Scope.Project.Name = s.creds.ProjectName
		a.Scope.Project.Domain = &domainName{s.creds.ProjectDomainName}
	}
	return &body
}

// post sends the token request and returns Keystone's answer, its body
// read up to 1 MiB (a token body with a large catalog stays well below).
// Errors never include the request body, which holds the password.
func (s *tokenSource) post(ctx context.Context, body []byte) (int, http.Header, []byte, error) {
	u := strings.TrimSuffix(s.creds.AuthURL, "/") + "/auth/tokens"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("keystone: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("keystone: requesting a token: %w", err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header, rb, nil
}

// refusal is Keystone's answer other than a token, as a KeystoneError.
// Keystone's error body names the problem and never echoes the password.
func (s *tokenSource) refusal(status int, body []byte) error {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return &KeystoneError{User: s.creds.Username, Project: s.project(), Status: status, Message: e.Error.Message}
}

// parseToken reads what the token body says of the token: when it
// expires and the project it is scoped to. A body that does not decode
// in full may still yield the project (encoding/json keeps the fields it
// decoded before a mistyped one), which fetch records all the same.
func parseToken(body []byte) (time.Time, string, error) {
	var t struct {
		Token struct {
			ExpiresAt time.Time `json:"expires_at"`
			Project   struct {
				ID string `json:"id"`
			} `json:"project"`
		} `json:"token"`
	}
	err := json.Unmarshal(body, &t)
	return t.Token.ExpiresAt, t.Token.Project.ID, err
}

func (s *tokenSource) project() string {
	if s.creds.ProjectID != "" {
		return s.creds.ProjectID
	}
	return s.creds.ProjectName
}
