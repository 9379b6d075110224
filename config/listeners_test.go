package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestListenersConfig(t *testing.T) {
	const key = "k3y-0123456789abcdef0123456789abcdef"
	const pg = "store: {driver: postgres, dsn: \"postgres://db/mt\"}\n"
	tests := []struct {
		name, yaml string
		env        []string
		keyFile    string // content of listeners.key next to the config
		wantErr    string // "" = valid
		check      func(t *testing.T, c *Config)
	}{
		{name: "defaults", check: func(t *testing.T, c *Config) {
			l := c.Listeners
			if !l.Enabled || l.MaxPerProject != 100 || l.DefaultTTL != 7*24*time.Hour || l.MaxTTL != 30*24*time.Hour || l.History != 24*time.Hour || l.Key != "" {
				t.Errorf("defaults: %+v", l)
			}
		}},
		{name: "key from env", yaml: pg + "listeners: {key: \"${LK}\"}", env: []string{"LK=" + key}, check: func(t *testing.T, c *Config) {
			if c.Listeners.Key != key {
				t.Errorf("key = %q", c.Listeners.Key)
			}
		}},
		{name: "key file", yaml: pg + "listeners: {key_file: listeners.key}", keyFile: key + "\n", check: func(t *testing.T, c *Config) {
			if c.Listeners.Key != key {
				t.Errorf("key = %q, want the file's content without newline", c.Listeners.Key)
			}
		}},
		{name: "postgres needs a key", yaml: pg, wantErr: "listeners.key: required with store.driver postgres"},
		{name: "postgres with the API off", yaml: pg + "listeners: {enabled: false}"},
		{name: "short key", yaml: "listeners: {key: \"" + key[:20] + "\"}", wantErr: "too short: 20 characters, want at least 32"},
		{name: "key and key_file", yaml: "listeners: {key: \"" + key + "\", key_file: listeners.key}", keyFile: key, wantErr: "key and key_file are exclusive"},
		{name: "missing key file", yaml: "listeners: {key_file: nope.key}", wantErr: "cannot read"},
		{name: "empty key file", yaml: "listeners: {key_file: listeners.key}", keyFile: "\n", wantErr: "is empty"},
		{name: "default over max", yaml: "listeners: {default_ttl: 40d}", wantErr: "listeners.default_ttl: 960h0m0s is more than max_ttl 720h0m0s"},
		{name: "zero ttl", yaml: "listeners: {max_ttl: 0s, default_ttl: 0s}", wantErr: "listeners.default_ttl: must be > 0"},
		{name: "short history", yaml: "listeners: {history: 10s}", wantErr: "listeners.history: must be at least 1m"},
		{name: "negative cap", yaml: "listeners: {max_per_project: -1}", wantErr: "listeners.max_per_project: must be >= 0"},
		{name: "bad network", yaml: "listeners: {allow_networks: [10.0.0.0/33]}", wantErr: `"10.0.0.0/33" is not a CIDR`},
		{name: "reserved callback name", yaml: "callbacks: [{name: \"listener:x\", events: [\"*\"], url: \"http://h/\"}]", wantErr: `"listener:x" is reserved for runtime listeners`},
		{name: "reserved class name", yaml: "callbacks: [{name: listeners, events: [\"*\"], url: \"http://h/\"}]", wantErr: `"listeners" is reserved`},
		{name: "off skips checks", yaml: "listeners: {enabled: false, history: 1s}"},
		{name: "networks inherit delivery's", yaml: "delivery: {allow_networks: [127.0.0.0/8]}", check: func(t *testing.T, c *Config) {
			if got := c.ListenerNetworks(); !slices.Equal(got, []string{"127.0.0.0/8"}) {
				t.Errorf("ListenerNetworks = %v", got)
			}
		}},
		{name: "own networks", yaml: "delivery: {allow_networks: [127.0.0.0/8]}\nlisteners: {allow_networks: [10.1.0.0/16]}", check: func(t *testing.T, c *Config) {
			if got := c.ListenerNetworks(); !slices.Equal(got, []string{"10.1.0.0/16"}) {
				t.Errorf("ListenerNetworks = %v", got)
			}
		}},
		{name: "env sets a key", env: []string{"MISTRAL_TAP_LISTENERS__MAX_PER_PROJECT=7", "MISTRAL_TAP_LISTENERS__ENABLED=false"}, check: func(t *testing.T, c *Config) {
			if c.Listeners.MaxPerProject != 7 || c.Listeners.Enabled {
				t.Errorf("from env: %+v", c.Listeners)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "c.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if tc.keyFile != "" {
				if err := os.WriteFile(filepath.Join(dir, "listeners.key"), []byte(tc.keyFile), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			c, err := Load(Source{Path: path, Environ: environ(tc.env...)})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Load error = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), key[:20]) {
					t.Fatalf("error quotes the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
			if c.Listeners.Key != "" {
				if r := c.Redacted(); r.Listeners.Key != RedactedValue {
					t.Errorf("Redacted keeps the key: %q", r.Listeners.Key)
				}
				if !slices.Contains(c.SecretValues(), c.Listeners.Key) {
					t.Errorf("SecretValues misses the key")
				}
			}
		})
	}
}
