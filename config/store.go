package config

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Store drivers.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Store selects the durable store. SQLite (under state_dir) serves one
// instance; PostgreSQL lets several replicas act as one mistral-tap
// (docs/ha.md).
type Store struct {
	// Driver is "sqlite" or "postgres". Default "sqlite".
	Driver string `koanf:"driver" yaml:"driver" default:"sqlite"`
	// DSN is the PostgreSQL connection string (URL or key=value), usually
	// "${PG_DSN}". Required with driver postgres. A secret: never logged,
	// never in errors or validate output.
	DSN string `koanf:"dsn" yaml:"dsn"`
	// MaxConns caps each replica's connection pool. Default 10.
	MaxConns int `koanf:"max_conns" yaml:"max_conns" default:"10"`
	// MinConns keeps this many connections open. Default 1.
	MinConns int `koanf:"min_conns" yaml:"min_conns" default:"1"`
	// ConnectTimeout bounds establishing a connection. Default 5s.
	ConnectTimeout time.Duration `koanf:"connect_timeout" yaml:"connect_timeout" default:"5s"`
	// LeaseTTL is the leader lease's duration: a dead leader's work is
	// taken over at most LeaseTTL plus LeaseTTL/5 after its last renewal.
	// Renewed every LeaseTTL/3. Default 15s; at least 3s.
	LeaseTTL time.Duration `koanf:"lease_ttl" yaml:"lease_ttl" default:"15s"`
}

// DefaultStore is the store configuration where the file says nothing.
func DefaultStore() Store {
	return Default().Store
}

func (s *Store) validate(p *problems) {
	switch s.Driver {
	case DriverSQLite:
	case DriverPostgres:
		if strings.TrimSpace(s.DSN) == "" {
			p.key("store.dsn", "", "required with store.driver postgres (e.g. dsn: ${PG_DSN})")
		} else if !plausibleDSN(s.DSN) {
			p.key("store.dsn", redacted, "not a PostgreSQL connection string (want postgres://user@host:5432/db or host=... dbname=...)")
		}
		atLeast(p.field("store.max_conns"), s.MaxConns, 2)
		atLeast(p.field("store.min_conns"), s.MinConns, 0)
		positive(p, "store.connect_timeout", s.ConnectTimeout.String(), s.ConnectTimeout > 0)
		if s.LeaseTTL < 3*time.Second {
			p.key("store.lease_ttl", s.LeaseTTL.String(), fmt.Sprintf("must be at least 3s, got %s", s.LeaseTTL))
		}
	default:
		p.key("store.driver", s.Driver, fmt.Sprintf("unknown driver %q (want sqlite or postgres)", s.Driver))
	}
}

// plausibleDSN accepts a postgres:// or postgresql:// URL with a host, or a
// key=value string; the driver checks the rest when connecting.
func plausibleDSN(dsn string) bool {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		return err == nil && u.Host != ""
	}
	return strings.Contains(dsn, "=")
}

var kvPassword = regexp.MustCompile(`(?i)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// DSNPassword returns the password in a PostgreSQL DSN ("" if none), so
// that log redaction knows it.
func DSNPassword(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			return pw
		}
		return u.Query().Get("password")
	}
	if m := kvPassword.FindStringSubmatch(dsn); m != nil {
		return strings.Trim(m[1], "'")
	}
	return ""
}

// redacted returns s with the DSN replaced when it is set.
func (s Store) redacted() Store {
	if s.DSN != "" {
		s.DSN = redacted
	}
	return s
}
