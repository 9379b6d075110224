package app

import (
	"context"
	"fmt"
	"net/url"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/matcher/workbooks"
	"github.com/mistral-tap/mistral-tap/tap/mistral"
	"github.com/mistral-tap/mistral-tap/tap/track"
	"github.com/mistral-tap/mistral-tap/tap/watch"
)

// engineClient is the one client (and the one Keystone token) for
// mistral-tap's own requests to Mistral: the watcher's polls, the tracker's
// completion fetches and the workbook definitions.
func engineClient(cfg *config.Config, upstream *url.URL) (*mistral.Client, error) {
	ks := cfg.Watch.Keystone
	c, err := mistral.New(mistral.Options{
		BaseURL: upstream, Headers: cfg.Watch.Headers, PageSize: cfg.Watch.PageSize, DialTimeout: cfg.Proxy.DialTimeout,
		Keystone: mistral.Keystone{
			AuthURL: ks.AuthURL, Username: ks.Username, Password: ks.Password,
			UserDomainName: ks.UserDomainName, ProjectName: ks.ProjectName, ProjectDomainName: ks.ProjectDomainName,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("app: engine client: %w", err)
	}
	return c, nil
}

// perProject reports whether the engine client can scope a token to each
// project: watch.all_projects with watch.keystone. Without Keystone,
// Mistral lists tasks and workbooks of the token's own project only.
func perProject(cfg *config.Config) bool {
	return cfg.Watch.AllProjects && cfg.Watch.Keystone.AuthURL != ""
}

// projectEngines adapts mistral.Client.InProject to the consumers' own
// interfaces (Go has no covariant results).
type projectEngines struct{ c *mistral.Client }

// watchProjects, trackProjects and workbookProjects are p as each consumer
// asks for it.
type (
	watchProjects    struct{ projectEngines }
	trackProjects    struct{ projectEngines }
	workbookProjects struct{ projectEngines }
)

func (p watchProjects) InProject(id string) watch.Engine        { return p.c.InProject(id) }
func (p trackProjects) InProject(id string) track.Engine        { return p.c.InProject(id) }
func (p workbookProjects) InProject(id string) workbooks.Engine { return p.c.InProject(id) }

func (p workbookProjects) Projects(ctx context.Context) (map[string]string, error) {
	return p.c.Projects(ctx)
}

func (p workbookProjects) ProjectID(nameOrID string) (string, bool) { return p.c.ProjectID(nameOrID) }
