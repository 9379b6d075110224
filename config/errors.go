package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// FieldError is one configuration problem. Load and Validate return every
// problem at once, joined with errors.Join; Problems gets them back.
type FieldError struct {
	// File is the configuration file the problem comes from, "" when it
	// comes from defaults, the environment or flags.
	File string
	// Line and Column locate the offending YAML node (1-based); 0 when
	// unknown.
	Line, Column int
	// Callback is the enclosing callback's name ("#3" for an unnamed third
	// callback), "" outside callbacks.
	Callback string
	// Field is the key path, relative to the callback inside one (e.g.
	// "retry.multiplier"), absolute otherwise (e.g. "watch.interval").
	Field string
	// Value is the offending value as written, redact.Marker for secrets,
	// header values and URLs carrying credentials.
	Value string
	// Msg says what is wrong. It never contains a secret.
	Msg string
	// Path is the absolute key path ("callbacks.2.events.1") that locates
	// the YAML node. Checks outside this package (Source.Check) set it so
	// that Load can place their problems in the file.
	Path string

	// err is what errors.Is sees through Unwrap (ErrSyntax).
	err error
}

// ErrSyntax is the problem of a file that is not YAML at all:
// errors.Is(err, ErrSyntax) for what Load returns then.
var ErrSyntax = errors.New("invalid YAML")

// Unwrap returns ErrSyntax for a YAML syntax error, nil otherwise.
func (e *FieldError) Unwrap() error { return e.err }

// Error formats the problem as
// `file:line:col: callback "ops": field events: unknown event ...`,
// leaving out the parts that are unknown.
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
			if e.Column > 0 {
				b.WriteString(":" + strconv.Itoa(e.Column))
			}
		}
		b.WriteString(": ")
	}
	if e.Callback != "" {
		if strings.HasPrefix(e.Callback, "#") {
			b.WriteString("callback " + e.Callback + ": ")
		} else {
			fmt.Fprintf(&b, "callback %q: ", e.Callback)
		}
	}
	if e.Field != "" {
		b.WriteString("field " + e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Problems flattens an error returned by Load or Validate into its
// FieldErrors, in order. Errors that are not FieldErrors are wrapped in one
// with only Msg set, so that a caller printing Problems loses nothing.
func Problems(err error) []*FieldError {
	if err == nil {
		return nil
	}
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		if fe, ok := err.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var fe *FieldError
		if errors.As(err, &fe) {
			out = append(out, fe)
			return
		}
		out = append(out, &FieldError{Msg: err.Error()})
	}
	walk(err)
	return out
}

// problems collects FieldErrors.
type problems []*FieldError

// add records e.
func (p *problems) add(e FieldError) { *p = append(*p, &e) }

// key records a problem of a key outside callbacks, whose path and field
// are the same ("watch.interval").
func (p *problems) key(key, value, msg string) {
	p.add(FieldError{Path: key, Field: key, Value: value, Msg: msg})
}

// field returns a reporter of (value, msg) problems of key.
func (p *problems) field(key string) func(value, msg string) {
	return func(value, msg string) { p.key(key, value, msg) }
}

// cbProblems records the problems of one callback.
type cbProblems struct {
	p     *problems
	base  string // "callbacks.3."
	label string // CallbackLabel
}

// add records a problem of field (relative to the callback, also its path).
func (c cbProblems) add(field, value, msg string) { c.at(field, field, value, msg) }

// field returns a reporter of (value, msg) problems of field.
func (c cbProblems) field(field string) func(value, msg string) {
	return func(value, msg string) { c.add(field, value, msg) }
}

// at records a problem at the relative path sub, shown as field
// ("events.2" shown as "events").
func (c cbProblems) at(sub, field, value, msg string) {
	c.p.add(FieldError{Path: c.base + sub, Callback: c.label, Field: field, Value: value, Msg: msg})
}

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	errs := make([]error, len(p))
	for i, e := range p {
		errs[i] = e
	}
	return errors.Join(errs...)
}
