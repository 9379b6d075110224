package config

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

var update = flag.Bool("update", false, "rewrite testdata/bad/*.want from the current output")

// testEnv is the environment every file test loads with.
var testEnv = []string{
	"HOOK_TOKEN=tok-123",
	"HOOK_HOST=hooks.example.com",
	"SECRET_V=whsec_abc",
	"ADMIN_TOKEN=adm-456-0123456789abcdef",
	"PATH=/usr/bin",
}

// secretValues must never show up in an error.
var secretValues = []string{"tok-123", "whsec_abc", "adm-456", "s3cret", "whsec_from_file"}

func environ(env ...string) func() []string {
	return func() []string { return slices.Clone(env) }
}

func TestLoadFull(t *testing.T) {
	c, err := Load(Source{Path: "testdata/good/full.yaml", Environ: environ(testEnv...)})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	ptr := func(s string) *string { return &s }
	intp := func(i int) *int { return &i }
	want := Default()
	want.Listen = "127.0.0.1:9000"
	want.Upstream = "http://mistral.internal:8989"
	want.StateDir = "/var/lib/mistral-tap"
	want.Proxy.PathPrefix = "/workflow"
	want.Proxy.MaxTapBody = 1 << 20
	want.Watch.Interval = 2 * time.Second
	want.Watch.Headers = map[string]string{"X-Auth-Token": "tok-123"}
	want.Watch.AllProjects = true
	want.Watch.Replay = 24 * time.Hour
	want.Delivery.Timeout = 3 * time.Second
	want.Delivery.Retries = 2
	want.Delivery.AllowNetworks = []string{"127.0.0.0/8"}
	want.Admin = Admin{Listen: "127.0.0.1:8991", Token: "adm-456-0123456789abcdef"}
	want.Ops = Ops{Listen: "127.0.0.1:8992"}
	want.Log = Log{Level: "debug", Format: "json"}
	ops := defaultCallback()
	ops.Name = "ops"
	ops.Events = []string{"on-execution-complete"}
	ops.Retry.MaxAge = 7 * 24 * time.Hour
	ops.URL = "https://hooks.example.com/mistral"
	ops.Headers = map[string]string{"Authorization": "Bearer tok-123", "X-Literal": "${NOT_EXPANDED} costs $5"}
	ops.SecretFile = "secret.txt"
	ops.Secret = "whsec_from_file"
	ops.Timeout = 3 * time.Second
	ops.Retries = intp(2)
	ops.CloudEvents.Source = "mistral-tap://mistral.internal:8989"
	ops.secretVals = []string{"hooks.example.com", "tok-123", "whsec_from_file"}
	want.secretVals = []string{"tok-123", "adm-456-0123456789abcdef"}
	dep := Callback{
		Name: "deploy-tasks", Events: []string{"TASK_FAILED", "task_succeeded", "on-task-start"},
		Workbook: "my.wb", Workflow: "my.wb.*", Namespace: ptr(""), Task: "deploy_*",
		URL: "http://127.0.0.1:8080/hook", Method: "PUT", Format: "template",
		Template: `{"id": "{{ .Event.ID }}"}`, Timeout: 500 * time.Millisecond, Retries: intp(0),
		Ordering: "none", Concurrency: 16,
		Retry:       RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Minute, Multiplier: 1.5, Jitter: 0, MaxAge: 2 * time.Hour, MaxAttempts: 10},
		Secret:      "whsec_abc",
		Secrets:     []string{"whsec_old"},
		CloudEvents: CloudEvents{Mode: "structured", Source: "mistral-tap://mistral.internal:8989"},
		secretVals:  []string{"whsec_abc"},
	}
	ce := defaultCallback()
	ce.Name, ce.Events, ce.Namespace, ce.URL, ce.Format = "ce", []string{"*"}, ptr("prod"), "https://ce.example.com/in", "cloudevents"
	ce.CloudEvents = CloudEvents{Mode: "binary", Source: "mistral-tap://mistral.internal:8989"}
	ce.Timeout, ce.Retries = 3*time.Second, intp(2)
	want.Callbacks = []Callback{ops, dep, ce}
	if !reflect.DeepEqual(c, &want) {
		for i := range want.Callbacks {
			if i < len(c.Callbacks) && !reflect.DeepEqual(c.Callbacks[i], want.Callbacks[i]) {
				t.Errorf("callback %d:\n got %+v\nwant %+v", i, c.Callbacks[i], want.Callbacks[i])
			}
		}
		c.Callbacks, want.Callbacks = nil, nil
		if !reflect.DeepEqual(c, &want) {
			t.Errorf("config:\n got %+v\nwant %+v", *c, want)
		}
	}
}

func TestLoadDefaultsOnly(t *testing.T) {
	for _, path := range []string{"", "testdata/good/empty.yaml"} {
		c, err := Load(Source{Path: path, Environ: environ()})
		if err != nil {
			t.Fatalf("Load(%q): %v", path, err)
		}
		if d := Default(); !reflect.DeepEqual(c, &d) {
			t.Errorf("Load(%q) = %+v, want Default()", path, *c)
		}
	}
}

