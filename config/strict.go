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
	if isNull(n) {
		// Not a type error: koanf decodes it to the key's zero value,
		// decodeNode leaves a callback's default in place.
		return
	}
	l := loc{n: n, path: path, cb: cb, rel: rel}
	if t == durationType { // before the kinds: its kind is int64
		w.walkDuration(l)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		w.walk(n, t.Elem(), path, cb, rel)
	case reflect.Slice:
		w.walkList(l, t.Elem())
	case reflect.Map:
		w.walkMap(l, t.Elem())
	case reflect.Struct:
		w.walkStruct(l, t)
	default:
		if s, ok := scalarKinds[t.Kind()]; ok {
			w.walkScalar(l, s)
		}
	}
}

// loc is where the walk is: the (dereferenced) node, its absolute key
// path and, inside a callback, the callback's label and the path relative
// to it.
type loc struct {
	n             *yaml.Node
	path, cb, rel string
}

// field is the key as a problem shows it: relative inside a callback,
// absolute outside.
func (l loc) field() string {
	if l.cb == "" {
		return l.path
	}
	return l.rel
}

// problem records a problem of the value at l.
func (w *strictWalker) problem(l loc, value, msg string) {
	w.errs.add(FieldError{Path: l.path, Callback: l.cb, Field: l.field(), Value: value, Msg: msg})
}

// bad records a value of the wrong kind or syntax at l; want says what
// was expected. The value is redacted when the key holds a secret.
func (w *strictWalker) bad(l loc, want string) {
	if l.path == "" {
		want += " of keys (listen, upstream, callbacks, ...)"
	}
	w.problem(l, redactIfSecret(l.rel, l.n.Value), fmt.Sprintf("want %s, got %s", want, describe(l.n)))
}

// walkDuration checks a duration the way koanf's decode hook reads it:
// a time.ParseDuration string or koanf's "d" unit. A bare number is
// accepted only when 0: any other needs a unit to mean something.
func (w *strictWalker) walkDuration(l loc) {
	n := l.n
	if n.Kind != yaml.ScalarNode {
		w.bad(l, "a duration (e.g. 5s, 7d)")
		return
	}
	if n.Tag == "!!int" || n.Tag == "!!float" {
		if f, err := strconv.ParseFloat(n.Value, 64); err == nil && f == 0 {
			return
		}
		w.problem(l, n.Value, fmt.Sprintf("duration %s needs a unit (e.g. %ss)", n.Value, n.Value))
		return
	}
	if _, err := parseDuration(n.Value); err != nil {
		w.problem(l, n.Value, fmt.Sprintf("invalid duration %q (e.g. 500ms, 5s, 10m, 7d)", n.Value))
	}
}

// scalarKind is what a scalar field wants, as a problem names it, and
// whether a value parses as it (nil: any scalar will do).
type scalarKind struct {
	want   string
	parses func(string) bool
}

// scalarKinds are the scalar kinds Config's fields have; the walk checks
// no other kind.
var scalarKinds = map[reflect.Kind]scalarKind{
	reflect.String:  {"a string", nil},
	reflect.Int:     {"an integer", parsesInt},
	reflect.Int64:   {"an integer", parsesInt},
	reflect.Float64: {"a number", func(s string) bool { _, err := strconv.ParseFloat(s, 64); return err == nil }},
	reflect.Bool:    {"true or false", func(s string) bool { _, err := strconv.ParseBool(s); return err == nil }},
}

func parsesInt(s string) bool { _, err := strconv.ParseInt(s, 0, 64); return err == nil }

// walkScalar checks a string, number or boolean value.
func (w *strictWalker) walkScalar(l loc, s scalarKind) {
	if l.n.Kind != yaml.ScalarNode || (s.parses != nil && !s.parses(l.n.Value)) {
		w.bad(l, s.want)
	}
}

// walkList checks a list's items against elem. It counts the callbacks
// (decodeConfig sizes its slice with it), and each callback's items are
// reported under its label with paths relative to it.
func (w *strictWalker) walkList(l loc, elem reflect.Type) {
	if l.n.Kind != yaml.SequenceNode {
		w.bad(l, "a list")
		return
	}
	if l.path == "callbacks" {
		w.ix.callbacks = len(l.n.Content)
	}
	for i, item := range l.n.Content {
		p := join(l.path, strconv.Itoa(i))
		if l.path == "callbacks" {
			w.walk(item, elem, p, callbackLabelNode(deref(item), i), "")
			continue
		}
		w.walk(item, elem, p, l.cb, l.rel)
	}
}

// walkMap checks a map's values (header maps) against elem, merge keys
// expanded. A bad merge or an alias blow-up makes the file invalid as a
// whole (w.fatal), as it does for koanf.
func (w *strictWalker) walkMap(l loc, elem reflect.Type) {
	if l.n.Kind != yaml.MappingNode {
		w.bad(l, "a mapping")
		return
	}
	kvs, err := appendPairs(nil, l.n)
	if err != nil {
		w.fatal = err
		return
	}
	for _, kv := range kvs {
		w.walk(kv.val, elem, join(l.path, kv.key.Value), l.cb, l.rel)
	}
}

// walkStruct checks a mapping's keys against t's yaml tags and their
// values against the fields' types, merge keys expanded as in walkMap.
// Top-level "x-" keys are skipped: they hold shared anchors.
func (w *strictWalker) walkStruct(l loc, t reflect.Type) {
	if l.n.Kind != yaml.MappingNode {
		w.bad(l, "a mapping")
		return
	}
	fields := structFields(t)
	kvs, err := appendPairs(nil, l.n)
	if err != nil {
		w.fatal = err
		return
	}
	for _, kv := range kvs {
		k := kv.key.Value
		f, ok := fields[k]
		switch {
		case ok:
			w.walk(kv.val, f.Type, join(l.path, k), l.cb, join(l.rel, k))
		case l.path == "" && strings.HasPrefix(k, "x-"):
		default:
			w.unknownKey(l, kv.key, fields)
		}
	}
}

// unknownKey records key, which names no field of the struct at l, with
// the closest field name as a hint. It is located at the key itself: it
// has no value node of its own.
func (w *strictWalker) unknownKey(l loc, key *yaml.Node, fields map[string]reflect.StructField) {
	k := key.Value
	at := loc{path: join(l.path, k), cb: l.cb, rel: join(l.rel, k)}
	msg := "unknown key"
	if s := closest(k, fields); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	w.errs = append(w.errs, &FieldError{Path: at.path, Callback: at.cb, Field: at.field(), Value: k, Msg: msg,
		File: w.ix.file, Line: key.Line, Column: key.Column})
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
