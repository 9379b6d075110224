package payload

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// FuncMap returns the functions templates (bodies and header values) may
// call, in addition to text/template's builtins:
//
//	toJson v        v as compact JSON (no HTML escaping); use it to embed
//	                strings safely: {"name": {{ toJson .Event.WorkflowName }}}
//	toPrettyJson v  v as JSON indented by two spaces
//	upper s, lower s
//	                case conversion of s's text
//	default d v     v, or d when v is empty (nil, nil pointer, "", 0, false,
//	                empty slice/map); pointers are dereferenced
//	quote s         s as a Go-syntax double-quoted string (not JSON: use
//	                toJson for JSON)
//	join sep list   the elements of list joined by sep
//	now             the current time (makes the output vary per attempt of
//	                rendering, not per HTTP attempt)
//	unixTime t      t as Unix seconds
//	rfc3339 t       t in UTC as RFC 3339 with nanoseconds
//
// Functions that take text accept strings, named string types (such as
// event.Type), *string (nil is "") and fmt.Stringers.
func FuncMap() template.FuncMap {
	return template.FuncMap{
		"toJson":       toJSON,
		"toPrettyJson": toPrettyJSON,
		"upper":        func(v any) string { return strings.ToUpper(text(v)) },
		"lower":        func(v any) string { return strings.ToLower(text(v)) },
		"default":      dflt,
		"quote":        func(v any) string { return strconv.Quote(text(v)) },
		"join":         join,
		"now":          time.Now,
		"unixTime":     func(t time.Time) int64 { return t.Unix() },
		"rfc3339":      func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
	}
}

func toJSON(v any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("toJson: %w", err)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

func toPrettyJSON(v any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("toPrettyJson: %w", err)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// text renders v as text for the string functions.
func text(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case *string:
		if v == nil {
			return ""
		}
		return *v
	case fmt.Stringer:
		return v.String()
	}
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return ""
		}
		rv = rv.Elem()
	}
	if rv.Kind() == reflect.String {
		return rv.String()
	}
	return fmt.Sprint(rv.Interface())
}

func dflt(d, v any) any {
	rv := reflect.ValueOf(v)
	for rv.IsValid() && rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return d
		}
		rv = rv.Elem()
	}
	if !rv.IsValid() || rv.IsZero() {
		return d
	}
	if k := rv.Kind(); (k == reflect.Slice || k == reflect.Map) && rv.Len() == 0 {
		return d
	}
	return rv.Interface()
}

func join(sep string, list any) (string, error) {
	rv := reflect.ValueOf(list)
	if !rv.IsValid() {
		return "", nil
	}
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return "", fmt.Errorf("join: want a list, got %T", list)
	}
	parts := make([]string, rv.Len())
	for i := range parts {
		parts[i] = text(rv.Index(i).Interface())
	}
	return strings.Join(parts, sep), nil
}