// TestLoadBad loads every testdata/bad/*.yaml and compares the joined
// error, one problem per line, with the .want file next to it.
func TestLoadBad(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) < 20 {
		t.Fatalf("only %d bad configs found", len(files))
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			c, err := Load(Source{Path: f, Environ: environ(testEnv...), Check: RoutingCheck})
			if err == nil {
				t.Fatalf("Load succeeded: %+v", c)
			}
			if c != nil {
				t.Errorf("Load returned a config along with the error")
			}
			got := err.Error() + "\n"
			for _, s := range secretValues {
				if strings.Contains(got, s) {
					t.Errorf("error leaks secret %q:\n%s", s, got)
				}
			}
			for _, p := range Problems(err) {
				for _, s := range secretValues {
					if strings.Contains(p.Value, s) {
						t.Errorf("problem %q leaks secret %q in Value %q", p, s, p.Value)
					}
				}
			}
			wantFile := strings.TrimSuffix(f, ".yaml") + ".want"
			if *update {
				if err := os.WriteFile(wantFile, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(wantFile)
			if err != nil {
				t.Fatalf("no golden file (run with -update): %v", err)
			}
			if got != string(want) {
				t.Errorf("error mismatch\n got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestProblemsFields(t *testing.T) {
	_, err := Load(Source{Path: "testdata/bad/unknown_event.yaml", Environ: environ(testEnv...), Check: RoutingCheck})
	ps := Problems(err)
	if len(ps) != 1 {
		t.Fatalf("got %d problems, want 1: %v", len(ps), err)
	}
	p := ps[0]
	want := FieldError{File: "testdata/bad/unknown_event.yaml", Line: 6, Column: 9, Callback: "ops", Field: "events", Value: "TASK_FINISHED"}
	p.Msg, p.Path = "", ""
	if *p != want {
		t.Errorf("problem = %+v, want %+v", *p, want)
	}

	// Header values are redacted in Value.
	_, err = Load(Source{Path: "testdata/bad/headers.yaml", Environ: environ(testEnv...), Check: RoutingCheck})
	for _, p := range Problems(err) {
		if p.Value != redacted {
			t.Errorf("header problem Value = %q, want %q", p.Value, redacted)
		}
	}
	if Problems(nil) != nil {
		t.Error("Problems(nil) != nil")
	}
}

func TestEnvAndFlagPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(path, []byte("listen: 127.0.0.1:9000\nstate_dir: /from/file\nwatch:\n  interval: 9s\nlog:\n  level: warn\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		env   []string
		flags []string
		check func(*Config) string
	}{
		{"file only", nil, nil, func(c *Config) string {
			return c.Listen + " " + c.StateDir + " " + c.Watch.Interval.String() + " " + c.Log.Level
		}},
		{"env beats file", []string{"MISTRAL_TAP_LISTEN=127.0.0.1:9100", "MISTRAL_TAP_WATCH__INTERVAL=1d", "MISTRAL_TAP_STATE_DIR=/from/env"}, nil, func(c *Config) string {
			return c.Listen + " " + c.StateDir + " " + c.Watch.Interval.String() + " " + c.Log.Level
		}},
		{"flags beat env, unset flags do not", []string{"MISTRAL_TAP_LISTEN=127.0.0.1:9100", "MISTRAL_TAP_LOG__LEVEL=error"}, []string{"--listen=127.0.0.1:9200", "--watch-interval=3s"}, func(c *Config) string {
			return c.Listen + " " + c.StateDir + " " + c.Watch.Interval.String() + " " + c.Log.Level
		}},
		{"env lists and bools", []string{"MISTRAL_TAP_DELIVERY__ALLOW_NETWORKS=127.0.0.0/8, 10.0.0.0/8", "MISTRAL_TAP_WATCH__ALL_PROJECTS=true", "MISTRAL_TAP_CONFIG=/ignored"}, nil, func(c *Config) string {
			return strings.Join(c.Delivery.AllowNetworks, "|") + " " + map[bool]string{true: "all", false: "own"}[c.Watch.AllProjects]
		}},
	}
	want := []string{
		"127.0.0.1:9000 /from/file 9s warn",
		"127.0.0.1:9100 /from/env 24h0m0s warn",
		"127.0.0.1:9200 /from/file 3s error",
		"127.0.0.0/8|10.0.0.0/8 all",
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			RegisterFlags(fs)
			fs.String("config", "", "not a key; must be ignored")
			if err := fs.Parse(append(tt.flags, "--config=x")); err != nil {
				t.Fatal(err)
			}
			c, err := Load(Source{Path: path, Flags: fs, Environ: environ(tt.env...)})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got := tt.check(c); got != want[i] {
				t.Errorf("got %q, want %q", got, want[i])
			}
		})
	}
}

func TestEnvErrors(t *testing.T) {
	_, err := Load(Source{Path: "testdata/good/minimal.yaml", Environ: environ(
		"MISTRAL_TAP_LISTN=x", "MISTRAL_TAP_WATCH__INTERVAL=soon", "MISTRAL_TAP_UPSTREAM=ftp://x",
		"MISTRAL_TAP_ADMIN__LISTEN=127.0.0.1:1", "MISTRAL_TAP_CALLBACKS=x")})
	want := `field MISTRAL_TAP_CALLBACKS: unknown environment variable (no settable key "callbacks"; e.g. MISTRAL_TAP_WATCH__INTERVAL sets watch.interval)
field MISTRAL_TAP_LISTN: unknown environment variable (no settable key "listn"; e.g. MISTRAL_TAP_WATCH__INTERVAL sets watch.interval)
field watch.interval: from MISTRAL_TAP_WATCH__INTERVAL: invalid duration "soon" (e.g. 500ms, 5s, 7d)
field upstream: scheme "ftp": want http or https
field admin.token: required when admin.listen is set (e.g. token: ${ADMIN_TOKEN})`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestExpand(t *testing.T) {
	env := envLookup([]string{"A=1", "B=two", "EMPTY=", "A=3"})
	tests := []struct{ in, want, err string }{
		{"plain", "plain", ""},
		{"${A}", "3", ""},
		{"x${B}y${A}", "xtwoy3", ""},
		{"${EMPTY}", "", ""},
		{"$${A}", "${A}", ""},
		{"$$${A}", "$${A}", ""}, // leftmost "$${" wins
		{"$$", "$$", ""},
		{"cost $5 and $A", "cost $5 and $A", ""},
		{"${NOPE}", "", "undefined variable ${NOPE}"},
		{"${A", "", "unterminated ${ (write $${ for a literal ${)"},
		{"${1X}", "", "bad variable name ${1X}"},
		{"${}", "", "bad variable name ${}"},
	}
	for _, tt := range tests {
		var used []string
		got, err := expand(tt.in, env, &used)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("expand(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestRedacted(t *testing.T) {
	c, err := Load(Source{Path: "testdata/good/full.yaml", Environ: environ(testEnv...)})
	if err != nil {
		t.Fatal(err)
	}
	c.Callbacks[0].URL = "https://user:pw@hooks.example.com/x?token=tok-123"
	r := c.Redacted()
	dump := strings.ToLower(fmtConfig(r))
	for _, s := range append(secretValues, "whsec_old", "user:pw") {
		if strings.Contains(dump, strings.ToLower(s)) {
			t.Errorf("Redacted() leaks %q: %s", s, dump)
		}
	}
	// The host came from ${HOOK_HOST}: a secret too. The user name next to
	// a password is not one.
	if got, want := r.Callbacks[0].URL, "https://user:REDACTED@REDACTED/x?token=REDACTED"; got != want {
		t.Errorf("redacted URL = %q, want %q", got, want)
	}
	// The original is untouched.
	if c.Callbacks[0].Headers["Authorization"] != "Bearer tok-123" || c.Admin.Token != "adm-456-0123456789abcdef" {
		t.Error("Redacted modified the original config")
	}
}

func fmtConfig(c Config) string {
	var b strings.Builder
	v := reflect.ValueOf(c)
	var walk func(reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				if v.Type().Field(i).IsExported() {
					walk(v.Field(i))
				}
			}
		case reflect.Slice:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i))
			}
		case reflect.Map:
			for _, k := range v.MapKeys() {
				b.WriteString(k.String() + "=")
				walk(v.MapIndex(k))
			}
		case reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.String:
			b.WriteString(v.String() + " ")
		}
	}
	walk(v)
	return b.String()
}

