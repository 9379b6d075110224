package config

import (
	"regexp"
	"strconv"
	"strings"
)

// A callback's `project` filter (Callback.Project) selects the events of
// one Keystone project, by id or by name. An id is what every event
// carries (project_id, the execution's own project); a name is resolved to
// an id through Keystone, so it needs watch.keystone, and the service user
// must have a role in that project (which per-project task polling needs
// anyway).

// projectIDPattern is the shape of a Keystone project id: 32 lower-case hex
// digits (a UUID without dashes). Anything else is taken for a name.
var projectIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// IsProjectID reports whether v looks like a Keystone project id rather
// than a name.
func IsProjectID(v string) bool { return projectIDPattern.MatchString(v) }

func (c *Config) validateProject(p *problems, i int) {
	cb := &c.Callbacks[i]
	if cb.Project == "" {
		return
	}
	label := CallbackLabel(cb, i)
	path := "callbacks." + strconv.Itoa(i) + ".project"
	switch {
	case strings.TrimSpace(cb.Project) != cb.Project:
		p.add(FieldError{Path: path, Callback: label, Field: "project", Value: cb.Project, Msg: "must not start or end with spaces"})
	case !IsProjectID(cb.Project) && c.Watch.Keystone.AuthURL == "":
		p.add(FieldError{Path: path, Callback: label, Field: "project", Value: cb.Project,
			Msg: "is a project name, which needs watch.keystone to be resolved; give the project id (32 hex digits) or configure watch.keystone"})
	}
}
