package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to the whole loading pipeline (strict YAML
// pass, koanf, expansion, validation): it may only ever return problems,
// never panic, and never hand back a config together with an error.
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
		c, err := Load(Source{Path: path, Environ: func() []string { return []string{"H=example.com"} }, Check: RoutingCheck})
		if (c == nil) == (err == nil) {
			t.Fatalf("Load returned config %v and error %v", c != nil, err)
		}
	})
}
