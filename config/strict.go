package config

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// koanf ignores unknown keys (a typo `urll:` silently gives an empty URL)
// and its strict mode breaks `7d` durations (libraries-and-style.md §3), so
// the file is checked a second time here: the raw YAML node tree is walked
// against Config's `yaml` tags. The walk reports unknown keys and values
// of the wrong type with their line:column, and records every node's
// position so that Validate's problems can point into the file too.
//
// Top-level keys starting with "x-" are ignored: they are the customary
// place for YAML anchors shared by several callbacks (`x-defaults: &d`).

// fileIndex finds the position of absolute key paths
// ("callbacks.0.events.1") in the parsed file. It walks the tree for each
// problem rather than recording every node's position: problems are few,
// nodes can be millions.
type fileIndex struct {
	file string
	// callbacks is the length of the file's callbacks list.
	callbacks int
	// root is the document's top-level mapping, nil for an empty file or
	// one that is not a mapping, or after release.
	root *yaml.Node
	// data is the file, parsed again when a problem is located after
	// release.
	data     []byte
	released bool
}

// release drops the parsed tree, which is several times the size of the
// file, once the configuration is decoded; locate parses the file again
// if it is needed (a problem to place), so that a large valid file never
// holds the tree and the compiled callbacks at once.
func (ix *fileIndex) release() {
	if ix != nil && ix.root != nil {
		ix.root, ix.released = nil, true
	}
}

// locate fills e's File, Line and Column from the value node at e.Path
// or, when that key is absent from the file, its nearest ancestor; it
// leaves e alone when no part of the path is in the file (the value is a
// default).
func (ix *fileIndex) locate(e *FieldError) {
	if ix == nil || e.File != "" || e.Path == "" {
		return
	}
	if ix.released {
		var doc yaml.Node
		if yaml.Unmarshal(ix.data, &doc) == nil && len(doc.Content) > 0 {
			ix.root = deref(doc.Content[0])
		}
		ix.released = false
	}
	if ix.root == nil || ix.root.Kind != yaml.MappingNode {
		return
	}
	if n := find(ix.root, strings.Split(strings.TrimSuffix(e.Path, "."), ".")); n != nil {
		e.File, e.Line, e.Column = ix.file, n.Line, n.Column
	}
}

// find returns the deepest node along path below n, nil when not even the
// first key is there. A mapping key may itself contain dots (a header
// name), so longer keys are tried too.
func find(n *yaml.Node, path []string) *yaml.Node {
	n = deref(n)
	if len(path) == 0 || n == nil {
		return nil
	}
	switch n.Kind {
	case yaml.SequenceNode:
		i, err := strconv.Atoi(path[0])
		if err != nil || i < 0 || i >= len(n.Content) {
			return nil
		}
		return deeper(deref(n.Content[i]), path[1:])
	case yaml.MappingNode:
		kv := pairs(n)
		for j := 1; j <= len(path); j++ {
			key := strings.Join(path[:j], ".")
			// The last pair wins: explicit keys come after merged ones.
			for i := len(kv) - 1; i >= 0; i-- {
				if kv[i].key.Value == key {
					return deeper(kv[i].val, path[j:])
				}
			}
		}
	}
	return nil
}

// deeper is find below n, or n itself when the rest is not there.
func deeper(n *yaml.Node, rest []string) *yaml.Node {
	if d := find(n, rest); d != nil {
		return d
	}
	return n
}

var durationType = reflect.TypeOf(time.Duration(0))

type strictWalker struct {
	ix   *fileIndex
	errs problems
	// budget is how many more nodes the walk may visit: aliases can make
	// a small file a huge tree (nested anchors, "billion laughs").
	budget int
	// fatal, when set, makes the file invalid YAML as a whole.
	fatal error
}

// errAliasing refuses a file whose aliases expand it far beyond its size,
// as koanf's YAML decoder does.
var errAliasing = fmt.Errorf("%w: document contains excessive aliasing", ErrSyntax)

// countNodes counts the nodes of a tree without following aliases.
func countNodes(n *yaml.Node) int {
	c := 1
	for _, k := range n.Content {
		c += countNodes(k)
	}
	return c
}

