package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to the whole loading pipeline (strict YAML
// pass, koanf, expansion, validation): it may only ever return problems,
// never panic, and never hand back a config together with an error; and
// decoding callbacks without koanf must give what koanf gives.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		"callbacks:\n  - name: a\n    events: [\"*\"]\n    url: http://127.0.0.1:1/\n",
		"listen: :1\nwatch: {interval: 7d}\n",
		"callbacks: [{name: x, events: [TASK_FAILED], url: \"https://${H}/x\", format: template, template: '{{ .Event.ID }}'}]\n",
		"x-a: &a {events: [EXECUTION]}\ncallbacks: [{<<: *a, name: b, url: http://h/}]\n",
		"callbacks:\n  - {name: a, events: [\"*\"], url: http://h/, retry: {max_age: -1s}}\n",
		"- just\n- a list\n",
		"\t: bad",
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		src := Source{Path: path, Environ: func() []string { return []string{"H=example.com"} }, Check: RoutingCheck}
		c, err := Load(src)
		if (c == nil) == (err == nil) {
			t.Fatalf("Load returned config %v and error %v", c != nil, err)
		}
		// The callbacks decoded from the strict pass's tree equal koanf's:
		// the same configuration, or both refused (the problems of a
		// broken file may differ in detail).
		fastCallbacks = false
		slow, slowErr := Load(src)
		fastCallbacks = true
		if !reflect.DeepEqual(c, slow) || (err == nil) != (slowErr == nil) {
			t.Fatalf("fast and koanf decoding differ:\n%+v\n%v\n---\n%+v\n%v", c, err, slow, slowErr)
		}
	})
}
