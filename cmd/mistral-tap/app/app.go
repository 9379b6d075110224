// Package app wires mistral-tap's components into one process: the tapping
// proxy, the watcher, the tracker, the durable dispatcher and the config
// reloader. cmd/mistral-tap only maps flags and signals onto Run, so tests
// can run the whole product in-process.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mistral-tap/mistral-tap/cmd/mistral-tap/ops"
	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/matcher"
	"github.com/mistral-tap/mistral-tap/matcher/workbooks"
	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/notifier/admin"
	"github.com/mistral-tap/mistral-tap/notifier/payload"
	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/tap/event"
	"github.com/mistral-tap/mistral-tap/tap/proxy"
	"github.com/mistral-tap/mistral-tap/tap/track"
	"github.com/mistral-tap/mistral-tap/tap/watch"
)

// Options configure Run.
type Options struct {
	// Config is the configuration to start with. Required.
	Config *config.Config
	// Source, when it names a file, is watched and reloaded live.
	Source config.Source
	// Logger; nil discards. Its level may be LevelVar (see LogLevel).
	Logger *slog.Logger
	// LogLevel, when set, is adjusted on reload (log.level applies live).
	LogLevel *slog.LevelVar
	// Version is reported in User-Agent and `version`.
	Version string
	// Listener, when set, is used for the proxy instead of listening on
	// Config.Listen (tests pass a pre-bound loopback listener).
	Listener net.Listener
	// Ready, when set, is called with the proxy's address once it accepts
	// connections.
	Ready func(proxyAddr string)
	// Reload, when set, delivers manual reload requests (SIGHUP).
	Reload <-chan struct{}
}

// trackerCheckpoint keeps the tracker's horizon across restarts.
const trackerCheckpoint = "tracker.horizon"

