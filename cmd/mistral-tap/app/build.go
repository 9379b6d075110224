package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync/atomic"

	"github.com/mistral-tap/mistral-tap/cmd/mistral-tap/ops"
	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/config/redact"
	"github.com/mistral-tap/mistral-tap/matcher/workbooks"
	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/notifier/admin"
	amqppub "github.com/mistral-tap/mistral-tap/notifier/amqp"
	"github.com/mistral-tap/mistral-tap/notifier/ha"
	"github.com/mistral-tap/mistral-tap/notifier/listeners"
	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/tap/mistral"
	"github.com/mistral-tap/mistral-tap/tap/proxy"
	"github.com/mistral-tap/mistral-tap/tap/track"
	"github.com/mistral-tap/mistral-tap/tap/watch"
)

// app holds every component of one mistral-tap process, built by build and
// run by run. Nothing in it is nil once build returned without an error,
// except the optional listeners (admin, ops) and the reloader.
type app struct {
	cfg      *config.Config
	log      *slog.Logger
	secrets  *secretSet
	upstream *url.URL
	draining atomic.Bool
	// engine is the one client (and the one Keystone token) for all of
	// mistral-tap's own requests to Mistral.
	engine *mistral.Client

	st     durable
	sender *send.Client
	// publisher is the AMQP transport (type amqp callbacks).
	publisher *amqppub.Publisher
	metrics   *ops.Metrics
	wb        *workbooks.Resolver
	disp      *notifier.Dispatcher
	px        *proxy.Proxy
	// registry and listenersAPI serve /v2/listeners (nil with
	// listeners.enabled false).
	registry     *listeners.Registry
	listenersAPI *listeners.Handler
	// single is the watcher and tracker of a single instance (SQLite);
	// with PostgreSQL, node runs one per leadership term and cur points
	// at the running one (nil while following), for metrics and /readyz.
	single *pipeline
	node   *haNode
	cur    atomic.Pointer[pipeline]

	proxyHandler, adminHandler, opsHandler http.Handler
	ln, adminLn, opsLn                     net.Listener
	reloader                               *config.Reloader
	adminAPI                               *admin.Handler // for token rotation
	compiler                               *Compiler      // compiles each loaded configuration once

	closers []func() // undo what build did, run by close in reverse order
}

// build constructs every component from o.Config. On error, whatever it
// had opened is closed again.
func build(ctx context.Context, o Options) (a *app, err error) {
	a = &app{cfg: o.Config, secrets: &secretSet{}}
	built := a // the error returns below set a to nil
	defer func() {
		if err != nil {
			built.close()
		}
	}()
	a.initLogger(o.Logger)
	if a.upstream, err = url.Parse(a.cfg.Upstream); err != nil {
		return nil, fmt.Errorf("app: upstream %q: %w", config.RedactURL(a.cfg.Upstream), err)
	}
	if a.engine, err = engineClient(a.cfg, a.upstream); err != nil {
		return nil, err
	}
	// Metrics are always counted (a few atomic adds per request) and
	// served only when ops.listen is set; the scrape-time sources are
	// attached once the components exist.
	a.metrics = ops.NewMetrics(o.Version)
	steps := []func(context.Context, Options) error{a.openStore, a.buildDelivery, a.buildListeners, a.buildObservation, a.buildProxy, a.buildEndpoints, a.listen}
	for _, step := range steps {
		if err := step(ctx, o); err != nil {
			return nil, err
		}
	}
	a.metrics.Read(ops.Sources{
		Proxy: a.px.Stats, LastContact: a.engine.LastContact, Callbacks: a.disp.Status,
		Watch: func() watch.Stats {
			if p := a.cur.Load(); p != nil {
				return p.w.Stats()
			}
			return watch.Stats{}
		},
		Tracker: func() track.Stats {
			if p := a.cur.Load(); p != nil {
				return p.tr.Stats()
			}
			return track.Stats{}
		},
	})
	return a, nil
}

// close releases what build acquired, in reverse order.
func (a *app) close() {
	for _, c := range slices.Backward(a.closers) {
		c()
	}
	a.closers = nil
}

func (a *app) onClose(f func()) { a.closers = append(a.closers, f) }

// initLogger routes every component's log lines through the redactor,
// which knows the configuration's secrets (and, after a reload, the new
// ones as well: in-flight work may still quote the old).
func (a *app) initLogger(base *slog.Logger) {
	a.secrets.add(a.cfg.SecretValues())
	a.log = slog.New(slog.DiscardHandler)
	if base != nil {
		a.log = slog.New(redact.Handler(base.Handler(), a.secrets.get))
	}
}

