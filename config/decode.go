package config

import (
	"reflect"
	"strconv"

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
	case reflect.String, reflect.Int, reflect.Int64, reflect.Float64, reflect.Bool:
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
			if f, ok := fields[p.key.Value]; ok {
				decodeNode(p.val, v.FieldByIndex(f.Index))
			}
		}
	}
}
