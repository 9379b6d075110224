package app

import (
	"net"
	"net/http"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/tap/watch/keystone"
)

// engineClient is the HTTP client for mistral-tap's own requests to
// Mistral (watcher polls, completion fetches, workbook definitions). It
// ignores HTTP_PROXY like the proxy's transport, and with
// watch.keystone configured it authenticates every request with a Keystone
// token that it renews before expiry.
func engineClient(cfg *config.Config) *http.Client {
	var rt http.RoundTripper = &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: cfg.Proxy.DialTimeout}).DialContext,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
	if ks := cfg.Watch.Keystone; ks.AuthURL != "" {
		src := keystone.New(keystone.Credentials{
			AuthURL: ks.AuthURL, Username: ks.Username, Password: ks.Password,
			UserDomainName: ks.UserDomainName, ProjectName: ks.ProjectName, ProjectDomainName: ks.ProjectDomainName,
		}, nil)
		rt = &keystone.Transport{Source: src, Base: rt}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: rt}
}
