package payload

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"text/template"
	tparse "text/template/parse"
)

// URL templates. A callback URL containing "{{" is a text/template over the
// same data as bodies (TemplateData), rendered per event. Every value an
// action prints is escaped for the place it lands in, decided from the
// literal text before it (as html/template does for HTML):
//
//	scheme or host  the value must be host characters (letters, digits,
//	                '.', '-', ':', '[', ']'); anything else fails the render
//	path            url.PathEscape: a value is one segment, '/' included
//	query           url.QueryEscape: '&', '=', '#', '+' cannot break out
//	fragment        url.PathEscape
//
// The rendered URL must be an absolute http or https URL. Escaping is
// inserted as a last pipeline command, so {{ .Payload.id | upper }} escapes
// the upper-cased value; actions that only declare variables print nothing
// and are left alone. Branches of if/range/with must end in the context
// they started in (a "?" inside an {{ if }} is refused).

type urlContext int

const (
	ctxStart urlContext = iota // scheme, before "//"
	ctxHost
	ctxPath
	ctxQuery
	ctxFragment
)

var urlEscapers = map[urlContext]string{
	ctxStart: "_urlHost", ctxHost: "_urlHost", ctxPath: "_urlPath", ctxQuery: "_urlQuery", ctxFragment: "_urlPath",
}

func urlFuncs() template.FuncMap {
	return template.FuncMap{
		"_urlPath":  func(v any) string { return url.PathEscape(text(v)) },
		"_urlQuery": func(v any) string { return url.QueryEscape(text(v)) },
		"_urlHost": func(v any) (string, error) {
			s := text(v)
			for i := 0; i < len(s); i++ {
				c := s[i]
				if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-:[]", c) >= 0) {
					return "", fmt.Errorf("value %q cannot be part of a URL's host", s)
				}
			}
			return s, nil
		},
	}
}

// parseURLTemplate compiles a URL template with contextual escaping.
func parseURLTemplate(field, text string) (*template.Template, error) {
	t, err := template.New(field).Funcs(FuncMap()).Funcs(urlFuncs()).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, specErr(field, err)
	}
	if _, err := escapeList(t.Tree, t.Root, ctxStart); err != nil {
		return nil, specErr(field, err)
	}
	return t, nil
}

// escapeList walks n in document order and appends the escaper of the
// current context to every printing action; it returns the context after n.
func escapeList(tr *tparse.Tree, n *tparse.ListNode, c urlContext) (urlContext, error) {
	if n == nil {
		return c, nil
	}
	for _, node := range n.Nodes {
		var err error
		switch x := node.(type) {
		case *tparse.TextNode:
			c = advance(c, string(x.Text))
		case *tparse.ActionNode:
			if len(x.Pipe.Decl) == 0 {
				id := tparse.NewIdentifier(urlEscapers[c]).SetTree(tr).SetPos(x.Pos)
				x.Pipe.Cmds = append(x.Pipe.Cmds, &tparse.CommandNode{NodeType: tparse.NodeCommand, Pos: x.Pos, Args: []tparse.Node{id}})
			}
		case *tparse.IfNode:
			c, err = escapeBranch(tr, &x.BranchNode, c)
		case *tparse.RangeNode:
			c, err = escapeBranch(tr, &x.BranchNode, c)
		case *tparse.WithNode:
			c, err = escapeBranch(tr, &x.BranchNode, c)
		case *tparse.TemplateNode, *tparse.BreakNode, *tparse.ContinueNode, *tparse.CommentNode:
			if _, ok := x.(*tparse.TemplateNode); ok {
				return c, errors.New("{{ template }} is not supported in a URL")
			}
		default:
			return c, fmt.Errorf("unsupported construct %s in a URL", node)
		}
		if err != nil {
			return c, err
		}
	}
	return c, nil
}

func escapeBranch(tr *tparse.Tree, b *tparse.BranchNode, c urlContext) (urlContext, error) {
	a, err := escapeList(tr, b.List, c)
	if err != nil {
		return c, err
	}
	e, err := escapeList(tr, b.ElseList, c)
	if err != nil {
		return c, err
	}
	if a != c || e != c {
		return c, errors.New("a URL part (path, '?' query or '#' fragment) must not start inside {{ if }}, {{ range }} or {{ with }}")
	}
	return c, nil
}

// advance moves the context across literal URL text: the host starts
// after "//", the path at the next '/', the query at '?', the fragment at
// '#'.
func advance(c urlContext, s string) urlContext {
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case c == ctxStart && ch == '/' && i+1 < len(s) && s[i+1] == '/':
			c = ctxHost
			i++
		case (c == ctxStart || c == ctxHost) && ch == '/':
			c = ctxPath
		case c <= ctxPath && ch == '?':
			c = ctxQuery
		case c != ctxFragment && ch == '#':
			c = ctxFragment
		}
	}
	return c
}

// renderURL executes t and checks that the result is an absolute http(s)
// URL. Errors never quote the rendered URL, which may hold credentials.
func renderURL(t *template.Template, data *TemplateData) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	u, err := url.Parse(b.String())
	if err != nil {
		return "", errors.New("rendered URL does not parse")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return "", errors.New("rendered URL is not an absolute http or https URL")
	}
	return u.String(), nil
}
