package fakemistral

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// The fake understands a tiny part of YAQL/Jinja: `$.a.b` / `_.a.b`
// (context lookups), `task().result`, `task(name).result|published|state`,
// and JSON literals. A string that is exactly one expression evaluates to
// its value; expressions embedded in text are substituted as text.
var (
	exprRe     = regexp.MustCompile(`<%(.*?)%>|\{\{(.*?)\}\}`)
	wholeRe    = regexp.MustCompile(`^\s*(?:<%(.*?)%>|\{\{(.*?)\}\})\s*$`)
	taskCallRe = regexp.MustCompile(`^task\((\w*)\)(?:\.(\w+))?$`)
)

func (e *Engine) eval(v any, vars map[string]any, cur *task) any {
	switch x := v.(type) {
	case string:
		if m := wholeRe.FindStringSubmatch(x); m != nil {
			return e.evalExpr(m[1]+m[2], vars, cur)
		}
		if !exprRe.MatchString(x) {
			return x
		}
		return exprRe.ReplaceAllStringFunc(x, func(s string) string {
			m := exprRe.FindStringSubmatch(s)
			r := e.evalExpr(m[1]+m[2], vars, cur)
			if str, ok := r.(string); ok {
				return str
			}
			b, _ := json.Marshal(r)
			return string(b)
		})
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			out[k] = e.eval(val, vars, cur)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = e.eval(val, vars, cur)
		}
		return out
	}
	return v
}

func (e *Engine) evalExpr(s string, vars map[string]any, cur *task) any {
	s = strings.TrimSpace(s)
	switch {
	case s == "$" || s == "_":
		return vars
	case strings.HasPrefix(s, "$.") || strings.HasPrefix(s, "_."):
		var v any = vars
		for _, part := range strings.Split(s[2:], ".") {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[part]
		}
		return v
	}
	if m := taskCallRe.FindStringSubmatch(s); m != nil {
		t := cur
		if m[1] != "" && cur != nil {
			t = e.latestTask(cur.ex, m[1])
		}
		if t == nil {
			return nil
		}
		switch m[2] {
		case "", "result":
			return t.Result
		case "published":
			return t.Published
		case "state":
			return t.State
		}
		return nil
	}
	var lit any
	if err := json.Unmarshal([]byte(s), &lit); err == nil {
		return lit
	}
	if len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' {
		return s[1 : len(s)-1]
	}
	return fmt.Sprintf("<unsupported expression: %s>", s)
}

func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case string:
		return x != ""
	case float64:
		return x != 0
	case int:
		return x != 0
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}
