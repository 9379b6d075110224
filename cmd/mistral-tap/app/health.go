package app

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mistral-tap/mistral-tap/cmd/mistral-tap/ops"
	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/notifier/store"
)

// readiness lists /readyz's checks: a configuration is in force (always,
// once Run got this far; a failed reload keeps the previous one, which is
// still ready), the store's files are in place, sound and answering and
// it commits (commits: the dispatcher's StoreHealthy), the engine was
// reached recently, and the process is not draining.
func readiness(cfg *config.Config, upstream *url.URL, st *store.Store, commits func() error, lastContact func() time.Time, draining *atomic.Bool) []ops.Check {
	engine := ops.Check{Name: "engine"}
	if cfg.Watch.Interval > 0 {
		// The watcher backs off up to 30s while the engine is down, so a
		// shorter limit would flap; a healthy watcher polls every interval.
		engine.Run = ops.RecentContact(lastContact, max(5*cfg.Watch.Interval, 45*time.Second), nil)
	} else {
		h := http.Header{}
		for k, v := range cfg.Watch.Headers {
			h.Set(k, v)
		}
		root := *upstream
		root.Path = strings.TrimSuffix(root.Path, "/") + "/"
		engine.Run = ops.NewProber(root.String(), nil, 5*time.Second, h).Check
	}
	return []ops.Check{
		{Name: "config", Run: func(context.Context) error { return nil }},
		{Name: "store", Run: func(ctx context.Context) error {
			if err := st.Health(ctx); err != nil {
				return err
			}
			return commits()
		}},
		engine,
		{Name: "shutdown", Run: func(context.Context) error {
			if draining.Load() {
				return errors.New("draining")
			}
			return nil
		}},
	}
}

// watchCheckpoints reads the watcher's checkpoint from the store and saves
// it through the dispatcher, in order with the tracker's deferred states
// (notifier.Options.StatesDelay): the checkpoint never becomes durable
// ahead of what the observations before it produced.
type watchCheckpoints struct {
	*store.Store
	d *notifier.Dispatcher
}

func (c watchCheckpoints) SetCheckpoint(ctx context.Context, key, value string) error {
	return c.d.SetCheckpoint(ctx, key, value)
}
