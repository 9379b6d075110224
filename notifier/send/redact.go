package send

import (
	"errors"
	"net/url"
	"strings"

	"github.com/mistral-tap/mistral-tap/config/redact"
)

// concealer hides a request's secrets in the errors it produces: the
// URL's conventional credentials (redact.URL) and every value of
// Request.Conceal, wherever the error text quotes it (a DNS error names
// the host, a receiver's answer may echo the path).
type concealer struct {
	secrets []string
	rep     *strings.Replacer
}

func newConcealer(secrets []string) concealer {
	return concealer{secrets: secrets, rep: redact.NewReplacer(secrets, 1)}
}

// url is raw as errors and logs show it.
func (c concealer) url(raw string) string { return redact.URL(raw, c.secrets...) }

// err rewrites the URL inside every *url.Error in err's chain, in place
// (the errors are ours, freshly made by this attempt), and hides the
// secrets in the text of the whole chain.
func (c concealer) err(err error) error {
	if err == nil {
		return nil
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if ue, ok := e.(*url.Error); ok {
			ue.URL = c.url(ue.URL)
		}
	}
	if len(c.secrets) == 0 {
		return err
	}
	text := err.Error()
	if hidden := c.rep.Replace(text); hidden != text {
		return &concealedError{text: hidden, err: err}
	}
	return err
}

// concealedError is an error whose text had secrets removed; errors.Is
// and errors.As still see the original chain.
type concealedError struct {
	text string
	err  error
}

func (e *concealedError) Error() string { return e.text }
func (e *concealedError) Unwrap() error { return e.err }
