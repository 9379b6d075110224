package app

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mistral-tap/mistral-tap/config"
)

// TestSealingKey: a configured key derives the same 32 bytes every time
// (replicas agree), another key other bytes; without one a single
// instance generates a private key file once and reuses it; PostgreSQL
// without a key and a damaged key file are refused.
func TestSealingKey(t *testing.T) {
	cfgWith := func(driver, key string) *config.Config {
		c := config.Default()
		c.StateDir, c.Store.Driver, c.Listeners.Key = t.TempDir(), driver, key
		return &c
	}
	a1, err1 := sealingKey(cfgWith(config.DriverPostgres, "replica-shared-key-0123456789abcdef"))
	a2, err2 := sealingKey(cfgWith(config.DriverSQLite, "replica-shared-key-0123456789abcdef"))
	b, err3 := sealingKey(cfgWith(config.DriverPostgres, "another-shared-key-0123456789abcdef"))
	if err1 != nil || err2 != nil || err3 != nil {
		t.Fatal(err1, err2, err3)
	}
	if len(a1) != 32 || !bytes.Equal(a1, a2) || bytes.Equal(a1, b) {
		t.Errorf("derived keys: %x %x %x", a1, a2, b)
	}
	if _, err := sealingKey(cfgWith(config.DriverPostgres, "")); err == nil || !strings.Contains(err.Error(), "listeners.key is required") {
		t.Errorf("postgres without a key: %v", err)
	}

	gen := cfgWith(config.DriverSQLite, "")
	k1, err := sealingKey(gen)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(gen.StateDir, config.ListenerKeyFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("generated key file: %v %v", fi, err)
	}
	if k2, err := sealingKey(gen); err != nil || !bytes.Equal(k1, k2) {
		t.Errorf("second start: %x %v, want the first key %x", k2, err, k1)
	}
	if bytes.Equal(k1, a1) {
		t.Errorf("generated key equals a configured one")
	}
	if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sealingKey(gen); err == nil || !strings.Contains(err.Error(), "shorter than 32") {
		t.Errorf("damaged key file: %v", err)
	}
}
