package fakemistral

import "net/http"

// Token is what an X-Auth-Token stands for when Options.Tokens turns auth
// on, as Keystone's token validation tells Mistral.
type Token struct {
	// Project is the token's project id; what the caller creates belongs
	// to it, and it sees only its own project's resources.
	Project string
	// Admin sees every project's resources by id, and every project's in
	// lists with all_projects=true (Mistral's is_admin context).
	Admin bool
}

// authenticate sets e.viewer for the request being served, or answers 401
// as Mistral's keystonemiddleware does. Caller holds e.mu, and every
// handler runs under it, so one viewer at a time is the request's.
func (e *Engine) authenticate(w http.ResponseWriter, r *http.Request) bool {
	e.viewer, e.allProjects = nil, false
	if e.tokens == nil {
		return true
	}
	tok, ok := e.tokens[r.Header.Get("X-Auth-Token")]
	if !ok || r.Header.Get("X-Auth-Token") == "" {
		writeJSON(w, 401, obj{{"error", obj{{"code", 401}, {"title", "Unauthorized"},
			{"message", "The request you have made requires authentication."}}}})
		return false
	}
	e.viewer = &tok
	e.allProjects = tok.Admin && r.URL.Query().Get("all_projects") == "true"
	return true
}

// viewerProject is the project the current request acts in ("" with auth
// off: the default project).
func (e *Engine) viewerProject() string {
	if e.viewer == nil {
		return ""
	}
	return e.viewer.Project
}

// sees reports whether the current request may see a resource of project
// ("" = the default project, or a definition made through the Go API).
// byID is a lookup by id or name, which an admin may make across projects;
// a list needs all_projects=true for that.
func (e *Engine) sees(project string, byID bool) bool {
	v := e.viewer
	switch {
	case v == nil:
		return true
	case v.Admin && (byID || e.allProjects):
		return true
	}
	// The default project's resources (made through the Go API: Start,
	// DefineWorkflow) are shared with every project, as public workflows
	// are in Mistral, so that tests may mix the Go API with auth-on HTTP.
	return project == "" || project == v.Project
}

// definedFor reports whether a definition of project owner may be used by
// an execution of project.
func definedFor(owner, project string) bool { return owner == "" || owner == project }

// ownerOr is a definition's project_id as rendered.
func ownerOr(project string) string {
	if project == "" {
		return projectID
	}
	return project
}

func (ex *execution) projectID() string { return ownerOr(ex.project) }
