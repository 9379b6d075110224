// Package config defines mistral-tap's configuration, loads it with koanf
// (defaults, then the YAML file, then MISTRAL_TAP_* environment variables,
// then flags), validates it strictly and reloads it.
package config

import (
	"reflect"
	"time"
)

// Config is the whole configuration. The zero value is not usable; start from
// Default().
type Config struct {
	// Listen is the proxy's address; clients use it instead of Mistral's.
	// Default "127.0.0.1:8990".
	Listen string `koanf:"listen" yaml:"listen" default:"127.0.0.1:8990" reload:"restart"`
	// Upstream is Mistral's API root, the part before /v2.
	// Default "http://127.0.0.1:8989".
	Upstream string `koanf:"upstream" yaml:"upstream" default:"http://127.0.0.1:8989" reload:"restart"`
	// StateDir is where mistral-tap keeps its durable state (outbox, tracker
	// state, watcher checkpoint). Default "./mistral-tap-data".
	StateDir string `koanf:"state_dir" yaml:"state_dir" default:"./mistral-tap-data" reload:"restart"`
	// Store selects the durable store (see config/store.go). Default
	// SQLite under StateDir.
	Store Store `koanf:"store" yaml:"store" reload:"restart"`
	// Proxy tunes the reverse proxy.
	Proxy Proxy `koanf:"proxy" yaml:"proxy" reload:"restart"`
	// Watch configures active polling of the API.
	Watch Watch `koanf:"watch" yaml:"watch" reload:"restart"`
	// Tracker tunes what mistral-tap remembers about executions and tasks.
	Tracker Tracker `koanf:"tracker" yaml:"tracker" reload:"restart"`
	// Delivery holds defaults for every callback's delivery.
	Delivery Delivery `koanf:"delivery" yaml:"delivery"`
	// Log configures logging.
	Log Log `koanf:"log" yaml:"log"`
	// Admin configures the admin API (deliveries, replay, explain).
	// Default off.
	Admin Admin `koanf:"admin" yaml:"admin"`
	// Ops configures the operations endpoints (/metrics, /healthz,
	// /readyz). Default off.
	Ops Ops `koanf:"ops" yaml:"ops"`
	// Listeners configures the runtime listeners API (/v2/listeners, see
	// config/listeners.go). Default on.
	Listeners Listeners `koanf:"listeners" yaml:"listeners" reload:"restart"`
	// Callbacks are the webhooks events are delivered to.
	Callbacks []Callback `koanf:"callbacks" yaml:"callbacks" reload:"live"`

	// secretVals are the values Load substituted for ${NAME} outside
	// callbacks (see SecretValues).
	secretVals []string
}

// Proxy tunes the reverse proxy in front of Mistral.
type Proxy struct {
	// PathPrefix is a path under which Mistral's API is mounted upstream
	// (e.g. "/workflow" under devstack's uwsgi). Default "" (API at the root).
	PathPrefix string `koanf:"path_prefix" yaml:"path_prefix"`
	// MaxTapBody is the largest response body the tap copies for parsing, in
	// bytes; larger bodies pass through untouched and are counted.
	// Default 8 MiB.
	MaxTapBody int64 `koanf:"max_tap_body" yaml:"max_tap_body" default:"8388608"`
	// CAFile is a PEM bundle used to verify an https upstream, in addition
	// to the system roots. Default "" (system roots only).
	CAFile string `koanf:"ca_file" yaml:"ca_file"`
	// DialTimeout bounds connecting to the upstream. Default 5s.
	DialTimeout time.Duration `koanf:"dial_timeout" yaml:"dial_timeout" default:"5s"`
	// ResponseHeaderTimeout bounds waiting for Mistral's response headers.
	// Default 120s (Mistral's start of an execution is a synchronous RPC
	// whose own timeout is 60s).
	ResponseHeaderTimeout time.Duration `koanf:"response_header_timeout" yaml:"response_header_timeout" default:"120s"`
	// MaxIdleConnsPerHost is the upstream connection pool size.
	// Default 64.
	MaxIdleConnsPerHost int `koanf:"max_idle_conns_per_host" yaml:"max_idle_conns_per_host" default:"64"`
	// MaxConnections caps the client connections open at once; one more
	// waits in the listen backlog until another closes. Default 1024.
	MaxConnections int `koanf:"max_connections" yaml:"max_connections" default:"1024"`
	// IdleTimeout closes a client's keep-alive connection idle this long.
	// Default 2m.
	IdleTimeout time.Duration `koanf:"idle_timeout" yaml:"idle_timeout" default:"2m"`
}

