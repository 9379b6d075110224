package notifier

import (
	"context"
	"log/slog"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/notifier/store"
)

// BreakerState is a callback's circuit breaker state.
type BreakerState string

// Breaker states. Status reports an open circuit whose trial send is under
// way as open; the store records it as half-open.
const (
	BreakerClosed   BreakerState = "closed"
	BreakerOpen     BreakerState = "open"
	BreakerHalfOpen BreakerState = "half-open"
)

// breaker decides whether a lane may start a send, from the outcomes of
// the sends before. It follows the CircuitBreaker of Caddy's reverse proxy
// (OK, RecordMetric), with the trial request made explicit: an open
// circuit here lets one probe through at a time, at a backed-off time,
// and the probe's outcome decides whether it closes.
//
// A breaker's state outlives its dispatcher: the lane records every change
// in the store (saveBreaker) and a new lane for the callback, after a
// restart or on a new leader, restores it, so that a dead receiver is not
// sent a full round of requests by every dispatcher that starts.
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
	// state reports the breaker for Status and for the store.
	state() breakerStatus
	// restore carries on from a state another breaker reported.
	restore(s breakerStatus)
}

// breakerStatus is a breaker's state for CallbackStatus and the store.
type breakerStatus struct {
	open      bool
	failures  int       // consecutive retryable failures
	nextProbe time.Time // when open
	// What only the store needs: an open circuit's trial under way, when
	// it opened and its current wait between trials.
	probing  bool
	openedAt time.Time
	backoff  time.Duration
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
	openedAt time.Time
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
			b.open, b.openedAt = true, now
			b.backoff = min(b.probeMin, b.probeMax)
			b.probeAt = now.Add(b.backoff)
			b.log.Warn("circuit opened", "consecutive_failures", b.failures, "next_probe_in", b.backoff)
		}
	case send.Delivered, send.Permanent:
		b.failures = 0
		if b.open {
			b.open, b.openedAt = false, time.Time{}
			b.log.Info("circuit closed")
		}
	}
}

func (b *probeBreaker) state() breakerStatus {
	s := breakerStatus{open: b.open, failures: b.failures}
	if b.open {
		s.nextProbe, s.probing, s.openedAt, s.backoff = b.probeAt, b.probing, b.openedAt, b.backoff
	}
	return s
}

// restore takes over s. A trial that was under way belongs to the
// breaker that started it, which will never report it here: an open
// circuit probes at its recorded time, at once if that has passed.
func (b *probeBreaker) restore(s breakerStatus) {
	b.failures, b.open, b.probing = s.failures, s.open, false
	b.openedAt, b.probeAt, b.backoff = time.Time{}, time.Time{}, 0
	if s.open {
		b.openedAt, b.probeAt = s.openedAt, s.nextProbe
		b.backoff = min(max(s.backoff, b.probeMin), b.probeMax)
	}
}

// breakerRecord is s as the store keeps it for callback at url (redacted).
func breakerRecord(callback, url string, s breakerStatus, now time.Time) store.Breaker {
	r := store.Breaker{Callback: callback, URL: url, State: string(BreakerClosed), Failures: s.failures, UpdatedAt: now}
	if s.open {
		r.State, r.OpenedAt, r.NextProbe, r.Backoff = string(BreakerOpen), s.openedAt, s.nextProbe, s.backoff
		if s.probing {
			r.State = string(BreakerHalfOpen)
		}
	}
	return r
}

// breakerFromRecord is the state r records; ok is false for a state this
// version does not know (the breaker then starts closed).
func breakerFromRecord(r store.Breaker) (s breakerStatus, ok bool) {
	s.failures = r.Failures
	switch BreakerState(r.State) {
	case BreakerClosed:
	case BreakerOpen, BreakerHalfOpen:
		s.open, s.openedAt, s.nextProbe, s.backoff = true, r.OpenedAt, r.NextProbe, r.Backoff
	default:
		return breakerStatus{}, false
	}
	return s, true
}

// Breakers is what a lane reads of its callback's breaker when it starts:
// the state the previous dispatcher recorded.
type Breakers interface {
	Breaker(ctx context.Context, callback string) (store.Breaker, bool, error)
}

// loadBreaker restores the callback's recorded breaker; the lane calls it
// before its first send. Without a record, with one about another URL
// (the breaker judges a receiver, and the callback now points elsewhere),
// or when the store cannot be read, the breaker starts closed.
func (l *lane) loadBreaker(ctx context.Context) {
	if l.deps.breakers == nil {
		return
	}
	r, ok, err := l.deps.breakers.Breaker(ctx, l.name)
	if err != nil {
		if ctx.Err() == nil {
			l.log.Warn("reading the recorded circuit breaker failed; starting closed", "err", err)
		}
		return
	}
	if !ok {
		// Nothing recorded is a closed breaker: no record is due until
		// it changes.
		l.brMu.Lock()
		l.mu.Lock()
		l.brURL = l.url
		l.mu.Unlock()
		l.brMu.Unlock()
		return
	}
	s, known := breakerFromRecord(r)
	if !known {
		l.log.Warn("recorded circuit breaker state unknown; starting closed", "state", r.State)
		return
	}
	l.brMu.Lock()
	defer l.brMu.Unlock()
	l.mu.Lock()
	other := r.URL != l.url
	if !other {
		l.br.restore(s)
		l.brSaved, l.brURL = l.br.state(), l.url
	}
	l.mu.Unlock()
	if other {
		if s.open {
			l.log.Info("recorded circuit breaker was about another URL; starting closed", "recorded_state", r.State)
		}
		return
	}
	if s.open {
		l.log.Warn("circuit breaker restored open", "consecutive_failures", s.failures, "next_probe", s.nextProbe)
	}
}

// saveBreaker records the breaker in the store when it changed since it
// was last recorded (or restored). A healthy callback's breaker never
// changes, so its sends write nothing here (but one record to replace a
// record about another URL). brMu orders one lane's
// records: each takes the state of its moment and is queued before the
// next is taken, so the last one queued is the newest.
func (l *lane) saveBreaker() {
	if l.deps.saveBreaker == nil {
		return
	}
	l.brMu.Lock()
	defer l.brMu.Unlock()
	l.mu.Lock()
	s, url := l.br.state(), l.url
	changed := s != l.brSaved || url != l.brURL
	l.brSaved, l.brURL = s, url
	l.mu.Unlock()
	if changed {
		l.deps.saveBreaker(breakerRecord(l.name, url, s, l.deps.now()))
	}
}

// saveBreaker queues a lane's breaker record for commit behind the writes
// before it, so that on a shared store it is fenced like every leader
// write. A lost record leaves the breaker in memory unaffected and only
// means that the next dispatcher starts from an older state (the next
// change records it whole), so a failure is only logged.
func (d *Dispatcher) saveBreaker(b store.Breaker) {
	w := store.Write{Breakers: []store.Breaker{b}}
	logErr := func(err error) {
		if err != nil {
			d.log.Debug("recording the circuit breaker failed", "callback", b.Callback, "err", err)
		}
	}
	if err := d.c.submit(w, logErr); err != nil {
		err = d.st.Commit(context.Background(), w)
		d.health.observe(err)
		logErr(err)
	}
}
