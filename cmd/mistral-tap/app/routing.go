package app

import (
	"errors"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/matcher"
	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/notifier/payload"
)

// Compiled is a configuration's callbacks made ready to run: the
// matcher's rules (event selectors, globs) and, per callback, its payload
// formatter (templates compiled and trial-run) and signing secrets.
// `validate`, `explain` and `run` all check a configuration by compiling
// it here, so what validate accepts is exactly what run can route.
type Compiled struct {
	rules    *matcher.Rules
	routes   map[string]notifier.Route
	delivery config.Delivery
}

// Compile compiles cfg's callbacks. Every problem is a *config.FieldError
// at its key, joined, so that config.Load places it in the file (use
// Check as config.Source.Check).
func Compile(cfg *config.Config) (*Compiled, error) {
	rules, err := matcher.Compile(cfg.Callbacks)
	errs := []error{err}
	c := &Compiled{rules: rules, routes: make(map[string]notifier.Route, len(cfg.Callbacks)), delivery: cfg.Delivery}
	for i := range cfg.Callbacks {
		cb := &cfg.Callbacks[i]
		f, err := payload.New(payload.Spec{
			Format: cb.Format, Method: cb.Method, Headers: cb.Headers, Template: cb.Template,
			CloudEventsMode: cb.CloudEvents.Mode, Source: ceSource(cfg, cb),
			URL: cb.URLTemplate(), RoutingKey: routingKey(cb),
		})
		if err != nil {
			errs = append(errs, payloadProblem(cb, i, err))
			continue
		}
		var secrets []string
		for _, s := range append([]string{cb.Secret}, cb.Secrets...) {
			if s != "" {
				secrets = append(secrets, s)
			}
		}
		c.routes[cb.Name] = notifier.Route{Callback: *cb, Format: f, Secrets: secrets}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// Check is Compile for config.Source.Check, when only the problems matter
// (validate, explain).
func Check(cfg *config.Config) error {
	_, err := Compile(cfg)
	return err
}

// payloadProblem places a payload.SpecError at the callback's key.
func payloadProblem(cb *config.Callback, i int, err error) error {
	fe := &config.FieldError{Path: "callbacks." + strconv.Itoa(i), Callback: config.CallbackLabel(cb, i), Msg: err.Error()}
	var se *payload.SpecError
	if !errors.As(err, &se) {
		return fe
	}
	field := se.Field
	if field == "routing_key" {
		field = "amqp.routing_key"
	}
	fe.Path += "." + field
	fe.Field, fe.Msg = field, se.Err.Error()
	switch {
	case strings.HasPrefix(se.Field, "headers."):
		// Header values are secrets: name the header, not its value.
		fe.Field, fe.Value = "headers", config.RedactedValue
		fe.Msg = strings.TrimPrefix(se.Field, "headers.") + ": " + fe.Msg
	case se.Field == "format":
		fe.Value = cb.Format
	case se.Field == "method":
		fe.Value = cb.Method
	case se.Field == "cloudevents.mode":
		fe.Value = cb.CloudEvents.Mode
	}
	return fe
}

// Routing binds the compiled callbacks to a workbook index, as the
// dispatcher's routing.
func (c *Compiled) Routing(wb matcher.WorkbookIndex) (*notifier.Routing, error) {
	m, err := c.rules.Bind(wb)
	if err != nil {
		return nil, err
	}
	return &notifier.Routing{Matcher: m, Routes: c.routes, Delivery: c.delivery}, nil
}

// Compiler compiles each loaded configuration once: as
// config.Source.Check it compiles what Load has just read, and For hands
// that result to whoever applies the same configuration (the start and
// every reload), instead of compiling the templates a second time.
type Compiler struct {
	mu  sync.Mutex
	cfg *config.Config
	out *Compiled
}

// Check compiles cfg and remembers the result for For.
func (c *Compiler) Check(cfg *config.Config) error {
	out, err := Compile(cfg)
	c.mu.Lock()
	c.cfg, c.out = cfg, out
	c.mu.Unlock()
	return err
}

// For returns what Check compiled for cfg, or compiles it.
func (c *Compiler) For(cfg *config.Config) (*Compiled, error) {
	c.mu.Lock()
	cached, out := c.cfg == cfg, c.out
	c.mu.Unlock()
	if cached && out != nil {
		return out, nil
	}
	return Compile(cfg)
}

func ceSource(cfg *config.Config, cb *config.Callback) string {
	if cb.CloudEvents.Source != "" {
		return cb.CloudEvents.Source
	}
	if u, err := url.Parse(cfg.Upstream); err == nil {
		return "mistral-tap://" + u.Host
	}
	return ""
}

// apply swaps in a reloaded configuration: callbacks, delivery settings
// and the log level change live. The reloader reports the rest as needing
// a restart, against the configuration in force before this one.
func apply(nc *config.Config, comp *Compiler, wb matcher.WorkbookIndex, disp *notifier.Dispatcher, lv *slog.LevelVar) error {
	compiled, err := comp.For(nc)
	if err != nil {
		return err
	}
	routing, err := compiled.Routing(wb)
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
	return nil
}
