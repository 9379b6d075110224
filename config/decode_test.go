package config

import (
	"path/filepath"
	"reflect"
	"testing"
)

// TestDecodeCallbacksLikeKoanf: the callbacks decodeNode reads from the
// strict pass's tree equal what koanf decodes, problems included.
func TestDecodeCallbacksLikeKoanf(t *testing.T) {
	files, _ := filepath.Glob("testdata/*/*.yaml")
	files = append(files, "../docs/mistral-tap.example.yaml")
	env := append(testEnv, "HOOK_SECRET=x", "ADMIN_TOKEN=0123456789abcdef0123")
	load := func(f string, fast bool) (*Config, error) {
		defer func(old bool) { fastCallbacks = old }(fastCallbacks)
		fastCallbacks = fast
		return Load(Source{Path: f, Environ: environ(env...), Check: RoutingCheck})
	}
	for _, f := range files {
		fast, fastErr := load(f, true)
		slow, slowErr := load(f, false)
		if !reflect.DeepEqual(fast, slow) {
			t.Errorf("%s: fast decode differs:\n%+v\n%+v", f, fast, slow)
		}
		if (fastErr == nil) != (slowErr == nil) || (fastErr != nil && fastErr.Error() != slowErr.Error()) {
			t.Errorf("%s: problems differ:\n%v\n---\n%v", f, fastErr, slowErr)
		}
	}
}
