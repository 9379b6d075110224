package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/mistral-tap/mistral-tap/cmd/mistral-tap/ops"
	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/tap/mistral"
	"github.com/mistral-tap/mistral-tap/tap/track"
	"github.com/mistral-tap/mistral-tap/tap/watch"
)

// pipeline is the deriving half of mistral-tap: the watcher and the
// tracker, seeded from the store. A single instance builds it once; with
// PostgreSQL the leader builds one per term (after a takeover it loads
// what the previous leader committed).
type pipeline struct {
	w  *watch.Watcher
	tr *track.Tracker
}

type pipelineBuilder struct {
	cfg     *config.Config
	st      durable
	disp    *notifier.Dispatcher
	engine  *mistral.Client
	metrics *ops.Metrics
	log     *slog.Logger
}

// build loads the tracker's states and horizon and wires a tracker feeding
// the dispatcher and a watcher observing into observer(tracker) (nil: the
// tracker, counted).
func (b pipelineBuilder) build(ctx context.Context, observer func(*track.Tracker) watch.Observer) (*pipeline, error) {
	cfg, st := b.cfg, b.st
	states, err := st.LoadStates(ctx)
	if err != nil {
		return nil, fmt.Errorf("app: loading tracker state: %w", err)
	}
	horizon, err := track.LoadHorizon(ctx, st.Checkpoint)
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	var projects watch.Projects
	if perProject(cfg) {
		projects = watchProjects{projectEngines{b.engine}}
	}
	tr, err := track.New(track.Options{Sink: b.metrics.CountEvents(b.disp), Fetcher: fetcherFor(cfg, b.engine), States: states,
		Horizon: horizon, Logger: b.log.With("component", "track"), Retention: cfg.Tracker.Retention})
	if err != nil {
		return nil, fmt.Errorf("app: tracker: %w", err)
	}
	if horizon.IsZero() {
		// First start: remember from when on entities count as new, so a
		// restart after downtime replays what happened meanwhile rather
		// than treating it as history.
		if err := st.SetCheckpoint(ctx, track.HorizonCheckpoint, tr.Horizon().Format(time.RFC3339)); err != nil {
			return nil, fmt.Errorf("app: saving tracker horizon: %w", err)
		}
	}
	var obs watch.Observer = b.metrics.CountObservations(tr)
	if observer != nil {
		obs = observer(tr)
	}
	w, err := watch.New(watch.Options{
		Engine: b.engine, Interval: cfg.Watch.Interval, Replay: cfg.Watch.Replay, AllProjects: cfg.Watch.AllProjects, Projects: projects,
		Observer: obs, Checkpoints: watchCheckpoints{b.st, b.disp}, Logger: b.log.With("component", "watch"),
	})
	if err != nil {
		return nil, fmt.Errorf("app: watcher: %w", err)
	}
	return &pipeline{w: w, tr: tr}, nil
}

// fetcherFor is how the tracker completes tapped observations, and, with
// replicas, how the replica that tapped an execution's end fetches its tasks
// before forwarding it (ha.ForwarderOptions.Completer).
func fetcherFor(cfg *config.Config, engine *mistral.Client) track.Fetcher {
	if perProject(cfg) {
		return track.FetchAcrossProjects(engine, trackProjects{projectEngines{engine}})
	}
	return track.FetchFrom(engine)
}
