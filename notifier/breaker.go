package notifier

import (
	"log/slog"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/send"
)

// BreakerState is a callback's circuit breaker state.
type BreakerState string

// Breaker states.
const (
	BreakerClosed BreakerState = "closed"
	BreakerOpen   BreakerState = "open"
)

// breaker decides whether a lane may start a send, from the outcomes of
// the sends before. It follows the CircuitBreaker of Caddy's reverse proxy
// (OK, RecordMetric), with the trial request made explicit: an open
// circuit here lets one probe through at a time, at a backed-off time,
// and the probe's outcome decides whether it closes.
//
// A breaker is not safe for concurrent use; its lane's mutex guards it.
type breaker interface {
	// allow reports whether a send may start at now. probe is true when
	// that send is an open circuit's trial: the caller must then start
	// exactly one and report it with record(…, probe=true). When !ok,
	// wait is how long until a probe may start (0: until a result).
	allow(now time.Time) (ok, probe bool, wait time.Duration)
	// record feeds back a send's outcome; probe says whether it was the
	// trial that allow granted.
	record(o send.Outcome, probe bool, now time.Time)
	// configure applies the (reloadable) threshold and longest probe
	// interval.
	configure(threshold int, probeMax time.Duration)
	// state reports the breaker for Status.
	state() breakerStatus
}

// breakerStatus is a breaker's state for CallbackStatus.
type breakerStatus struct {
	open      bool
	failures  int       // consecutive retryable failures
	nextProbe time.Time // when open
}

// probeBreaker opens after threshold consecutive retryable failures (0:
// never) and then probes at intervals that start at probeMin and double up
// to probeMax. Any answer from the receiver (delivered, or rejected as
// permanent) closes it: the receiver is up, whatever it thought of the
// body.
type probeBreaker struct {
	log       *slog.Logger
	threshold int
	probeMin  time.Duration
	probeMax  time.Duration

	failures int
	open     bool
	probing  bool
	probeAt  time.Time
	backoff  time.Duration
}

var _ breaker = (*probeBreaker)(nil)

func newProbeBreaker(probeMin time.Duration, log *slog.Logger) *probeBreaker {
	return &probeBreaker{log: log, probeMin: probeMin, probeMax: DefaultBreakerProbeMax}
}

func (b *probeBreaker) configure(threshold int, probeMax time.Duration) {
	if probeMax <= 0 {
		probeMax = DefaultBreakerProbeMax
	}
	b.threshold, b.probeMax = threshold, probeMax
}

func (b *probeBreaker) allow(now time.Time) (ok, probe bool, wait time.Duration) {
	switch {
	case !b.open:
		return true, false, 0
	case b.probing:
		return false, false, 0
	case now.Before(b.probeAt):
		return false, false, b.probeAt.Sub(now)
	}
	b.probing = true
	return true, true, 0
}

func (b *probeBreaker) record(o send.Outcome, probe bool, now time.Time) {
	if probe {
		b.probing = false
	}
	switch o {
	case send.Retryable:
		b.failures++
		switch {
		case b.open:
			b.backoff = min(2*b.backoff, b.probeMax)
			b.probeAt = now.Add(b.backoff)
		case b.threshold > 0 && b.failures >= b.threshold:
			b.open = true
			b.backoff = min(b.probeMin, b.probeMax)
			b.probeAt = now.Add(b.backoff)
			b.log.Warn("circuit opened", "consecutive_failures", b.failures, "next_probe_in", b.backoff)
		}
	case send.Delivered, send.Permanent:
		b.failures = 0
		if b.open {
			b.open = false
			b.log.Info("circuit closed")
		}
	}
}

func (b *probeBreaker) state() breakerStatus {
	s := breakerStatus{open: b.open, failures: b.failures}
	if b.open {
		s.nextProbe = b.probeAt
	}
	return s
}