// Run starts every component and blocks until ctx ends, then shuts down in
// dependency order: stop accepting proxy traffic and finish in-flight
// requests, stop the watcher, let the tracker record what it has queued,
// give in-flight deliveries a bounded time, close the store. It returns nil
// after a clean shutdown.
func Run(ctx context.Context, o Options) error {
	cfg := o.Config
	if cfg == nil {
		return errors.New("app: no configuration")
	}
	tuneGC()
	cgroupLimit, softLimit := tuneMemoryLimit()
	// Every log line of every component goes through the redactor, which
	// knows the configuration's secrets (and, after a reload, the new
	// ones as well: in-flight work may still quote the old).
	secrets := &secretSet{}
	secrets.add(ops.ConfigSecrets(cfg))
	log := slog.New(slog.DiscardHandler)
	if o.Logger != nil {
		log = slog.New(ops.RedactingHandler(o.Logger.Handler(), secrets.get))
	}
	if softLimit > 0 {
		log.Info("Go memory limit set from the container's (GOMEMLIMIT unset)", "cgroup_limit_bytes", cgroupLimit, "soft_limit_bytes", softLimit)
	}
	upstream, err := url.Parse(cfg.Upstream)
	if err != nil {
		return fmt.Errorf("app: upstream %q: %w", cfg.Upstream, err)
	}

	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("app: creating state_dir: %w", err)
	}
	st, err := store.Open(filepath.Join(cfg.StateDir, store.FileName), store.Options{Exclusive: true, Logger: log.With("component", "store")})
	if err != nil {
		return fmt.Errorf("app: opening state in %s: %w", cfg.StateDir, err)
	}
	defer st.Close()

	states, err := st.LoadStates(ctx)
	if err != nil {
		return fmt.Errorf("app: loading tracker state: %w", err)
	}
	horizon, err := loadHorizon(ctx, st)
	if err != nil {
		return err
	}

	sender, err := send.New(send.Options{AllowNetworks: cfg.Delivery.AllowNetworks, Logger: log.With("component", "send"), Version: o.Version})
	if err != nil {
		return fmt.Errorf("app: delivery client: %w", err)
	}
	defer sender.Close()

	// Metrics are always counted (a few atomic adds per request); they are
	// served only when ops.listen is set. The sources are read at scrape
	// time, by which point every component below exists.
	var (
		disp *notifier.Dispatcher
		w    *watch.Watcher
		tr   *track.Tracker
		px   *proxy.Proxy
	)
	metrics := ops.NewMetrics(ops.Sources{
		Proxy:       func() proxy.Stats { return px.Stats() },
		Watch:       func() watch.Stats { return w.Stats() },
		LastContact: func() time.Time { return w.LastContact() },
		Tracker:     func() track.Stats { return tr.Stats() },
		Callbacks:   func() []notifier.CallbackStatus { return disp.Status() },
	}, o.Version)

	// One client (and one Keystone token) for all of mistral-tap's own
	// requests to Mistral.
	engine := engineClient(cfg)
	wb := workbooks.New(workbooks.Options{BaseURL: cfg.Upstream, Headers: cfg.Watch.Headers, AllProjects: cfg.Watch.AllProjects, Client: engine, Log: log.With("component", "workbooks")})
	routing, err := Routing(cfg, wb)
	if err != nil {
		return err
	}
	disp, err = notifier.New(notifier.Options{Store: st, Sender: metrics.TimeDeliveries(sender), Routing: routing, Logger: log.With("component", "notifier")})
	if err != nil {
		return fmt.Errorf("app: dispatcher: %w", err)
	}

	w, err = watch.New(watch.Options{
		Upstream: upstream, Interval: cfg.Watch.Interval, PageSize: cfg.Watch.PageSize,
		Replay: cfg.Watch.Replay, AllProjects: cfg.Watch.AllProjects, Headers: cfg.Watch.Headers,
		Checkpoints: watchCheckpoints{st, disp}, Client: engine, Logger: log.With("component", "watch"),
	})
	if err != nil {
		return fmt.Errorf("app: watcher: %w", err)
	}
	tr, err = track.New(track.Options{Sink: metrics.CountEvents(disp), Fetcher: w, States: states, Horizon: horizon, Logger: log.With("component", "track"), Retention: cfg.Tracker.Retention})
	if err != nil {
		return fmt.Errorf("app: tracker: %w", err)
	}
	if horizon.IsZero() {
		// First start: remember from when on entities count as new, so a
		// restart after downtime replays what happened meanwhile rather
		// than treating it as history.
		if err := st.SetCheckpoint(ctx, trackerCheckpoint, tr.Horizon().Format(time.RFC3339)); err != nil {
			return fmt.Errorf("app: saving tracker horizon: %w", err)
		}
	}
	observer := metrics.CountObservations(tr)
	w.SetObserver(observer)

	tp, err := proxy.NewTransport(proxy.TransportOptions{
		DialTimeout: cfg.Proxy.DialTimeout, ResponseHeaderTimeout: cfg.Proxy.ResponseHeaderTimeout,
		MaxIdleConnsPerHost: cfg.Proxy.MaxIdleConnsPerHost, CAFile: cfg.Proxy.CAFile,
	})
	if err != nil {
		return fmt.Errorf("app: upstream transport: %w", err)
	}
	px, err = proxy.New(proxy.Options{
		Upstream: upstream, PathPrefix: cfg.Proxy.PathPrefix, MaxTapBody: cfg.Proxy.MaxTapBody,
		Transport: tp, Observer: observer, Workbooks: wb, Logger: log.With("component", "proxy"),
	})
	if err != nil {
		return fmt.Errorf("app: proxy: %w", err)
	}
	prefix := cfg.Proxy.PathPrefix
	proxyHandler := metrics.InstrumentProxy(px, func(r *http.Request) string {
		return proxy.RouteClass(prefix, r.Method, r.URL.Path)
	})

	ln := o.Listener
	if ln == nil {
		ln, err = net.Listen("tcp", cfg.Listen)
		if err != nil {
			return fmt.Errorf("app: proxy cannot listen on %s: %w", cfg.Listen, err)
		}
	}
	var adminLn net.Listener
	if cfg.Admin.Listen != "" {
		adminLn, err = net.Listen("tcp", cfg.Admin.Listen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("app: admin API cannot listen on %s: %w", cfg.Admin.Listen, err)
		}
	}
	var opsLn net.Listener
	if cfg.Ops.Listen != "" {
		opsLn, err = net.Listen("tcp", cfg.Ops.Listen)
		if err != nil {
			ln.Close()
			if adminLn != nil {
				adminLn.Close()
			}
			return fmt.Errorf("app: ops endpoints cannot listen on %s: %w", cfg.Ops.Listen, err)
		}
	}
	var draining atomic.Bool

	// Stages stop in this order; each has its own context.
	front, stopFront := context.WithCancel(context.WithoutCancel(ctx))
	middle, stopMiddle := context.WithCancel(context.WithoutCancel(ctx))
	back, stopBack := context.WithCancel(context.WithoutCancel(ctx))
	defer stopFront()
	defer stopMiddle()
	defer stopBack()

	errs := make(chan error, 8)
	var frontWG, middleWG, backWG sync.WaitGroup
	start := func(wg *sync.WaitGroup, name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					errs <- fmt.Errorf("%s panicked: %v", name, r)
				}
			}()
			if err := f(); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}

	start(&backWG, "dispatcher", func() error { return disp.Run(back) })
	start(&middleWG, "tracker", func() error { return tr.Run(middle) })
	start(&frontWG, "proxy", func() error { return proxy.ServeListener(front, ln, proxyHandler, log.With("component", "proxy")) })
	start(&frontWG, "watcher", func() error { return w.Run(front) })
	start(&frontWG, "workbooks", func() error { return wb.Run(front) })
	start(&frontWG, "housekeeping", func() error { return housekeeping(front, st, tr, log) })
	if adminLn != nil {
		h, err := admin.New(disp, cfg.Admin.Token, log.With("component", "admin"))
		if err != nil {
			return fmt.Errorf("app: admin API: %w", err)
		}
		start(&frontWG, "admin", func() error { return proxy.ServeListener(front, adminLn, h, log.With("component", "admin")) })
	}
	if opsLn != nil {
		// The ops endpoints stop last, so that /metrics and /healthz keep
		// answering while the proxy drains and deliveries finish, and
		// /readyz says "draining" meanwhile.
		h := ops.NewHealth(0, readiness(cfg, upstream, st, w, &draining)...)
		start(&backWG, "ops", func() error {
			return proxy.ServeListener(back, opsLn, ops.Handler(metrics, h), log.With("component", "ops"))
		})
	}
	if o.Source.Path != "" {
		rl := config.NewReloader(o.Source, func(nc *config.Config) error {
			secrets.add(ops.ConfigSecrets(nc))
			return apply(cfg, nc, wb, disp, o.LogLevel, log)
		}, log.With("component", "config"))
		rl.Observe = metrics.ObserveReload
		start(&frontWG, "reloader", func() error { return rl.Run(front) })
		if o.Reload != nil {
			go func() {
				for {
					select {
					case <-front.Done():
						return
					case <-o.Reload:
						rl.Trigger()
					}
				}
			}()
		}
	}
	log.Info("mistral-tap running", "listen", ln.Addr().String(), "upstream", config.RedactURL(cfg.Upstream),
		"callbacks", len(cfg.Callbacks), "watch_interval", cfg.Watch.Interval, "state_dir", cfg.StateDir)
	if o.Ready != nil {
		o.Ready(ln.Addr().String())
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
		log.Error("component failed; shutting down", "err", runErr)
	}
	log.Info("shutting down")
	draining.Store(true)
	stopFront()
	frontWG.Wait()
	px.Wait()
	stopMiddle()
	middleWG.Wait()
	stopBack()
	backWG.Wait()
	log.Info("stopped")
	return runErr
}

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
		r.Routes[cb.Name] = notifier.Route{Callback: cb, Format: formatter{f}, Secrets: secrets}
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

