package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestEveryKeyHasAReloadBehaviour fails when a configuration key is
// neither live-reloadable nor restart-only: a new key must say which, so
// that RestartRequired (derived from the tags) never misses one.
func TestEveryKeyHasAReloadBehaviour(t *testing.T) {
	var walk func(t reflect.Type, prefix string, covered bool) []string
	walk = func(typ reflect.Type, prefix string, covered bool) []string {
		var missing []string
		for i := range typ.NumField() {
			f := typ.Field(i)
			if !f.IsExported() {
				continue
			}
			key := join(prefix, yamlName(f))
			tag, ok := f.Tag.Lookup("reload")
			if ok && tag != "live" && tag != "restart" {
				t.Errorf("%s: reload tag %q, want live or restart", key, tag)
			}
			c := covered || ok
			if f.Type.Kind() == reflect.Struct && f.Type != durationType {
				missing = append(missing, walk(f.Type, key, c)...)
			} else if !c {
				missing = append(missing, key)
			}
		}
		return missing
	}
	if missing := walk(reflect.TypeOf(Config{}), "", false); len(missing) > 0 {
		t.Errorf("keys without a reload:\"live\" or reload:\"restart\" tag: %s", strings.Join(missing, ", "))
	}
}

// TestRestartRequiredFromTags: every restart-only key is reported when
// it changes, and no live key is.
func TestRestartRequiredFromTags(t *testing.T) {
	a := Default()
	b := Default()
	b.Proxy.CAFile, b.Watch.Keystone.Password, b.Tracker.Retention = "/ca.pem", "pw", 2*time.Hour
	b.Admin.Token, b.Admin.Listen, b.Log.Level, b.Log.Format = "another-token-0123456789", "127.0.0.1:3", "debug", "json"
	b.Delivery.Timeout, b.Delivery.BreakerThreshold = time.Second, 9
	b.Listeners.MaxPerProject = 5
	want := []string{"proxy.ca_file", "watch.keystone.password", "tracker.retention", "log.format", "admin.listen", "listeners.max_per_project"}
	if got := RestartRequired(&a, &b); !reflect.DeepEqual(got, want) {
		t.Errorf("RestartRequired = %v, want %v", got, want)
	}
	b = Default()
	b.Watch.Headers, b.Delivery.AllowNetworks = map[string]string{}, []string{}
	if got := RestartRequired(&a, &b); len(got) != 0 {
		t.Errorf("empty versus absent lists: RestartRequired = %v", got)
	}
}

// TestDefaultsFromTags pins the defaults the tags give, as documented.
func TestDefaultsFromTags(t *testing.T) {
	want := Config{
		Listen: "127.0.0.1:8990", Upstream: "http://127.0.0.1:8989", StateDir: "./mistral-tap-data",
		Store: Store{Driver: DriverSQLite, MaxConns: 10, MinConns: 1, ConnectTimeout: 5 * time.Second, LeaseTTL: 15 * time.Second},
		Proxy: Proxy{MaxTapBody: 8 << 20, DialTimeout: 5 * time.Second, ResponseHeaderTimeout: 120 * time.Second, MaxIdleConnsPerHost: 64,
			MaxConnections: 1024, IdleTimeout: 2 * time.Minute},
		Watch:   Watch{Interval: time.Second, PageSize: 500},
		Tracker: Tracker{Retention: time.Hour},
		Delivery: Delivery{Timeout: 10 * time.Second, Retries: 3, RetryWaitMin: 200 * time.Millisecond, RetryWaitMax: 5 * time.Second,
			BreakerThreshold: 5, BreakerProbeMax: 5 * time.Minute},
		Log:       Log{Level: "info", Format: "text"},
		Listeners: Listeners{Enabled: true, MaxPerProject: 100, DefaultTTL: 7 * 24 * time.Hour, MaxTTL: 30 * 24 * time.Hour, History: 24 * time.Hour},
	}
	if got := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("Default() = %+v\nwant %+v", got, want)
	}
	cb := Callback{Method: "POST", Format: "mistral", Ordering: "root", Concurrency: 4,
		Retry:       RetryPolicy{InitialInterval: 5 * time.Second, MaxInterval: 10 * time.Minute, Multiplier: 2, Jitter: 0.2, MaxAge: 24 * time.Hour},
		CloudEvents: CloudEvents{Mode: "structured"}}
	if got := defaultCallback(); !reflect.DeepEqual(got, cb) {
		t.Errorf("defaultCallback() = %+v\nwant %+v", got, cb)
	}
	// ApplyDefaults keeps deliberate zeros and what code set.
	c := Default()
	c.Callbacks = []Callback{{Name: "a", Method: "PUT"}}
	c.ApplyDefaults()
	got := c.Callbacks[0]
	if got.Method != "PUT" || got.Format != "mistral" || got.Retry.Jitter != 0 || got.Retry.Multiplier != 2 || *got.Retries != 3 {
		t.Errorf("ApplyDefaults: %+v", got)
	}
}
