package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStoreConfig(t *testing.T) {
	const pw = "pg-s3cr3t-pw"
	tests := []struct {
		name, yaml string
		env        []string
		wantErr    string // "" = valid
		wantDSN    string
	}{
		{"default is sqlite", "", nil, "", ""},
		{"postgres from env", "store: {driver: postgres, dsn: \"${PG_DSN}\"}\nlisteners: {enabled: false}",
			[]string{"PG_DSN=postgres://mt:" + pw + "@db:5432/mt"}, "", "postgres://mt:" + pw + "@db:5432/mt"},
		{"postgres key=value", "store: {driver: postgres, dsn: \"host=db password=" + pw + " dbname=mt\"}\nlisteners: {enabled: false}", nil, "", "host=db password=" + pw + " dbname=mt"},
		{"postgres without dsn", "store: {driver: postgres}", nil, "store.dsn", ""},
		{"undefined variable", "store: {driver: postgres, dsn: \"${NOPE}\"}", nil, "undefined variable ${NOPE}", ""},
		{"bad dsn", "store: {driver: postgres, dsn: \"mt:" + pw + "@db\"}", nil, "not a PostgreSQL connection string", ""},
		{"unknown driver", "store: {driver: mysql}", nil, `unknown driver "mysql"`, ""},
		{"short lease", "store: {driver: postgres, dsn: \"postgres://db/mt\", lease_ttl: 1s}", nil, "at least 3s", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(Source{Path: path, Environ: environ(tc.env...)})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if c.Store.DSN != tc.wantDSN {
					t.Fatalf("DSN = %q, want %q", c.Store.DSN, tc.wantDSN)
				}
				if r := c.Redacted(); strings.Contains(r.Store.DSN, pw) {
					t.Fatalf("Redacted keeps the password: %q", r.Store.DSN)
				}
				if tc.wantDSN != "" && DSNPassword(c.Store.DSN) != pw {
					t.Fatalf("DSNPassword(%q) = %q", c.Store.DSN, DSNPassword(c.Store.DSN))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Load error = %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), pw) {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}
