package payload

import (
	"strconv"
	"unicode/utf8"
)

// The formats need exact control over key order and byte layout (the
// "mistral" format must equal Python's json.dumps output byte for byte), so
// objects are written by hand from an ordered list of fields instead of
// through encoding/json and a map.

// field is one key/value of an ordered JSON object. val is one of: string,
// *string (nil → null), nil, bool, uint64, obj, rawJSON.
type field struct {
	key string
	val any
}

// obj is a JSON object whose keys keep their order.
type obj []field

// style selects the byte layout.
type style int

const (
	// compact is Go's encoding/json layout without HTML escaping:
	// {"a":1,"b":"é"}.
	compact style = iota
	// python is json.dumps(data) with Python's defaults: separators ", " and
	// ": ", ensure_ascii=True (every character outside U+0020..U+007E is
	// written as a lowercase \uXXXX escape, with surrogate pairs).
	python
)

func (o obj) appendJSON(b []byte, s style) []byte {
	b = append(b, '{')
	for i, f := range o {
		if i > 0 {
			if s == python {
				b = append(b, ',', ' ')
			} else {
				b = append(b, ',')
			}
		}
		b = appendString(b, f.key, s)
		if s == python {
			b = append(b, ':', ' ')
		} else {
			b = append(b, ':')
		}
		b = appendValue(b, f.val, s)
	}
	return append(b, '}')
}

// toMap converts o to plain Go values for templates (toJson of the result
// loses the key order, which templates do not rely on).
func (o obj) toMap() map[string]any {
	m := make(map[string]any, len(o))
	for _, f := range o {
		switch v := f.val.(type) {
		case *string:
			if v == nil {
				m[f.key] = nil
			} else {
				m[f.key] = *v
			}
		case obj:
			m[f.key] = v.toMap()
		default:
			m[f.key] = v
		}
	}
	return m
}

// rawJSON is already-encoded JSON, inserted as is.
type rawJSON []byte

func appendValue(b []byte, v any, s style) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return appendString(b, v, s)
	case *string:
		if v == nil {
			return append(b, "null"...)
		}
		return appendString(b, *v, s)
	case bool:
		return strconv.AppendBool(b, v)
	case uint64:
		return strconv.AppendUint(b, v, 10)
	case obj:
		return v.appendJSON(b, s)
	case rawJSON:
		return append(b, v...)
	}
	// Unreachable: every value is built in this package from the types above.
	return append(b, "null"...)
}

const hexDigits = "0123456789abcdef"

func appendU(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}

// appendString writes a JSON string. Invalid UTF-8 becomes U+FFFD, as
// Python would have decoded it with errors="replace".
func appendString(b []byte, str string, s style) []byte {
	b = append(b, '"')
	for i := 0; i < len(str); {
		c := str[i]
		if c < utf8.RuneSelf {
			i++
			switch c {
			case '"':
				b = append(b, '\\', '"')
			case '\\':
				b = append(b, '\\', '\\')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				if c < 0x20 || (s == python && c == 0x7f) {
					b = appendU(b, rune(c))
				} else {
					b = append(b, c)
				}
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(str[i:])
		i += size
		switch {
		case s == python && r > 0xffff:
			r -= 0x10000
			b = appendU(b, 0xd800+(r>>10)&0x3ff)
			b = appendU(b, 0xdc00+r&0x3ff)
		case s == python:
			b = appendU(b, r)
		case r == utf8.RuneError && size == 1:
			b = append(b, "\ufffd"...)
		case r == '\u2028' || r == '\u2029':
			// Valid JSON, but not valid in JavaScript string literals; escape
			// like encoding/json does.
			b = appendU(b, r)
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}