// Watch configures the watcher, which polls the API so that events fire
// even when no client is looking.
type Watch struct {
	// Interval between polls; 0 turns the watcher off. Default 1s.
	Interval time.Duration `koanf:"interval" yaml:"interval" default:"1s"`
	// Headers are sent with every poll, e.g. X-Auth-Token: ${MISTRAL_TOKEN}.
	// Values are secrets and never logged. Default none.
	Headers map[string]string `koanf:"headers" yaml:"headers"`
	// PageSize is the `limit` of each list request. Default 500.
	PageSize int `koanf:"page_size" yaml:"page_size" default:"500"`
	// Replay, when > 0, makes the first poll start this far in the past
	// instead of "now", replaying history. Default 0 (no replay).
	Replay time.Duration `koanf:"replay" yaml:"replay"`
	// AllProjects adds all_projects=true to execution polls (needs admin).
	// Default false.
	AllProjects bool `koanf:"all_projects" yaml:"all_projects"`
	// Keystone, when auth_url is set, gets the watcher's X-Auth-Token from
	// Keystone v3 with password credentials and renews it before it
	// expires. Default off.
	Keystone Keystone `koanf:"keystone" yaml:"keystone"`
}

// Keystone holds Keystone v3 password credentials for the watcher and the
// workbook resolver (deployments with Mistral's auth on).
type Keystone struct {
	// AuthURL is Keystone's v3 endpoint, e.g. http://keystone:5000/v3.
	// Default "" (off).
	AuthURL string `koanf:"auth_url" yaml:"auth_url"`
	// Username and Password of the service user; ${NAME} is expanded in
	// Password, a secret never logged.
	Username string `koanf:"username" yaml:"username"`
	Password string `koanf:"password" yaml:"password"`
	// UserDomainName is the user's domain. Default "Default".
	UserDomainName string `koanf:"user_domain_name" yaml:"user_domain_name"`
	// ProjectName scopes the token. Required with AuthURL.
	ProjectName string `koanf:"project_name" yaml:"project_name"`
	// ProjectDomainName is the project's domain. Default "Default".
	ProjectDomainName string `koanf:"project_domain_name" yaml:"project_domain_name"`
}

// Tracker tunes the tracker's memory.
type Tracker struct {
	// Retention is how long a finished execution or task is remembered
	// after its last update. Afterwards it is forgotten (memory and store
	// stay bounded) and seeing it again fires nothing; a rerun after that
	// is reported as a launch. Default 1h.
	Retention time.Duration `koanf:"retention" yaml:"retention" default:"1h"`
}

