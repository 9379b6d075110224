package ops

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mistral-tap/mistral-tap/notifier"
)

// snapshotCollector turns the components' Stats()/Status() snapshots into
// metrics at scrape time, so that the components keep plain atomic
// counters and know nothing of Prometheus.
type snapshotCollector struct {
	src Sources
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_"+name, help, labels, nil)
}

var (
	descTapRequests = desc("tap_requests_total", "Requests the proxy received, refused ones included.")
	descTapRefused  = desc("tap_refused_total", "Requests refused: CONNECT, absolute URLs for foreign hosts, targets that are not a path, paths whose '..' climbs above the API root.")
	descTapUpErrors = desc("tap_upstream_errors_total", "Round trips to Mistral that failed (answered 502).")
	descTapUpCut    = desc("tap_upstream_cut_total", "Responses whose body Mistral cut short; the client's response was aborted too.")
	descTapParsed   = desc("tap_bodies_parsed_total", "Tapped response bodies captured whole and parsed.")
	descTapSkipped  = desc("tap_bodies_skipped_total", "Tap-route response bodies not parsed, by reason (too_large, status, not_json, incomplete, parse_error).", "reason")
	descTapSkipRes  = desc("tap_resources_skipped_total", "Resources in tapped bodies without id or state, or with fields of the wrong type.")
	descTapObs      = desc("tap_observations_total", "Resources the proxy passed to the tracker.")

	descWatchPolls     = desc("watch_polls_total", "Completed polls of the engine.")
	descWatchErrors    = desc("watch_poll_errors_total", "Failed polls of the engine.")
	descWatchRequests  = desc("watch_requests_total", "HTTP requests the watcher made.")
	descWatchResources = desc("watch_resources_total", "Executions and tasks the watcher received.")
	descWatchLag       = desc("watch_lag_seconds", "How far the watcher's checkpoint trails the wall clock after the last successful poll.")
	descEngineContact  = desc("engine_last_contact_timestamp_seconds", "Unix time the engine last answered the watcher successfully; 0 if never.")

	descTrackObs      = desc("tracker_observations_total", "Observations the tracker processed.")
	descTrackStale    = desc("tracker_observations_stale_total", "Observations not newer than what the tracker knew (duplicates between tap and watcher land here).")
	descTrackHistory  = desc("tracker_observations_history_total", "Unknown entities older than the horizon, ignored.")
	descTrackEvents   = desc("tracker_events_total", "Events the tracker derived, by inferred.", "inferred")
	descTrackTracked  = desc("tracker_entities", "Executions and tasks the tracker currently remembers.")
	descTrackSinkErrs = desc("tracker_sink_errors_total", "Failed hand-overs of events to the outbox (retried).")
	descTrackRejected = desc("tracker_observations_rejected_total", "Observations whose state (unknown_state: ignored) or updated_at (future_timestamp: more than 5m ahead of the clock, not trusted for ordering) the tracker does not trust.", "reason")

	descQueuePending  = desc("delivery_queue_pending", "Deliveries waiting in the outbox (in memory window), by callback.", "callback")
	descQueueInFlight = desc("delivery_in_flight", "Deliveries being sent, by callback.", "callback")
	descQueueOldest   = desc("delivery_oldest_pending_age_seconds", "Age of the oldest pending delivery, by callback; 0 when none.", "callback")
	descBreakerOpen   = desc("delivery_breaker_open", "1 when the callback's circuit breaker is open (only probes are sent).", "callback")
	descConsecFail    = desc("delivery_consecutive_failures", "Consecutive failed deliveries, by callback.", "callback")
	descDisabled      = desc("delivery_callback_disabled", "1 when the callback is disabled (a receiver answered 410 Gone).", "callback")
)

// Describe sends every descriptor.
func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descTapRequests, descTapRefused, descTapUpErrors, descTapUpCut, descTapParsed, descTapSkipped, descTapSkipRes, descTapObs,
		descWatchPolls, descWatchErrors, descWatchRequests, descWatchResources, descWatchLag, descEngineContact,
		descTrackObs, descTrackStale, descTrackHistory, descTrackEvents, descTrackTracked, descTrackSinkErrs, descTrackRejected,
		descQueuePending, descQueueInFlight, descQueueOldest, descBreakerOpen, descConsecFail, descDisabled,
	} {
		ch <- d
	}
}

// Collect reads each snapshot once.
func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if f := c.src.Proxy; f != nil {
		s := f()
		counter(descTapRequests, s.Requests)
		counter(descTapRefused, s.Refused)
		counter(descTapUpErrors, s.UpstreamErrors)
		counter(descTapUpCut, s.UpstreamCut)
		counter(descTapParsed, s.Tapped)
		counter(descTapSkipped, s.SkippedTooLarge, "too_large")
		counter(descTapSkipped, s.SkippedStatus, "status")
		counter(descTapSkipped, s.SkippedNotJSON, "not_json")
		counter(descTapSkipped, s.SkippedIncomplete, "incomplete")
		counter(descTapSkipped, s.ParseErrors, "parse_error")
		counter(descTapSkipRes, s.SkippedResources)
		counter(descTapObs, s.Observations)
	}
	if f := c.src.Watch; f != nil {
		s := f()
		counter(descWatchPolls, s.Polls)
		counter(descWatchErrors, s.Errors)
		counter(descWatchRequests, s.Requests)
		counter(descWatchResources, s.Resources)
		gauge(descWatchLag, s.Lag.Seconds())
	}
	if f := c.src.LastContact; f != nil {
		v := 0.0
		if t := f(); !t.IsZero() {
			v = float64(t.UnixNano()) / 1e9
		}
		gauge(descEngineContact, v)
	}
	if f := c.src.Tracker; f != nil {
		s := f()
		counter(descTrackObs, s.Observations)
		counter(descTrackStale, s.Stale)
		counter(descTrackHistory, s.History)
		counter(descTrackEvents, s.Events-min(s.Inferred, s.Events), "false")
		counter(descTrackEvents, s.Inferred, "true")
		gauge(descTrackTracked, float64(s.Tracked))
		counter(descTrackSinkErrs, s.SinkErrors)
		counter(descTrackRejected, s.UnknownStates, "unknown_state")
		counter(descTrackRejected, s.FutureTimestamps, "future_timestamp")
	}
	if f := c.src.Callbacks; f != nil {
		for _, s := range f() {
			gauge(descQueuePending, float64(s.Pending), s.Name)
			gauge(descQueueInFlight, float64(s.InFlight), s.Name)
			gauge(descQueueOldest, s.OldestPendingAge.Seconds(), s.Name)
			gauge(descBreakerOpen, b2f(s.Breaker == notifier.BreakerOpen), s.Name)
			gauge(descConsecFail, float64(s.ConsecutiveFailures), s.Name)
			gauge(descDisabled, b2f(s.Disabled), s.Name)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
