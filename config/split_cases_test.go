package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestLoadCases covers Load's branches that no testdata file reaches: a
// missing file, a file the strict pass accepts but YAML decoding refuses,
// the ordering of located and unlocated problems, the process environment
// as the default, and the strict walk's less common kinds. want is the
// joined error with the file's path written as c.yaml; "" means Load must
// succeed and return Default() changed by mutate.
func TestLoadCases(t *testing.T) {
	tests := []struct {
		name   string
		yaml   string // "-" means no file at the path
		env    []string
		osEnv  []string // set in the process environment; Source.Environ is nil
		mutate func(*Config)
		want   string
	}{
		{name: "missing file", yaml: "-", want: "c.yaml: cannot read config file: no such file or directory"},
		{name: "duplicate key", yaml: "listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n",
			want: `c.yaml:2: invalid YAML: mapping key "listen" already defined at line 1`},
		{name: "located problems before unlocated ones", yaml: "log:\n  level: loud\n",
			env: []string{"MISTRAL_TAP_LISTN=x"},
			want: `c.yaml:2:10: field log.level: unknown level "loud" (want debug, info, warn or error)
` +
				`field MISTRAL_TAP_LISTN: unknown environment variable (no settable key "listn"; e.g. MISTRAL_TAP_WATCH__INTERVAL sets watch.interval)`},
		{name: "process environment by default", yaml: "state_dir: /x\n",
			osEnv: []string{"MISTRAL_TAP_LOG__LEVEL=loud"},
			want:  `field log.level: unknown level "loud" (want debug, info, warn or error)`},
		// Not a type error, and a key with no value keeps its default
		// (nullsKeepDefaults), at any depth, a whole section included.
		{name: "null is no type error", yaml: "watch:\n  replay: null\n  all_projects:\n",
			mutate: func(*Config) {}},
		{name: "null keeps a non-zero default", yaml: "watch:\n  interval:\n  page_size: ~\ndelivery:\n  retry_wait_max: null\n",
			mutate: func(*Config) {}},
		{name: "an empty section keeps its defaults", yaml: "watch:\nproxy:\nlisteners: null\n",
			mutate: func(*Config) {}},
		{name: "null next to values", yaml: "watch:\n  interval: 3s\n  page_size:\n",
			mutate: func(c *Config) { c.Watch.Interval = 3 * time.Second }},
		{name: "zero duration needs no unit", yaml: "watch:\n  interval: 0\n",
			mutate: func(c *Config) { c.Watch.Interval = 0 }},
		{name: "wrong kinds", yaml: "watch:\n  interval: [1s]\n  page_size: {a: 1}\n  all_projects: [true]\n" +
			"callbacks:\n  - name: a\n    url: http://h.example.com/\n    events: ['*']\n    retry:\n      multiplier: {a: 1}\n      jitter: lots\n",
			want: `c.yaml:2:13: field watch.interval: want a duration (e.g. 5s, 7d), got a list
c.yaml:3:14: field watch.page_size: want an integer, got a mapping
c.yaml:4:17: field watch.all_projects: want true or false, got a list
c.yaml:10:19: callback "a": field retry.multiplier: want a number, got a mapping
c.yaml:11:15: callback "a": field retry.jitter: want a number, got str "lots"`},
		{name: "bad merge in a map", yaml: "watch:\n  headers:\n    <<: 5\n",
			want: "c.yaml: invalid YAML: map merge requires map or sequence of maps as the value"},
		{name: "aliases beyond the walk budget", yaml: aliasBudgetYAML(),
			want: "c.yaml: invalid YAML: document contains excessive aliasing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if tt.yaml != "-" {
				if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			src := Source{Path: path, Environ: environ(tt.env...)}
			if tt.osEnv != nil {
				src.Environ = nil
				for _, kv := range tt.osEnv {
					k, v, _ := strings.Cut(kv, "=")
					t.Setenv(k, v)
				}
			}
			c, err := Load(src)
			if tt.mutate != nil {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				want := Default()
				tt.mutate(&want)
				if !reflect.DeepEqual(c, &want) {
					t.Errorf("Load = %+v\nwant %+v", *c, want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Load succeeded: %+v", *c)
			}
			if got := strings.ReplaceAll(err.Error(), path, "c.yaml"); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

// aliasBudgetYAML is a small file whose callbacks, all aliases of one
// callback with a header map merged from a chain of anchors, make the
// strict walk visit far more nodes than its budget, although no single
// mapping exceeds maxPairs.
func aliasBudgetYAML() string {
	var b strings.Builder
	b.WriteString("x-h0: &h0 {a: v, b: v, c: v, d: v, e: v, f: v, g: v, h: v, i: v, j: v}\n")
	for i := 1; i <= 3; i++ {
		prev := "*h" + string(rune('0'+i-1))
		b.WriteString("x-h" + string(rune('0'+i)) + ": &h" + string(rune('0'+i)) + " {<<: [" + strings.Repeat(prev+", ", 9) + prev + "]}\n")
	}
	b.WriteString("x-cb: &cb {name: a, url: 'http://h.example.com/', events: ['*'], headers: *h3}\n")
	b.WriteString("callbacks: [" + strings.Repeat("*cb, ", 299) + "*cb]\n")
	return b.String()
}

// TestValidateKeys covers validate's checks of top-level keys that no
// testdata file reaches. Each case changes Default() and wants exactly
// the problems listed.
func TestValidateKeys(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"blank state_dir", func(c *Config) { c.StateDir = "  " }, "field state_dir: must not be empty"},
		{"relative path_prefix", func(c *Config) { c.Proxy.PathPrefix = "api" }, `field proxy.path_prefix: "api" must start with /`},
		{"negative replay", func(c *Config) { c.Watch.Replay = -time.Second }, "field watch.replay: must be >= 0, got -1s"},
		{"bad watch header, value redacted", func(c *Config) {
			c.Watch.Headers = map[string]string{"Bad Name": "s3cret", "X-Ok": "s3cret\nx"}
		}, `field watch.headers: "Bad Name" is not a valid header name
field watch.headers: value of X-Ok contains a line break or NUL`},
		{"negative retry_wait_min", func(c *Config) { c.Delivery.RetryWaitMin = -time.Second }, "field delivery.retry_wait_min: must be >= 0"},
		{"retry_wait_max below min", func(c *Config) { c.Delivery.RetryWaitMin, c.Delivery.RetryWaitMax = 10*time.Second, time.Second },
			"field delivery.retry_wait_max: 1s is less than retry_wait_min 10s"},
		{"unparsable listens are not compared", func(c *Config) {
			c.Admin.Listen, c.Admin.Token, c.Ops.Listen = "nohost", strings.Repeat("t", MinAdminTokenLen), "nohost"
		}, `field admin.listen: "nohost" is not host:port
field ops.listen: "nohost" is not host:port`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error leaks a header value: %v", err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}
