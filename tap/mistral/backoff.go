package mistral

import (
	"sync"
	"time"
)

// MaxBackoff is the longest Backoff: a poller retries an unreachable engine
// at least this often.
const MaxBackoff = 30 * time.Second

// Backoff is the delay before the next call after a failed one, given the
// delay before the failed call (the poll interval after a success, 0 at the
// start): it doubles, and is at least interval and one second, at most
// MaxBackoff.
func Backoff(prev, interval time.Duration) time.Duration {
	return min(max(2*prev, interval, time.Second), MaxBackoff)
}

// Outage tells which failures are news, so that a poller logs an outage
// once rather than at every retry: the first failure and one whose message
// differs from the previous one, and the first success after a failure. The
// zero value is ready; it is safe for concurrent use.
type Outage struct {
	mu      sync.Mutex
	lastErr string
}

// Failed records a failure and reports whether it is news.
func (o *Outage) Failed(err error) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	news := err.Error() != o.lastErr
	o.lastErr = err.Error()
	return news
}

// Recovered records a success and reports whether it ends an outage.
func (o *Outage) Recovered() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	had := o.lastErr != ""
	o.lastErr = ""
	return had
}