// strictCheck parses data as YAML and walks it against Config. A syntax
// error is returned as the only problem.
func strictCheck(file string, data []byte) (*fileIndex, problems) {
	w := &strictWalker{ix: &fileIndex{file: file, data: data}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return w.ix, problems{yamlSyntaxError(file, err)}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return w.ix, nil // empty file: defaults only
	}
	root := deref(doc.Content[0])
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return w.ix, nil
	}
	if root.Kind == yaml.MappingNode {
		w.ix.root = root
	}
	// Shared anchors (x-defaults merged into every callback) legitimately
	// repeat subtrees; a thousandfold blow-up is an attack or an accident.
	w.budget = 1000*countNodes(root) + 100000
	w.walk(root, reflect.TypeOf(Config{}), "", "", "")
	if w.fatal != nil {
		return w.ix, problems{{File: file, Msg: w.fatal.Error(), err: w.fatal}}
	}
	for _, e := range w.errs {
		if e.Path == "" {
			e.File, e.Line, e.Column = file, root.Line, root.Column
		}
		w.ix.locate(e)
	}
	return w.ix, w.errs
}

var yamlLine = regexp.MustCompile(`^yaml: (?:unmarshal errors:\n\s*)?line (\d+): (.*)$`)

// yamlSyntaxError turns a yaml.v3 error into a FieldError with the line
// it names.
func yamlSyntaxError(file string, err error) *FieldError {
	msg := strings.TrimSpace(err.Error())
	fe := &FieldError{File: file, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: "), err: ErrSyntax}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		fe.Msg = "invalid YAML: " + m[2]
	}
	return fe
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

type pair struct{ key, val *yaml.Node }

// pairs lists a mapping's key/value pairs, with `<<` merge keys expanded
// (merged pairs first, so that explicit keys win like in the YAML decoder).
func pairs(n *yaml.Node) []pair {
	ps, _ := appendPairs(nil, n)
	return ps
}

// maxPairs bounds the pairs of one mapping once merges are expanded:
// nested merge keys can multiply a few lines into millions of pairs.
const maxPairs = 100000

// errMerge is YAML's own refusal of a bad merge value; koanf would give
// it for the whole file.
var errMerge = fmt.Errorf("%w: map merge requires map or sequence of maps as the value", ErrSyntax)

// appendPairs appends n's pairs (see pairs) to out. It stops with
// errAliasing beyond maxPairs and with errMerge at a merge key whose value
// is not a mapping or a list of mappings.
func appendPairs(out []pair, n *yaml.Node) ([]pair, error) {
	var own []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		if k.Tag == "!!merge" || (k.Value == "<<" && k.Style == 0 && k.Tag != "!!str") {
			merged := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				merged = v.Content
			}
			for _, m := range merged {
				if m = deref(m); m.Kind != yaml.MappingNode {
					return out, errMerge
				}
				var err error
				if out, err = appendPairs(out, m); err != nil {
					return out, err
				}
			}
			continue
		}
		own = append(own, pair{k, v})
	}
	out = append(out, own...)
	if len(out) > maxPairs {
		return out, errAliasing
	}
	return out, nil
}

// structFields maps yaml tag names to field indexes, cached per type.
var fieldCache sync.Map

