package notifier

import (
	"fmt"
	"math"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/notifier/store"
)

// Default values used where the configuration leaves a field zero.
const (
	DefaultConcurrency     = 4
	DefaultInitialInterval = 5 * time.Second
	DefaultMaxInterval     = 10 * time.Minute
	DefaultMultiplier      = 2
	DefaultMaxAge          = 24 * time.Hour
	DefaultBreakerProbeMax = 5 * time.Minute
)

// policy is a callback's retry policy with defaults filled in.
func policy(p config.RetryPolicy) config.RetryPolicy {
	if p.InitialInterval <= 0 {
		p.InitialInterval = DefaultInitialInterval
	}
	if p.MaxInterval <= 0 {
		p.MaxInterval = DefaultMaxInterval
	}
	if p.Multiplier < 1 {
		p.Multiplier = DefaultMultiplier
	}
	if p.Jitter < 0 || p.Jitter > 1 {
		p.Jitter = 0
	}
	if p.MaxAge <= 0 {
		p.MaxAge = DefaultMaxAge
	}
	return p
}

// backoff is the wait after the n-th failed attempt (n >= 1): initial ×
// multiplier^(n-1), capped at max, with ±jitter; r is uniform in [0,1).
func backoff(p config.RetryPolicy, n int, r float64) time.Duration {
	w := float64(p.InitialInterval) * math.Pow(p.Multiplier, float64(n-1))
	if w > float64(p.MaxInterval) || math.IsInf(w, 0) || math.IsNaN(w) {
		w = float64(p.MaxInterval)
	}
	w *= 1 + p.Jitter*(2*r-1)
	if w > float64(p.MaxInterval) {
		w = float64(p.MaxInterval)
	}
	if w < 0 {
		w = 0
	}
	return time.Duration(w)
}

// errText is the last_error recorded for a failed result.
func errText(res send.Result) string {
	if res.Err != nil {
		return res.Err.Error()
	}
	if res.Status != 0 {
		return fmt.Sprintf("HTTP %d", res.Status)
	}
	return res.Outcome.String()
}

// decide turns a send result into the row update for it. removed, when
// set, is why the callback's deliveries are being dead-lettered (it left
// the configuration, the listener was deleted): nothing is retried.
func decide(p config.RetryPolicy, it *item, res send.Result, now time.Time, r float64, removed string) store.Update {
	u := store.Update{ID: it.id, Attempts: it.attempts + 1, LastStatus: res.Status, UpdatedAt: now, NextAt: now}
	switch res.Outcome {
	case send.Delivered:
		u.State = store.Delivered
		return u
	case send.Permanent:
		u.State, u.LastError = store.Dead, errText(res)
		return u
	case send.Gone:
		// The delivery stays pending: the callback is disabled and these
		// resume when it is re-enabled (replay or a new URL).
		u.State, u.LastError = store.Pending, errText(res)
		if removed != "" {
			u.State, u.LastError = store.Dead, removed+"; last error: "+u.LastError
		}
		return u
	}
	u.LastError = errText(res)
	if removed != "" {
		u.State, u.LastError = store.Dead, removed+"; last error: "+u.LastError
		return u
	}
	p = policy(p)
	base := it.created
	if it.replayed.After(base) {
		base = it.replayed
	}
	deadline := base.Add(p.MaxAge)
	switch {
	case p.MaxAttempts > 0 && u.Attempts >= p.MaxAttempts:
		u.State, u.LastError = store.Dead, fmt.Sprintf("max attempts (%d) reached; last error: %s", p.MaxAttempts, u.LastError)
		return u
	case !now.Before(deadline):
		u.State, u.LastError = store.Dead, fmt.Sprintf("max age (%s) exceeded; last error: %s", p.MaxAge, u.LastError)
		return u
	}
	wait := backoff(p, u.Attempts, r)
	if ra := min(res.RetryAfter, p.MaxInterval); ra > wait {
		wait = ra
	}
	u.State, u.NextAt = store.Pending, now.Add(wait)
	if u.NextAt.After(deadline) {
		u.NextAt = deadline // one last attempt at the deadline
	}
	return u
}
