package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Listeners configures the runtime listeners API (/v2/listeners on the
// proxy's address, docs/listeners.md): clients register webhooks for an
// execution, a task, a workflow or a workbook, delivered through the same
// outbox as callbacks. Every key needs a restart: the API and its registry
// are built once.
type Listeners struct {
	// Enabled mounts /v2/listeners on the proxy's address and keeps event
	// history for backfill. Default true: the proxy answers the blueprint's
	// API wherever it answers Mistral's.
	Enabled bool `koanf:"enabled" yaml:"enabled" default:"true"`
	// MaxPerProject caps the listeners one project may hold at once (with
	// auth off every listener belongs to the same, empty, project); a
	// registration over it is refused. 0 = no cap. Default 100.
	MaxPerProject int `koanf:"max_per_project" yaml:"max_per_project" default:"100"`
	// DefaultTTL is how long a listener registered without expires_at
	// lives. Default 7d: execution- and task-scoped listeners remove
	// themselves when their scope ends, so the TTL only bounds listeners on
	// workflow and workbook names and on executions that never end (a
	// paused execution waiting a weekend for a human, say), and a week
	// outlives those while a forgotten registration still goes away.
	DefaultTTL time.Duration `koanf:"default_ttl" yaml:"default_ttl" default:"7d"`
	// MaxTTL caps expires_at: a later one is refused. Default 30d.
	MaxTTL time.Duration `koanf:"max_ttl" yaml:"max_ttl" default:"30d"`
	// History is how long derived events are kept so that a listener
	// registered after them still receives them (backfill: the events of
	// an execution started before the registration). Workflow- and
	// workbook-scoped listeners backfill the executions still running with
	// an event in this window. Default 24h; at least 1m.
	History time.Duration `koanf:"history" yaml:"history" default:"24h"`
	// Key seals (AES-256-GCM) each listener's URL, headers and signing
	// secret in the store; any string of at least MinListenerKeyLen
	// characters (e.g. "${LISTENER_KEY}" from `openssl rand -base64 32`),
	// from which the 32-byte key is derived. A secret, never logged.
	// Required with store.driver postgres (every replica must open what
	// another sealed); with sqlite and neither Key nor KeyFile, the first
	// start writes a random key to <state_dir>/listeners.key (0600).
	// Default "".
	Key string `koanf:"key" yaml:"key"`
	// KeyFile reads Key from a file (trailing newline trimmed) at load
	// time, relative to the configuration file. Exclusive with Key.
	// Default "".
	KeyFile string `koanf:"key_file" yaml:"key_file"`
	// AllowNetworks lists CIDRs that listener URLs may reach although they
	// are loopback, link-local or private (the SSRF guard); clients, not
	// the operator, choose these URLs, so it may be narrower than
	// delivery.allow_networks. Default none given: delivery.allow_networks
	// (see ListenerNetworks).
	AllowNetworks []string `koanf:"allow_networks" yaml:"allow_networks"`
}

// MinListenerKeyLen is the shortest listeners.key accepted: 32 characters
// of `openssl rand -hex 16` carry 128 bits.
const MinListenerKeyLen = 32

// ListenerKeyFile is the file under state_dir where a single instance
// keeps the sealing key it generated.
const ListenerKeyFile = "listeners.key"

// ListenerNetworks is the SSRF allow list of listener deliveries:
// listeners.allow_networks, or delivery.allow_networks when that is empty.
func (c *Config) ListenerNetworks() []string {
	if len(c.Listeners.AllowNetworks) > 0 {
		return c.Listeners.AllowNetworks
	}
	return c.Delivery.AllowNetworks
}

func (c *Config) validateListeners(p *problems) {
	l := &c.Listeners
	if !l.Enabled {
		return
	}
	atLeast(p.field("listeners.max_per_project"), l.MaxPerProject, 0)
	positive(p, "listeners.default_ttl", l.DefaultTTL.String(), l.DefaultTTL > 0)
	positive(p, "listeners.max_ttl", l.MaxTTL.String(), l.MaxTTL > 0)
	if l.DefaultTTL > 0 && l.MaxTTL > 0 && l.DefaultTTL > l.MaxTTL {
		p.key("listeners.default_ttl", l.DefaultTTL.String(), fmt.Sprintf("%s is more than max_ttl %s", l.DefaultTTL, l.MaxTTL))
	}
	if l.History < time.Minute {
		p.key("listeners.history", l.History.String(), "must be at least 1m (a client registers after it started the execution)")
	}
	switch n := len(l.Key); {
	case n > 0 && n < MinListenerKeyLen:
		p.key("listeners.key", "", fmt.Sprintf("too short: %d characters, want at least %d (e.g. the output of `openssl rand -base64 32`)", n, MinListenerKeyLen))
	case n == 0 && l.KeyFile == "" && c.Store.Driver == DriverPostgres:
		p.key("listeners.key", "", "required with store.driver postgres, so that every replica opens the listeners another sealed (e.g. key: ${LISTENER_KEY}), or listeners.enabled: false")
	}
	for i, n := range l.AllowNetworks {
		if _, err := netip.ParsePrefix(strings.TrimSpace(n)); err != nil {
			p.add(FieldError{Path: fmt.Sprintf("listeners.allow_networks.%d", i), Field: "listeners.allow_networks", Value: n, Msg: fmt.Sprintf("%q is not a CIDR (e.g. 10.0.0.0/8)", n)})
		}
	}
}
