package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// Defaults and reload behaviour are written once, as struct tags on the
// configuration types:
//
//   - `default:"5s"` is the field's default (durations in parseDuration's
//     syntax, numbers, strings). Default() and defaultCallback() are built
//     from them, ApplyDefaults fills zero fields from them, and
//     RegisterFlags shows them. `zero:"deliberate"` marks a field whose
//     zero value is a choice (jitter 0), which ApplyDefaults keeps.
//   - `reload:"live"` or `reload:"restart"` says whether a reload applies
//     the field, or it needs a restart; a tag on a struct field covers
//     every field below it. RestartRequired is derived from these tags, and
//     a test fails for any field that has neither.

// setDefaults sets every field of v (a struct) that has a default tag,
// recursively. With onlyZero, only zero fields are set, and fields marked
// zero:"deliberate" are left alone.
func setDefaults(v reflect.Value, onlyZero bool) {
	t := v.Type()
	for i := range t.NumField() {
		f, fv := t.Field(i), v.Field(i)
		if !f.IsExported() {
			continue
		}
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			setDefaults(fv, onlyZero)
			continue
		}
		def, ok := f.Tag.Lookup("default")
		if !ok || (onlyZero && (!fv.IsZero() || f.Tag.Get("zero") == "deliberate")) {
			continue
		}
		if err := setValue(fv, def); err != nil {
			// A tag is a constant of this package: a bad one is a bug
			// that every test run reports at once.
			panic(fmt.Sprintf("config: default tag of %s.%s: %v", t.Name(), f.Name, err))
		}
	}
}

// setValue parses s into v, by v's type.
func setValue(v reflect.Value, s string) error {
	switch {
	case v.Type() == durationType:
		d, err := parseDuration(s)
		v.SetInt(int64(d))
		return err
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Int, v.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(s, 0, 64)
		v.SetInt(n)
		return err
	case v.Kind() == reflect.Float64:
		x, err := strconv.ParseFloat(s, 64)
		v.SetFloat(x)
		return err
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		v.SetBool(b)
		return err
	default:
		return fmt.Errorf("no default for a %s", v.Type())
	}
	return nil
}

// defaultCallback holds the defaults a callback starts from. The tags are
// read once: a large file starts thousands of callbacks from it. The
// defaults hold no pointer, map or slice, so copies share nothing.
func defaultCallback() Callback { return callbackDefaults() }

var callbackDefaults = sync.OnceValue(func() Callback {
	var cb Callback
	setDefaults(reflect.ValueOf(&cb).Elem(), false)
	return cb
})

// ApplyDefaults fills callback fields a configuration built in code left
// zero, as Load does for keys absent from the file (the `default` tags),
// and inherits timeout and retries from Delivery and the CloudEvents
// source from the upstream. Zero values that may be deliberate (jitter 0,
// max_attempts 0) are kept.
func (c *Config) ApplyDefaults() {
	for i := range c.Callbacks {
		setDefaults(reflect.ValueOf(&c.Callbacks[i]).Elem(), true)
	}
	c.inherit()
}

// RestartRequired lists the keys that differ between old and new but are
// only read at start (`reload:"restart"`), in the order of the Config
// struct. Lists and maps count as one key ("watch.headers"); an empty one
// equals an absent one.
func RestartRequired(old, new *Config) []string {
	var out []string
	var walk func(a, b reflect.Value, prefix string, restart bool)
	walk = func(a, b reflect.Value, prefix string, restart bool) {
		t := a.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			r := restart
			if tag, ok := f.Tag.Lookup("reload"); ok {
				r = tag == "restart"
			}
			key := join(prefix, yamlName(f))
			fa, fb := a.Field(i), b.Field(i)
			if f.Type.Kind() == reflect.Struct && f.Type != durationType {
				walk(fa, fb, key, r)
				continue
			}
			if r && !sameValue(fa, fb) {
				out = append(out, key)
			}
		}
	}
	walk(reflect.ValueOf(old).Elem(), reflect.ValueOf(new).Elem(), "", false)
	return out
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

// sameValue compares two field values; nil and empty lists and maps are
// the same.
func sameValue(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Slice, reflect.Map:
		if a.Len() == 0 && b.Len() == 0 {
			return true
		}
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}
