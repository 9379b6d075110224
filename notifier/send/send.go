// Package send performs one delivery of a rendered notification: a short
// series of in-process attempts with go-retryablehttp, signed per attempt,
// and classifies the outcome for the outbox (success, retry later,
// permanent failure, endpoint gone).
package send

import (
	"net/http"
	"time"
)

// Request is one notification ready to send.
type Request struct {
	Callback string // callback name, for logs and metrics
	// Method is the HTTP method; GET, HEAD and DELETE requests carry no
	// body (nor Content-Type); the signature then covers an empty body.
	Method string
	// URL is the receiver, rendered from a URL template when the callback
	// has one; the SSRF guard checks the address it resolves to when the
	// connection is made.
	URL    string
	Header http.Header // format and user headers; send adds webhook-* headers
	Body   []byte
	// EventID is sent as webhook-id on every attempt (and is the AMQP
	// message_id).
	EventID string
	// RootID is the event's root execution id (an AMQP header).
	RootID string
	// Transport is the callback's type: "http" (this package; "" too) or
	// a message transport such as "amqp"; notifier.Transports routes on it.
	Transport string
	// Topic is the rendered routing key (AMQP) or subject of a message
	// transport; unused by HTTP.
	Topic string
	// Secrets sign each attempt (Standard Webhooks v1); none means unsigned.
	Secrets []string
	// Conceal lists values that the Result's error and the logs must not
	// show, such as the parts of URL that came from ${NAME} (see
	// config.Callback.ExpandedSecrets); URL's conventional credentials
	// are hidden without being listed (redact.URL).
	Conceal []string
	// Timeout bounds one attempt.
	Timeout time.Duration
	// Retries is the number of in-process retries after the first attempt.
	Retries int
	// RetryWaitMin and RetryWaitMax bound the jittered backoff between
	// in-process attempts; RetryWaitMax also caps Retry-After.
	RetryWaitMin, RetryWaitMax time.Duration
}

// Outcome classifies a finished Send.
type Outcome int

const (
	// Delivered: a 2xx response.
	Delivered Outcome = iota
	// Retryable: connection error, timeout, 408, 425, 429 or 5xx after the
	// in-process retries; the outbox tries again later.
	Retryable
	// Permanent: any other 4xx, 3xx (redirects are not followed), a refused
	// (SSRF) destination or an invalid request; the delivery is dead.
	Permanent
	// Gone: 410; the callback is disabled.
	Gone
)

func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case Retryable:
		return "retryable"
	case Permanent:
		return "permanent"
	case Gone:
		return "gone"
	}
	return "unknown"
}

// Result is what Send reports.
type Result struct {
	Outcome Outcome
	// Status is the last HTTP status, 0 if no response arrived.
	Status int
	// RetryAfter is the receiver's Retry-After on the last response, if any
	// (uncapped; the caller caps it).
	RetryAfter time.Duration
	// Err describes a failure, with secrets redacted. Nil on Delivered.
	Err error
	// Attempts is how many HTTP attempts were made.
	Attempts int
	// Duration is the wall time of the whole Send.
	Duration time.Duration
}