func TestValidateProgrammatic(t *testing.T) {
	c := Default()
	c.Callbacks = []Callback{{Name: "a", Events: []string{"TASK"}, URL: "http://x.example/"}}
	if err := c.Validate(); err == nil {
		t.Error("Validate accepted a callback without defaults applied")
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Errorf("after ApplyDefaults: %v", err)
	}
	if *c.Callbacks[0].Retries != 3 || c.Callbacks[0].Timeout != 10*time.Second {
		t.Errorf("inherit: retries %d timeout %s", *c.Callbacks[0].Retries, c.Callbacks[0].Timeout)
	}
}

func TestRestartRequired(t *testing.T) {
	a := Default()
	b := Default()
	b.Listen, b.Ops.Listen, b.Log.Level = "127.0.0.1:1", "127.0.0.1:2", "debug"
	b.Callbacks = []Callback{{Name: "x"}}
	if got, want := RestartRequired(&a, &b), []string{"listen", "ops.listen"}; !slices.Equal(got, want) {
		t.Errorf("RestartRequired = %v, want %v", got, want)
	}
	// The watcher and the delivery client are built once: say so.
	c := Default()
	c.Watch.Interval, c.Watch.Headers = 5*time.Second, map[string]string{"X-Auth-Token": "t"}
	c.Delivery.AllowNetworks, c.Delivery.Retries = []string{"10.0.0.0/8"}, 7
	if got, want := RestartRequired(&a, &c), []string{"watch.interval", "watch.headers", "delivery.allow_networks"}; !slices.Equal(got, want) {
		t.Errorf("RestartRequired = %v, want %v", got, want)
	}
}
