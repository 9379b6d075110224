package config

import (
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// fastCallbacks turns decodeNode on for callbacks; a test compares it
// with koanf's decoding.
var fastCallbacks = true

// splitCallbacks returns the file without its top-level callbacks key,
// re-encoded for koanf, and the callback nodes. ok is false when the file
// has no callbacks list or when the split would change its meaning: a
// merge key at the top level, or an alias elsewhere to an anchor inside
// callbacks (the re-encoded text then fails to load and Load falls back to
// the whole file).
func splitCallbacks(ix *fileIndex) (rest []byte, callbacks []*yaml.Node, ok bool) {
	if ix == nil || ix.root == nil || ix.callbacks == 0 {
		return nil, nil, false
	}
	top := &yaml.Node{Kind: yaml.MappingNode, Tag: ix.root.Tag}
	for i := 0; i+1 < len(ix.root.Content); i += 2 {
		k, v := ix.root.Content[i], ix.root.Content[i+1]
		switch {
		case k.Tag == "!!merge" || k.Value == "<<":
			return nil, nil, false
		case k.Value == "callbacks":
			if v = deref(v); v.Kind != yaml.SequenceNode {
				return nil, nil, false
			}
			callbacks = v.Content
		default:
			top.Content = append(top.Content, k, v)
		}
	}
	rest, err := yaml.Marshal(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{top}})
	if err != nil || callbacks == nil {
		return nil, nil, false
	}
	return rest, callbacks, true
}

// decodeNode sets v from the YAML node n the way koanf's decoder would:
// keys by yaml tag, `<<` merges, null leaves the value alone, scalars
// parsed by v's type (durations with the "d" unit). Nodes of the wrong
// type are skipped: the strict pass has already reported them.
func decodeNode(n *yaml.Node, v reflect.Value) {
	n = deref(n)
	if n == nil || isNull(n) {
		return
	}
	if v.Type() == durationType {
		if n.Kind != yaml.ScalarNode {
			return
		}
		if d, err := parseDuration(n.Value); err == nil {
			v.SetInt(int64(d))
		} else if f, err := strconv.ParseFloat(n.Value, 64); err == nil && f == 0 {
			v.SetInt(0)
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		decodeNode(n, p.Elem())
		v.Set(p)
	case reflect.String:
		if n.Kind == yaml.ScalarNode {
			v.SetString(scalarText(n))
		}
	case reflect.Int, reflect.Int64, reflect.Float64, reflect.Bool:
		if n.Kind == yaml.ScalarNode {
			_ = setValue(v, n.Value)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			decodeNode(item, s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		kv := pairs(n)
		m := reflect.MakeMapWithSize(v.Type(), len(kv))
		for _, p := range kv {
			e := reflect.New(v.Type().Elem()).Elem()
			decodeNode(p.val, e)
			m.SetMapIndex(reflect.ValueOf(p.key.Value), e)
		}
		v.Set(m)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return
		}
		fields := structFields(v.Type())
		for _, p := range pairs(n) {
			if f, ok := fieldNamed(fields, p.key.Value); ok {
				decodeNode(p.val, v.FieldByIndex(f.Index))
			}
		}
	}
}

// fieldNamed finds a field by key as koanf's decoder (mapstructure) does:
// the exact name, else one equal under case folding. The strict pass
// reports such a key as unknown; decoding it all the same keeps the other
// problems of the callback the same as koanf's.
func fieldNamed(fields map[string]reflect.StructField, key string) (reflect.StructField, bool) {
	if f, ok := fields[key]; ok {
		return f, true
	}
	for name, f := range fields {
		if strings.EqualFold(name, key) {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// scalarText is a scalar as koanf hands it to a string field: YAML
// resolves it first (000 is the integer 0, true a bool), then the decoder
// formats the value (bools as 1 or 0).
func scalarText(n *yaml.Node) string {
	switch n.Tag {
	case "!!int", "!!float", "!!bool":
	default:
		return n.Value
	}
	var x any
	if n.Decode(&x) != nil {
		return n.Value
	}
	switch x := x.(type) {
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		if x {
			return "1"
		}
		return "0"
	}
	return n.Value
}
