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
	// ProjectDomainName is the project's domain. Default "Default".
	ProjectDomainName string
}

// tokenSource fetches and caches tokens. It is safe for concurrent use.
type tokenSource struct {
	creds  Keystone
	client *http.Client
	now    func() time.Time

	mu      sync.Mutex
	cached  string
	renewAt time.Time
}

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
	tok, expires, err := s.fetch(ctx)
	if err != nil {
		return "", err
	}
	now := s.now()
	life := expires.Sub(now)
	renew := now.Add(life * 8 / 10)
	if early := expires.Add(-5 * time.Minute); early.Before(renew) && early.After(now) {
		renew = early
	}
	s.cached, s.renewAt = tok, renew
	return tok, nil
}

// invalidate drops the cached token (Mistral said 401).
func (s *tokenSource) invalidate() {
	s.mu.Lock()
	s.cached = ""
	s.mu.Unlock()
}

func (s *tokenSource) fetch(ctx context.Context) (string, time.Time, error) {
	var body struct {
		Auth struct {
			Identity struct {
				Methods  []string `json:"methods"`
				Password struct {
					User struct {
						Name     string `json:"name"`
						Password string `json:"password"`
						Domain   struct {
							Name string `json:"name"`
						} `json:"domain"`
					} `json:"user"`
				} `json:"password"`
			} `json:"identity"`
			Scope struct {
				Project struct {
					Name   string `json:"name"`
					Domain struct {
						Name string `json:"name"`
					} `json:"domain"`
				} `json:"project"`
			} `json:"scope"`
		} `json:"auth"`
	}
	a := &body.Auth
	a.Identity.Methods = []string{"password"}
	a.Identity.Password.User.Name = s.creds.Username
	a.Identity.Password.User.Password = s.creds.Password
	a.Identity.Password.User.Domain.Name = s.creds.UserDomainName
	a.Scope.Project.Name = s.creds.ProjectName
	a.Scope.Project.Domain.Name = s.creds.ProjectDomainName
	b, err := json.Marshal(body)
	if err != nil {
		return "", time.Time{}, err
	}
	u := strings.TrimSuffix(s.creds.AuthURL, "/") + "/auth/tokens"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("keystone: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("keystone: requesting a token: %w", err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		// Keystone's error body names the problem and never echoes the
		// password.
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		_ = json.Unmarshal(rb, &e)
		return "", time.Time{}, fmt.Errorf("keystone: token request for user %q answered %d: %s", s.creds.Username, resp.StatusCode, e.Error.Message)
	}
	tok := resp.Header.Get("X-Subject-Token")
	if tok == "" {
		return "", time.Time{}, errors.New("keystone: response has no X-Subject-Token header")
	}
	var t struct {
		Token struct {
			ExpiresAt time.Time `json:"expires_at"`
		} `json:"token"`
	}
	if err := json.Unmarshal(rb, &t); err != nil || t.Token.ExpiresAt.IsZero() {
		// Without an expiry, renew hourly (Keystone's default lifetime).
		return tok, s.now().Add(time.Hour), nil
	}
	return tok, t.Token.ExpiresAt, nil
}