// openStore opens the store. A replica migrates the shared schema once
// here; if the database does not answer yet it starts anyway, and the
// schema gate keeps trying (schemaGate).
func (a *app) openStore(ctx context.Context, _ Options) error {
	st, pg, err := openStore(a.cfg, a.log)
	if err != nil {
		return err
	}
	a.st = st
	a.onClose(func() { st.Close() })
	if pg == nil {
		return nil
	}
	a.node = newHANode(a.cfg, pg, fetcherFor(a.cfg, a.engine), a.log)
	a.node.schema = newSchemaGate(pg, a.log.With("component", "store"))
	if err := a.node.schema.try(ctx); err != nil {
		if !retryable(err) || ctx.Err() != nil {
			return fmt.Errorf("app: opening the PostgreSQL store: %w", err)
		}
		a.log.Warn("PostgreSQL store not reachable; starting anyway: proxying, buffering what the tap sees, retrying", "err", err)
	}
	return nil
}

// storeHealth is the store's part of /readyz: on a replica, whether the
// schema is migrated yet, then whether the store answers.
func (a *app) storeHealth(ctx context.Context) error {
	if a.node != nil {
		return a.node.schema.health(ctx, a.st.Health)
	}
	return a.st.Health(ctx)
}

// buildDelivery builds the sending client, the workbook resolver the
// routing needs, and the dispatcher.
func (a *app) buildDelivery(_ context.Context, o Options) error {
	sender, err := send.New(send.Options{AllowNetworks: a.cfg.Delivery.AllowNetworks, Logger: a.log.With("component", "send"), Version: o.Version})
	if err != nil {
		return fmt.Errorf("app: delivery client: %w", err)
	}
	a.sender = sender
	a.onClose(func() { sender.Close() })
	a.publisher = amqppub.New(amqppub.Options{Logger: a.log.With("component", "amqp")})
	a.onClose(a.publisher.Close)
	a.publisher.Configure(AMQPEndpoints(a.cfg))
	transports := notifier.Transports{config.TypeHTTP: sender, config.TypeAMQP: a.publisher}
	wbOpts := workbooks.Options{Engine: a.engine, AllProjects: a.cfg.Watch.AllProjects, Log: a.log.With("component", "workbooks")}
	if perProject(a.cfg) {
		wbOpts.Projects = workbookProjects{projectEngines{a.engine}}
	} else if a.cfg.Watch.AllProjects {
		a.log.Warn("watch.all_projects without watch.keystone: Mistral lists tasks and workbooks of the token's own project only, so other projects' task events and workbooks are not seen (docs/auth.md)")
	}
	a.wb, err = workbooks.New(wbOpts)
	if err != nil {
		return fmt.Errorf("app: workbooks: %w", err)
	}
	if a.compiler = o.Compiler; a.compiler == nil {
		a.compiler = &Compiler{}
	}
	compiled, err := a.compiler.For(a.cfg)
	if err != nil {
		return fmt.Errorf("app: callbacks: %w", err)
	}
	routing, err := compiled.Routing(a.wb)
	if err != nil {
		return fmt.Errorf("app: callbacks: %w", err)
	}
	var out notifier.Sender = transports
	if ls, err := a.listenerSender(o); err != nil {
		return err
	} else if ls != nil {
		out = listenerSender{listeners: ls, all: transports}
	}
	a.disp, err = notifier.New(notifier.Options{Store: a.st, Sender: a.guard(a.metrics.TimeDeliveries(out)), Routing: routing,
		History: a.cfg.Listeners.Enabled, HistoryRetention: a.cfg.Listeners.History, Logger: a.log.With("component", "notifier")})
	if err != nil {
		return fmt.Errorf("app: dispatcher: %w", err)
	}
	return nil
}

// buildObservation builds the tracker from the state the store kept, and
// the watcher that observes into it: once for a single instance; with
// PostgreSQL the leader does it at the start of each term (haNode.lead).
func (a *app) buildObservation(ctx context.Context, _ Options) error {
	pb := pipelineBuilder{cfg: a.cfg, st: a.st, disp: a.disp, engine: a.engine, metrics: a.metrics, log: a.log}
	if a.node != nil {
		a.node.pb, a.node.cur = pb, &a.cur
		if a.registry != nil {
			a.node.listeners = a.registry
		}
		return nil
	}
	p, err := pb.build(ctx, nil)
	if err != nil {
		return err
	}
	a.single = p
	a.cur.Store(p)
	return nil
}

// guard wraps the dispatcher's sender on a replica: sends only under a
// trusted lease (docs/ha.md).
func (a *app) guard(s notifier.Sender) notifier.Sender {
	if a.node == nil {
		return s
	}
	a.metrics.AddReplica(a.node.stats)
	return ha.GuardSender(s, a.node.elector.Current)
}

// observer is the tap's: the tracker of a single instance, or the
// forwarder to the shared queue of a replica.
func (a *app) observer() proxy.Observer {
	if a.node != nil {
		return a.node.fwd
	}
	return a.metrics.CountObservations(a.single.tr)
}

