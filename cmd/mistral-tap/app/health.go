package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mistral-tap/mistral-tap/cmd/mistral-tap/ops"
	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/tap/track"
)

// readiness lists /readyz's checks: a configuration is in force (always,
// once Run got this far; a failed reload keeps the previous one, which is
// still ready), the store's files are in place, sound and answering and
// it commits (commits: the dispatcher's StoreHealthy), the engine was
// reached recently, and the process is not draining.
func readiness(cfg *config.Config, upstream *url.URL, storeHealth func(context.Context) error, commits func() error, lastContact func() time.Time,
	cur *atomic.Pointer[pipeline], replicated bool, draining *atomic.Bool) []ops.Check {
	h := http.Header{}
	for k, v := range cfg.Watch.Headers {
		h.Set(k, v)
	}
	root := *upstream
	root.Path = strings.TrimSuffix(root.Path, "/") + "/"
	prober := ops.NewProber(root.String(), nil, 5*time.Second, h).Check
	engine := ops.Check{Name: "engine", Run: prober}
	if cfg.Watch.Interval > 0 {
		// The watcher backs off up to 30s while the engine is down, so a
		// shorter limit would flap; a healthy watcher polls every interval.
		// A replica that follows has no watcher and probes instead.
		recent := ops.RecentContact(lastContact, max(5*cfg.Watch.Interval, 45*time.Second), nil)
		engine.Run = func(ctx context.Context) error {
			p := cur.Load()
			if p == nil {
				return prober(ctx)
			}
			// Say why: "Keystone refused ..." or "engine unreachable".
			err := recent(ctx)
			if last := p.w.LastError(); err != nil && last != "" {
				return fmt.Errorf("%w; last poll: %s", err, last)
			}
			return err
		}
	}
	return []ops.Check{
		{Name: "config", Run: func(context.Context) error { return nil }},
		// A shared database's outage is reported but leaves every
		// replica ready: the proxy keeps serving and what happens
		// meanwhile is derived once the database is back.
		{Name: "store", Informational: replicated, Run: func(ctx context.Context) error {
			if err := storeHealth(ctx); err != nil {
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
	st durable
	d  *notifier.Dispatcher
}

// Checkpoint reads the watcher's position. Before the watcher ever saved
// one, it starts from the tracker's horizon (when mistral-tap first
// started) rather than from now: a leader elected after its predecessor
// died, or lost the database, before the first save must still poll what
// happened since then.
func (c watchCheckpoints) Checkpoint(ctx context.Context, key string) (string, error) {
	v, err := c.st.Checkpoint(ctx, key)
	if err != nil || v != "" || key != watchCheckpointKey {
		return v, err
	}
	h, err := track.LoadHorizon(ctx, c.st.Checkpoint)
	if err != nil || h.IsZero() {
		return "", err
	}
	return h.UTC().Format("2006-01-02 15:04:05"), nil
}

func (c watchCheckpoints) SetCheckpoint(ctx context.Context, key, value string) error {
	return c.d.SetCheckpoint(ctx, key, value)
}

// watchCheckpointKey is tap/watch's checkpoint key.
const watchCheckpointKey = "watch.updated_at"
