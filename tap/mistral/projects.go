package mistral

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// InProject returns a client whose requests carry a token scoped to the
// Keystone project with that id: Mistral 15 lists tasks and workbooks of
// the token's project only, even for an admin. The client shares
// everything else with c (headers, LastContact) and is cached, so an idle
// project costs nothing and a project's token is fetched once per
// lifetime. The home project (the one Options.Keystone names) gets the
// home client: one token, not two. Without Keystone it returns the home
// client, whose static headers decide the project.
func (c *Client) InProject(id string) *Client {
	sh := c.shared
	home := sh.home
	if home.tokens == nil || id == "" || id == home.tokens.scopedProjectID() {
		return home
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	p := sh.projects[id]
	if p == nil {
		creds := sh.creds
		creds.ProjectID, creds.ProjectName = id, ""
		cp := *home
		cp.tokens = newTokenSource(creds, home.http, home.now)
		p = &cp
		sh.projects[id] = p
	}
	return p
}

// projectsTTL bounds how stale Projects' cached answer may be: the matcher's
// name lookups and the workbook resolver's refreshes ask often.
const projectsTTL = time.Minute

// Projects returns the projects the Keystone user can scope a token to
// (GET /v3/auth/projects, enabled ones only), as id → name, cached for a
// minute. Without Keystone it is an error.
func (c *Client) Projects(ctx context.Context) (map[string]string, error) {
	sh := c.shared
	if sh.home.tokens == nil {
		return nil, errors.New("mistral: listing projects needs Keystone")
	}
	sh.mu.Lock()
	if sh.names != nil && c.now().Sub(sh.namesAt) < projectsTTL {
		m := sh.names
		sh.mu.Unlock()
		return m, nil
	}
	sh.mu.Unlock()
	m, err := sh.home.listProjects(ctx)
	if err != nil {
		return nil, err
	}
	sh.mu.Lock()
	sh.names, sh.namesAt = m, c.now()
	sh.mu.Unlock()
	return m, nil
}

// ProjectID resolves a project name (or id) to its id from Projects' last
// answer; it never blocks on Keystone (ok is false until a Projects call
// succeeded).
func (c *Client) ProjectID(nameOrID string) (string, bool) {
	sh := c.shared
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.names[nameOrID]; ok {
		return nameOrID, true
	}
	for id, name := range sh.names {
		if name == nameOrID {
			return id, true
		}
	}
	return "", false
}

// listProjects asks Keystone with the home token, retrying once with a new
// token after a 401 (revoked).
func (c *Client) listProjects(ctx context.Context) (map[string]string, error) {
	u := strings.TrimSuffix(c.shared.creds.AuthURL, "/") + "/auth/projects"
	for attempt := 0; ; attempt++ {
		tok, err := c.tokens.token(ctx)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, fmt.Errorf("keystone: %w", err)
		}
		req.Header.Set("X-Auth-Token", tok)
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, fmt.Errorf("keystone: listing projects: %w", err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 {
			c.tokens.invalidate()
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("keystone: listing projects: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("keystone: listing projects: status %d", resp.StatusCode)
		}
		return decodeProjects(body)
	}
}

func decodeProjects(body []byte) (map[string]string, error) {
	var out struct {
		Projects []struct {
			ID, Name string
			Enabled  *bool
		}
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("keystone: listing projects: %w", err)
	}
	m := make(map[string]string, len(out.Projects))
	for _, pr := range out.Projects {
		if pr.ID != "" && (pr.Enabled == nil || *pr.Enabled) {
			m[pr.ID] = pr.Name
		}
	}
	if len(m) == 0 {
		return nil, errors.New("keystone: the user has a role in no project")
	}
	return m, nil
}