// formatter adapts payload.Formatter to the dispatcher's Formatter.
type formatter struct{ f *payload.Formatter }

func (f formatter) Format(ev *event.Event) (notifier.Message, error) {
	m, err := f.f.Format(ev)
	return notifier.Message{Method: m.Method, Header: m.Header, Body: m.Body}, err
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

func loadHorizon(ctx context.Context, st *store.Store) (time.Time, error) {
	v, err := st.Checkpoint(ctx, trackerCheckpoint)
	if err != nil {
		return time.Time{}, fmt.Errorf("app: reading tracker horizon: %w", err)
	}
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("app: tracker horizon %q in the store is malformed: %w", v, err)
	}
	return t, nil
}

// housekeeping persists the tracker's horizon and forgets entity states
// the tracker no longer needs, so the store does not grow without bound.
func housekeeping(ctx context.Context, st *store.Store, tr *track.Tracker, log *slog.Logger) error {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	last := tr.Horizon()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		h := tr.Horizon()
		if !h.After(last) {
			continue
		}
		if err := st.SetCheckpoint(ctx, trackerCheckpoint, h.Format(time.RFC3339)); err != nil {
			log.Warn("saving tracker horizon failed", "err", err)
			continue
		}
		if err := st.ForgetStates(ctx, tr.TakeForgotten()); err != nil {
			log.Warn("pruning tracker state failed", "err", err)
			continue
		}
		last = h
	}
}

var _ http.Handler = (*proxy.Proxy)(nil)

// secretSet is the growing set of secret values the log redactor looks
// for; it only grows, because work started under an old configuration may
// still log an old secret after a reload.
type secretSet struct {
	mu  sync.Mutex
	cur atomic.Pointer[[]string]
}

func (s *secretSet) add(vs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var next []string
	if p := s.cur.Load(); p != nil {
		next = slices.Clone(*p)
	}
	next = append(next, vs...)
	slices.Sort(next)
	next = slices.Compact(next)
	s.cur.Store(&next)
}

func (s *secretSet) get() []string {
	if p := s.cur.Load(); p != nil {
		return *p
	}
	return nil
}

// readiness lists /readyz's checks: a configuration is in force (always,
// once Run got this far; a failed reload keeps the previous one, which is
// still ready), the store answers, the engine was reached recently, and
// the process is not draining.
func readiness(cfg *config.Config, upstream *url.URL, st *store.Store, w *watch.Watcher, draining *atomic.Bool) []ops.Check {
	engine := ops.Check{Name: "engine"}
	if cfg.Watch.Interval > 0 {
		// The watcher backs off up to 30s while the engine is down, so a
		// shorter limit would flap; a healthy watcher polls every interval.
		engine.Run = ops.RecentContact(w.LastContact, max(5*cfg.Watch.Interval, 45*time.Second), nil)
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
			if _, err := st.Checkpoint(ctx, trackerCheckpoint); err != nil {
				return fmt.Errorf("store not readable: %w", err)
			}
			return nil
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