// Delivery holds delivery defaults that each callback may override.
type Delivery struct {
	// Timeout bounds one HTTP attempt. Default 10s.
	Timeout time.Duration `koanf:"timeout" yaml:"timeout" default:"10s" reload:"live"`
	// Retries is the number of in-process retries after the first attempt.
	// Default 3.
	Retries int `koanf:"retries" yaml:"retries" default:"3" reload:"live"`
	// RetryWaitMin is the shortest wait between in-process retries.
	// Default 200ms.
	RetryWaitMin time.Duration `koanf:"retry_wait_min" yaml:"retry_wait_min" default:"200ms" reload:"live"`
	// RetryWaitMax caps the wait between retries, Retry-After included.
	// Default 5s.
	RetryWaitMax time.Duration `koanf:"retry_wait_max" yaml:"retry_wait_max" default:"5s" reload:"live"`
	// AllowNetworks lists CIDRs that callbacks may reach although they are
	// loopback, link-local or private (refused by default against SSRF),
	// e.g. ["127.0.0.0/8"] for a receiver on the same host. Default none.
	AllowNetworks []string `koanf:"allow_networks" yaml:"allow_networks" reload:"restart"`
	// BreakerThreshold is the number of consecutive failed deliveries after
	// which a callback's circuit opens and it is only probed, with backoff.
	// Default 5.
	BreakerThreshold int `koanf:"breaker_threshold" yaml:"breaker_threshold" default:"5" reload:"live"`
	// BreakerProbeMax caps the wait between probes of an open circuit.
	// Default 5m.
	BreakerProbeMax time.Duration `koanf:"breaker_probe_max" yaml:"breaker_probe_max" default:"5m" reload:"live"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error. Default "info".
	Level string `koanf:"level" yaml:"level" default:"info" reload:"live"`
	// Format is "text" or "json". Default "text".
	Format string `koanf:"format" yaml:"format" default:"text" reload:"restart"`
}

// Admin configures the admin API.
type Admin struct {
	// Listen is the admin API's address. Default "" (off). Changing it
	// needs a restart.
	Listen string `koanf:"listen" yaml:"listen" reload:"restart"`
	// Token is the bearer token every admin request must carry; ${NAME} is
	// expanded from the environment, e.g. "${ADMIN_TOKEN}". Required when
	// Listen is set, at least MinAdminTokenLen characters. A secret, never
	// logged. A reload replaces it live. Default "".
	Token string `koanf:"token" yaml:"token" reload:"live"`
}

// MinAdminTokenLen is the shortest admin.token accepted: a guessable
// token would make the admin API (which replays deliveries) open.
const MinAdminTokenLen = 16

// Ops configures the unauthenticated operations endpoints.
type Ops struct {
	// Listen is the address serving /metrics, /healthz and /readyz.
	// Default "" (off). Changing it needs a restart.
	Listen string `koanf:"listen" yaml:"listen" reload:"restart"`
}

// Callback is one webhook: which events it wants and where they go. All
// filters must match.
type Callback struct {
	// Name identifies the callback in logs, metrics and the store; unique.
	Name string `koanf:"name" yaml:"name"`
	// Events selects event types: Mistral's names (WORKFLOW_LAUNCHED, ...,
	// TASK_SKIPPED), the kinds EXECUTION and TASK, the aliases
	// on-execution-start, on-execution-complete, on-task-start,
	// on-task-complete, and "*". Required.
	Events []string `koanf:"events" yaml:"events"`
	// Workbook keeps only events of workflows defined in this workbook
	// (resolved from the engine's workbook definitions, exact names, never
	// a prefix guess). Default "" (any).
	Workbook string `koanf:"workbook" yaml:"workbook"`
	// Workflow is a glob (path.Match syntax) on workflow_name.
	// Default "" (any).
	Workflow string `koanf:"workflow" yaml:"workflow"`
	// Namespace keeps only events of this workflow namespace. Default nil
	// (any namespace). `namespace: ""` selects Mistral's default namespace
	// only.
	Namespace *string `koanf:"namespace" yaml:"namespace"`
	// Task is a glob on the task name; applies to TASK events only:
	// execution events are not filtered by it. Default "" (any).
	Task string `koanf:"task" yaml:"task"`
	// Type is the transport: "http" or "amqp" (see AMQP). Default "" (http).
	Type string `koanf:"type" yaml:"type"`
	// Project keeps only events of executions of this project: a Keystone
	// project id, or a project name resolved through watch.keystone (see
	// config/project.go). Default "" (any project).
	Project string `koanf:"project" yaml:"project"`
	// URL receives the notifications; ${NAME} is expanded from the
	// environment at load time. It may be a template over the same data as
	// Template bodies (values escaped for their place in the URL). Required
	// with type http; refused with type amqp.
	URL string `koanf:"url" yaml:"url"`
	// AMQP is where a type amqp callback publishes; refused with type http.
	AMQP AMQP `koanf:"amqp" yaml:"amqp"`
	// Method is the HTTP method. Default "POST".
	Method string `koanf:"method" yaml:"method" default:"POST"`
	// Headers are added to every request; ${NAME} is expanded from the
	// environment. Values are secrets and never logged.
	Headers map[string]string `koanf:"headers" yaml:"headers"`
	// Format is the payload format: "mistral" (exactly Mistral's own
	// notifier body), "envelope" (our JSON envelope), "cloudevents" or
	// "template" or "oslo" (an OpenStack notification, type amqp only).
	// Default "mistral".
	Format string `koanf:"format" yaml:"format" default:"mistral"`
	// Timeout overrides Delivery.Timeout for this callback. Default 0
	// (inherit); Load replaces 0 with Delivery.Timeout.
	Timeout time.Duration `koanf:"timeout" yaml:"timeout"`
	// Retries overrides Delivery.Retries for this callback. Default nil
	// (inherit); Load replaces nil with Delivery.Retries.
	Retries *int `koanf:"retries" yaml:"retries"`
	// Ordering is "root" (events of one root execution are delivered one at
	// a time, in sequence order) or "none" (in parallel). Default "root".
	Ordering string `koanf:"ordering" yaml:"ordering" default:"root"`
	// Concurrency is how many deliveries of this callback may be in flight
	// at once (across root executions when Ordering is "root").
	// Default 4.
	Concurrency int `koanf:"concurrency" yaml:"concurrency" default:"4"`
	// Retry is the long-horizon retry policy applied from the outbox after
	// the in-process retries fail. Default: see RetryPolicy.
	Retry RetryPolicy `koanf:"retry" yaml:"retry"`
	// Secret signs every request with a Standard Webhooks
	// webhook-signature header. ${NAME} is expanded. Default "" (unsigned).
	Secret string `koanf:"secret" yaml:"secret"`
	// SecretFile reads the secret from a file (trailing newline trimmed)
	// at load time; Load stores the content in Secret. Exclusive with
	// Secret. Default "".
	SecretFile string `koanf:"secret_file" yaml:"secret_file"`
	// Secrets are additional secrets; every request is signed with each,
	// for rotation. ${NAME} is expanded. Default none.
	Secrets []string `koanf:"secrets" yaml:"secrets"`
	// CloudEvents tunes format "cloudevents".
	CloudEvents CloudEvents `koanf:"cloudevents" yaml:"cloudevents"`
	// Template is the Go text/template body for format "template";
	// required by that format and refused by the others. Default "".
	Template string `koanf:"template" yaml:"template"`

	// secretVals are the values Load substituted for ${NAME} in this
	// callback or read from its secret_file (see RedactedURL).
	secretVals []string
}

// RetryPolicy is how long and how often the outbox keeps retrying a
// delivery before it becomes a dead letter.
type RetryPolicy struct {
	// InitialInterval is the first wait. Default 5s.
	InitialInterval time.Duration `koanf:"initial_interval" yaml:"initial_interval" default:"5s"`
	// MaxInterval caps the wait (and any Retry-After). Default 10m.
	MaxInterval time.Duration `koanf:"max_interval" yaml:"max_interval" default:"10m"`
	// Multiplier grows the wait after each failure. Default 2.
	Multiplier float64 `koanf:"multiplier" yaml:"multiplier" default:"2"`
	// Jitter is the random fraction (0..1) added to or taken from each
	// wait. Default 0.2.
	Jitter float64 `koanf:"jitter" yaml:"jitter" default:"0.2" zero:"deliberate"`
	// MaxAge is how long after the event a delivery may still be tried.
	// Default 24h.
	MaxAge time.Duration `koanf:"max_age" yaml:"max_age" default:"24h"`
	// MaxAttempts bounds outbox attempts (each may include in-process
	// retries). Default 0 (bounded by MaxAge only).
	MaxAttempts int `koanf:"max_attempts" yaml:"max_attempts"`
}

// CloudEvents tunes the "cloudevents" format.
type CloudEvents struct {
	// Mode is "structured" or "binary". Default "structured".
	Mode string `koanf:"mode" yaml:"mode" default:"structured"`
	// Source is the CloudEvents source attribute.
	// Default "mistral-tap://<upstream host>".
	Source string `koanf:"source" yaml:"source"`
}

// Default returns the configuration used where the file says nothing:
// every field's `default` tag, the one place defaults are written (see
// defaults.go).
func Default() Config {
	var c Config
	setDefaults(reflect.ValueOf(&c).Elem(), false)
	return c
}
