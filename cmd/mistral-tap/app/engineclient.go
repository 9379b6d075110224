package app

import (
	"fmt"
	"net/url"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/tap/mistral"
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
