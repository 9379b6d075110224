package config

import (
	"errors"
	"fmt"
	"strings"
)

// expand replaces ${NAME} in s with the variable's value from lookup.
//
// Rules: NAME is [A-Za-z_][A-Za-z0-9_]*; "$${" is a literal "${" (so
// "$${X}" yields "${X}"); a "$" not followed by "{" is kept as is, so
// passwords containing "$" need no escaping. An undefined variable, an
// unterminated "${" or a bad name is an error that names the variable but
// never the value. The values substituted are appended to *used, since
// they are secrets wherever they appear.
func expand(s string, lookup func(string) (string, bool), used *[]string) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] != '$' {
			b.WriteByte(s[i])
			i++
			continue
		}
		if strings.HasPrefix(s[i:], "$${") {
			b.WriteString("${")
			i += 3
			continue
		}
		if !strings.HasPrefix(s[i:], "${") {
			b.WriteByte('$')
			i++
			continue
		}
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			return "", errors.New("unterminated ${ (write $${ for a literal ${)")
		}
		name := s[i+2 : i+2+end]
		if !validVarName(name) {
			return "", fmt.Errorf("bad variable name ${%s}", name)
		}
		v, ok := lookup(name)
		if !ok {
			return "", fmt.Errorf("undefined variable ${%s}", name)
		}
		b.WriteString(v)
		if v != "" {
			*used = append(*used, v)
		}
		i += 2 + end + 1
	}
	return b.String(), nil
}

func validVarName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// envLookup turns an environ list into a lookup function. The last
// definition wins, as with os.Getenv.
func envLookup(environ []string) func(string) (string, bool) {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}
