package app

import (
	"fmt"
	"log/slog"
	"net/url"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/matcher"
	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/notifier/payload"
)

// Routing builds the dispatcher's routing for a configuration.
func Routing(cfg *config.Config, wb matcher.WorkbookIndex) (*notifier.Routing, error) {
	m, err := matcher.New(cfg.Callbacks, wb)
	if err != nil {
		return nil, fmt.Errorf("app: callbacks: %w", err)
	}
	r := &notifier.Routing{Matcher: m, Routes: map[string]notifier.Route{}, Delivery: cfg.Delivery}
	for _, cb := range cfg.Callbacks {
		f, err := payload.New(payload.Spec{
			Format: cb.Format, Method: cb.Method, Headers: cb.Headers, Template: cb.Template,
			CloudEventsMode: cb.CloudEvents.Mode, Source: ceSource(cfg, cb),
			URL: cb.URLTemplate(), RoutingKey: routingKey(&cb),
		})
		if err != nil {
			return nil, fmt.Errorf("app: callback %q: %w", cb.Name, err)
		}
		var secrets []string
		if cb.Secret != "" {
			secrets = append(secrets, cb.Secret)
		}
		for _, s := range cb.Secrets {
			if s != "" {
				secrets = append(secrets, s)
			}
		}
		r.Routes[cb.Name] = notifier.Route{Callback: cb, Format: f, Secrets: secrets}
	}
	return r, nil
}

func ceSource(cfg *config.Config, cb config.Callback) string {
	if cb.CloudEvents.Source != "" {
		return cb.CloudEvents.Source
	}
	if u, err := url.Parse(cfg.Upstream); err == nil {
		return "mistral-tap://" + u.Host
	}
	return ""
}

// apply swaps in a reloaded configuration: callbacks, delivery settings
// and the log level change live; the rest is reported as needing a restart.
func apply(old, nc *config.Config, wb matcher.WorkbookIndex, disp *notifier.Dispatcher, lv *slog.LevelVar, log *slog.Logger) error {
	routing, err := Routing(nc, wb)
	if err != nil {
		return err
	}
	disp.SetRouting(routing)
	if lv != nil {
		var l slog.Level
		if err := l.UnmarshalText([]byte(nc.Log.Level)); err == nil {
			lv.Set(l)
		}
	}
	if keys := config.RestartRequired(old, nc); len(keys) > 0 {
		log.Warn("configuration reloaded; some settings need a restart to apply", "keys", keys)
	} else {
		log.Info("configuration reloaded", "callbacks", len(nc.Callbacks))
	}
	return nil
}
