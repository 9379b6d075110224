package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/mistral-tap/mistral-tap/cmd/mistral-tap/ops"
	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier"
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
	cfg      *config.Config
	upstream *url.URL
	st       durable
	disp     *notifier.Dispatcher
	engine   *http.Client
	metrics  *ops.Metrics
	log      *slog.Logger
}

// build loads the tracker's states and horizon and wires a watcher and a
// tracker feeding the dispatcher.
func (b pipelineBuilder) build(ctx context.Context) (*pipeline, error) {
	cfg, st := b.cfg, b.st
	states, err := st.LoadStates(ctx)
	if err != nil {
		return nil, fmt.Errorf("app: loading tracker state: %w", err)
	}
	horizon, err := track.LoadHorizon(ctx, st.Checkpoint)
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	w, err := watch.New(watch.Options{
		Upstream: b.upstream, Interval: cfg.Watch.Interval, PageSize: cfg.Watch.PageSize,
		Replay: cfg.Watch.Replay, AllProjects: cfg.Watch.AllProjects, Headers: cfg.Watch.Headers,
		Checkpoints: watchCheckpoints{st, b.disp}, Client: b.engine, Logger: b.log.With("component", "watch"),
	})
	if err != nil {
		return nil, fmt.Errorf("app: watcher: %w", err)
	}
	tr, err := track.New(track.Options{Sink: b.metrics.CountEvents(b.disp), Fetcher: w, States: states, Horizon: horizon,
		Logger: b.log.With("component", "track"), Retention: cfg.Tracker.Retention})
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
	w.SetObserver(b.metrics.CountObservations(tr))
	return &pipeline{w: w, tr: tr}, nil
}