func (a *app) buildProxy(_ context.Context, _ Options) error {
	cfg := a.cfg
	tp, err := proxy.NewTransport(proxy.TransportOptions{
		DialTimeout: cfg.Proxy.DialTimeout, ResponseHeaderTimeout: cfg.Proxy.ResponseHeaderTimeout,
		MaxIdleConnsPerHost: cfg.Proxy.MaxIdleConnsPerHost, CAFile: cfg.Proxy.CAFile,
	})
	if err != nil {
		return fmt.Errorf("app: upstream transport: %w", err)
	}
	a.px, err = proxy.New(proxy.Options{
		Upstream: a.upstream, PathPrefix: cfg.Proxy.PathPrefix, MaxTapBody: cfg.Proxy.MaxTapBody,
		Transport: tp, Observer: a.observer(), Workbooks: a.wb, Logger: a.log.With("component", "proxy"),
	})
	if err != nil {
		return fmt.Errorf("app: proxy: %w", err)
	}
	prefix := cfg.Proxy.PathPrefix
	a.proxyHandler = a.metrics.InstrumentProxy(a.px, func(r *http.Request) string {
		return proxy.RouteClass(prefix, r.Method, r.URL.Path)
	})
	if a.listenersAPI != nil {
		a.proxyHandler = withListeners(prefix, a.listenersAPI, a.proxyHandler)
	}
	return nil
}

// buildEndpoints builds the admin API, the ops endpoints and the config
// reloader, each only when configured.
func (a *app) buildEndpoints(_ context.Context, o Options) error {
	cfg := a.cfg
	if cfg.Admin.Listen != "" {
		h, err := admin.New(a.disp, cfg.Admin.Token, a.log.With("component", "admin"))
		if err != nil {
			return fmt.Errorf("app: admin API: %w", err)
		}
		a.adminAPI, a.adminHandler = h, h
	}
	if cfg.Ops.Listen != "" {
		a.opsHandler = ops.Handler(a.metrics, ops.NewHealth(0, readiness(cfg, a.upstream, a.storeHealth, a.disp.StoreHealthy, a.engine.LastContact, &a.cur, a.node != nil, &a.draining)...))
	}
	if o.Source.Path != "" {
		// Every reload compiles the callbacks once, in the load's check;
		// apply takes what it compiled.
		src := o.Source
		src.Check = a.compiler.Check
		a.reloader = config.NewReloader(src, func(nc *config.Config) error {
			a.secrets.add(nc.SecretValues())
			a.publisher.Configure(AMQPEndpoints(nc))
			if err := apply(nc, a.compiler, a.wb, a.disp, o.LogLevel); err != nil {
				return err
			}
			// A leaked admin token is rotated by a reload, without a
			// restart (admin.listen itself needs one), for the admin
			// API and for /v2/listeners, where it sees every project.
			if a.listenersAPI != nil {
				a.listenersAPI.SetAdminToken(nc.Admin.Token)
			}
			if a.adminAPI != nil && nc.Admin.Token != "" {
				return a.adminAPI.SetToken(nc.Admin.Token)
			}
			return nil
		}, a.log.With("component", "config"))
		a.reloader.Observe = a.metrics.ObserveReload
	}
	return nil
}

// listen binds the proxy's, the admin API's and the ops endpoints'
// addresses, so that a port in use fails the start rather than a stage.
func (a *app) listen(_ context.Context, o Options) error {
	a.ln = o.Listener
	if a.ln == nil {
		ln, err := net.Listen("tcp", a.cfg.Listen)
		if err != nil {
			return fmt.Errorf("app: proxy cannot listen on %s: %w", a.cfg.Listen, err)
		}
		a.ln = ln
	}
	a.onClose(func() { a.ln.Close() })
	var err error
	if a.adminLn, err = listenOptional("admin API", a.cfg.Admin.Listen); err != nil {
		return err
	}
	if a.opsLn, err = listenOptional("ops endpoints", a.cfg.Ops.Listen); err != nil {
		return err
	}
	for _, ln := range []net.Listener{a.adminLn, a.opsLn} {
		if ln != nil {
			a.onClose(func() { ln.Close() })
		}
	}
	return nil
}

func listenOptional(what, addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("app: %s cannot listen on %s: %w", what, addr, err)
	}
	return ln, nil
}

func (a *app) serveProxy(ctx context.Context) error {
	return proxy.ServeWith(ctx, a.ln, a.proxyHandler, proxy.ServeOptions{
		MaxConnections: a.cfg.Proxy.MaxConnections, IdleTimeout: a.cfg.Proxy.IdleTimeout, Logger: a.log.With("component", "proxy"),
	})
}

func (a *app) logRunning() {
	a.log.Info("mistral-tap running", "listen", a.ln.Addr().String(), "upstream", config.RedactURL(a.cfg.Upstream),
		"callbacks", len(a.cfg.Callbacks), "watch_interval", a.cfg.Watch.Interval, "store", storeLabel(a.cfg))
}
