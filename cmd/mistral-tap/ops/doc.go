// Package ops makes mistral-tap operable as a production sidecar: Prometheus
// metrics (custom collectors that read the components' Stats()/Status()
// snapshots at scrape time, plus counters and histograms recorded by small
// decorators around the proxy handler, the tracker's Sink, the tracker's
// Observer and the delivery Sender), liveness and readiness endpoints, and
// a slog handler that redacts configured secrets from every log record.
//
// Everything here is wired by cmd/mistral-tap/app; the endpoints are
// served on config.Ops.Listen, never on the proxy's listener, because they
// are unauthenticated.
package ops