func structFields(t reflect.Type) map[string]reflect.StructField {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.StructField)
	}
	m := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		m[name] = f
	}
	fieldCache.Store(t, m)
	return m
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// walk checks node n against type t. path is absolute; cb is the
// enclosing callback's label and rel the path relative to it.
func (w *strictWalker) walk(n *yaml.Node, t reflect.Type, path, cb, rel string) {
	if w.budget--; w.budget < 0 && w.fatal == nil {
		w.fatal = errAliasing
	}
	if w.fatal != nil {
		return
	}
	n = deref(n)
	field := rel
	if cb == "" {
		field = path
	}
	bad := func(want string) {
		if path == "" {
			want += " of keys (listen, upstream, callbacks, ...)"
		}
		w.errs.add(FieldError{Path: path, Callback: cb, Field: field, Value: redactIfSecret(rel, n.Value), Msg: fmt.Sprintf("want %s, got %s", want, describe(n))})
	}
	if isNull(n) {
		return // null leaves the default in place, as in koanf
	}
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			bad("a duration (e.g. 5s, 7d)")
			return
		}
		if n.Tag == "!!int" || n.Tag == "!!float" {
			if f, err := strconv.ParseFloat(n.Value, 64); err == nil && f == 0 {
				return
			}
			w.errs.add(FieldError{Path: path, Callback: cb, Field: field, Value: n.Value, Msg: fmt.Sprintf("duration %s needs a unit (e.g. %ss)", n.Value, n.Value)})
			return
		}
		if _, err := parseDuration(n.Value); err != nil {
			w.errs.add(FieldError{Path: path, Callback: cb, Field: field, Value: n.Value, Msg: fmt.Sprintf("invalid duration %q (e.g. 500ms, 5s, 10m, 7d)", n.Value)})
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		w.walk(n, t.Elem(), path, cb, rel)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			bad("a string")
		}
	case reflect.Int, reflect.Int64:
		if n.Kind != yaml.ScalarNode {
			bad("an integer")
		} else if _, err := strconv.ParseInt(n.Value, 0, 64); err != nil {
			bad("an integer")
		}
	case reflect.Float64:
		if n.Kind != yaml.ScalarNode {
			bad("a number")
		} else if _, err := strconv.ParseFloat(n.Value, 64); err != nil {
			bad("a number")
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode {
			bad("true or false")
		} else if _, err := strconv.ParseBool(n.Value); err != nil {
			bad("true or false")
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			bad("a list")
			return
		}
		if path == "callbacks" {
			w.ix.callbacks = len(n.Content)
		}
		for i, item := range n.Content {
			p := join(path, strconv.Itoa(i))
			if path == "callbacks" {
				w.walk(item, t.Elem(), p, callbackLabelNode(deref(item), i), "")
				continue
			}
			w.walk(item, t.Elem(), p, cb, rel)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			bad("a mapping")
			return
		}
		kvs, err := appendPairs(nil, n)
		if err != nil {
			w.fatal = err
			return
		}
		for _, kv := range kvs {
			w.walk(kv.val, t.Elem(), join(path, kv.key.Value), cb, rel)
		}
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			bad("a mapping")
			return
		}
		fields := structFields(t)
		kvs, err := appendPairs(nil, n)
		if err != nil {
			w.fatal = err
			return
		}
		for _, kv := range kvs {
			k := kv.key.Value
			f, ok := fields[k]
			if !ok {
				if path == "" && strings.HasPrefix(k, "x-") {
					continue
				}
				kp, kr := join(path, k), join(rel, k)
				msg := "unknown key"
				if s := closest(k, fields); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				kf := kr
				if cb == "" {
					kf = kp
				}
				// Located at the key itself: it has no value node of its own.
				w.errs = append(w.errs, &FieldError{Path: kp, Callback: cb, Field: kf, Value: k, Msg: msg,
					File: w.ix.file, Line: kv.key.Line, Column: kv.key.Column})
				continue
			}
			w.walk(kv.val, f.Type, join(path, k), cb, join(rel, k))
		}
	}
}

// callbackLabelNode is CallbackLabel for a raw callback mapping.
func callbackLabelNode(n *yaml.Node, i int) string {
	if n.Kind == yaml.MappingNode {
		for _, kv := range pairs(n) {
			if kv.key.Value == "name" && kv.val.Kind == yaml.ScalarNode && kv.val.Value != "" && !isNull(kv.val) {
				return kv.val.Value
			}
		}
	}
	return "#" + strconv.Itoa(i+1)
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strings.TrimPrefix(n.Tag, "!!") + " " + strconv.Quote(n.Value)
}

// redactIfSecret hides values of keys that hold secrets.
func redactIfSecret(rel, v string) string {
	switch {
	case strings.HasPrefix(rel, "headers"), strings.HasPrefix(rel, "secret"),
		strings.HasPrefix(rel, "watch.headers"), rel == "admin.token", rel == "url", rel == "amqp.url", rel == "store.dsn", rel == "listeners.key":
		return redacted
	}
	return v
}

// closest suggests a known key within edit distance 2 of k.
func closest(k string, fields map[string]reflect.StructField) string {
	best, bestD := "", 3
	for name := range fields {
		if d := editDistance(k, name); d < bestD || (d == bestD && name < best) {
			best, bestD = name, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

var dayDuration = regexp.MustCompile(`(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)d`)

// parseDuration is time.ParseDuration plus koanf's "d" (24h) unit, so that
// the strict pass accepts exactly what koanf's decode hook accepts.
func parseDuration(s string) (time.Duration, error) {
	s = dayDuration.ReplaceAllStringFunc(s, func(day string) string {
		f, err := strconv.ParseFloat(day[:len(day)-1], 64)
		if err != nil {
			return day
		}
		return strconv.FormatFloat(f*24, 'f', -1, 64) + "h"
	})
	return time.ParseDuration(s)
}
