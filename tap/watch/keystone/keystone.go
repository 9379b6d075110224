// Package keystone authenticates mistral-tap's own requests to Mistral
// (the watcher's polls, the workbook resolver) against Keystone v3 with
// password credentials, for deployments that run Mistral with auth on.
//
// Tokens are fetched lazily, cached, and renewed before they expire (at
// the earlier of 80% of their lifetime and five minutes before expiry); a
// 401 from Mistral drops the cached token and the request is retried once
// with a fresh one, which covers tokens revoked early.
package keystone

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

// Credentials are Keystone v3 password credentials scoped to a project.
type Credentials struct {
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

// Source fetches and caches tokens. It is safe for concurrent use.
type Source struct {
	creds  Credentials
	client *http.Client
	now    func() time.Time

	mu      sync.Mutex
	token   string
	renewAt time.Time
}

// New returns a Source. client performs the Keystone requests (nil: a client
// with a 30s timeout).
func New(c Credentials, client *http.Client) *Source {
	if c.UserDomainName == "" {
		c.UserDomainName = "Default"
	}
	if c.ProjectDomainName == "" {
		c.ProjectDomainName = "Default"
	}
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}
	}
	return &Source{creds: c, client: client, now: time.Now}
}

// Token returns a valid token, fetching a new one when the cached one is
// due for renewal.
func (s *Source) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" && s.now().Before(s.renewAt) {
		return s.token, nil
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
	s.token, s.renewAt = tok, renew
	return tok, nil
}

// Invalidate drops the cached token (Mistral said 401).
func (s *Source) Invalidate() {
	s.mu.Lock()
	s.token = ""
	s.mu.Unlock()
}

func (s *Source) fetch(ctx context.Context) (string, time.Time, error) {
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

// Transport adds X-Auth-Token from Source to every request and retries a
// request once with a fresh token after a 401.
type Transport struct {
	Source *Source
	// Base performs the requests; nil is http.DefaultTransport.
	Base http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := t.try(base, req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || (req.Body != nil && req.GetBody == nil) {
		return resp, err
	}
	resp.Body.Close()
	t.Source.Invalidate()
	if req.GetBody != nil {
		b, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		req = req.Clone(req.Context())
		req.Body = b
	}
	return t.try(base, req)
}

func (t *Transport) try(base http.RoundTripper, req *http.Request) (*http.Response, error) {
	tok, err := t.Source.Token(req.Context())
	if err != nil {
		return nil, err
	}
	r := req.Clone(req.Context())
	r.Header.Set("X-Auth-Token", tok)
	return base.RoundTrip(r)
}
