package config

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	kyaml "github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/providers/structs"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// EnvPrefix starts every environment variable Load reads.
//
// Mapping: strip the prefix, lower-case, and read "__" (double underscore)
// as the section separator; a single "_" stays part of the key. So
// MISTRAL_TAP_LISTEN is `listen`, MISTRAL_TAP_STATE_DIR is `state_dir`,
// MISTRAL_TAP_WATCH__INTERVAL is `watch.interval` and
// MISTRAL_TAP_DELIVERY__ALLOW_NETWORKS is `delivery.allow_networks` (a
// comma-separated list). Only scalar and list keys outside `callbacks` can be
// set this way; maps (headers) and callbacks cannot, use ${NAME} in the file
// instead. Any other MISTRAL_TAP_* variable is an error (a typo must not be
// silently ignored), except MISTRAL_TAP_CONFIG, which is left to the command
// line to name the file, and the service links Kubernetes injects for a
// Service whose name starts with "mistral-tap" (see k8sServiceLink).
const EnvPrefix = "MISTRAL_TAP_"

// envReserved are MISTRAL_TAP_* variables that are not configuration keys.
var envReserved = map[string]bool{"MISTRAL_TAP_CONFIG": true}

// Source says where Load reads configuration from. Later layers win:
// Default(), then the file, then the environment, then explicitly set flags.
type Source struct {
	// Path is the YAML file; "" means none (defaults, environment and flags
	// only).
	Path string
	// Flags, when set, overrides keys with the flags the user set
	// explicitly; a flag named like a key with "." and "_" turned into "-"
	// (--state-dir, --watch-interval, --log-level) sets that key. Flags
	// that name no key (e.g. --config) are ignored. See RegisterFlags.
	Flags *pflag.FlagSet
	// Environ supplies the environment for MISTRAL_TAP_* keys and ${NAME}
	// expansion; nil means os.Environ.
	Environ func() []string
	// Check, when set, is called by every load (and reload) after the
	// configuration's own validation, with the decoded configuration even
	// when that found problems, so that one run reports everything. It
	// checks what configuration does not own, such as event selectors and
	// templates (the command compiles its routing here), and returns
	// *FieldError problems with Path set (others are kept as messages);
	// Load places them in the file like its own. A problem at or under a
	// key that already has one is dropped: it would only repeat it.
	Check func(*Config) error
}

// RegisterFlags defines the usual configuration flags on fs: --listen,
// --upstream, --state-dir, --watch-interval, --log-level, --log-format,
// --admin-listen and --ops-listen. Their defaults are shown in help only;
// a flag overrides the file and the environment only when set.
func RegisterFlags(fs *pflag.FlagSet) {
	d := Default()
	fs.String("listen", d.Listen, "proxy listen address (host:port)")
	fs.String("upstream", d.Upstream, "Mistral API root URL")
	fs.String("state-dir", d.StateDir, "directory for durable state")
	fs.Duration("watch-interval", d.Watch.Interval, "poll interval of the watcher (0 = off)")
	fs.String("log-level", d.Log.Level, "log level: debug, info, warn, error")
	fs.String("log-format", d.Log.Format, "log format: text or json")
	fs.String("admin-listen", d.Admin.Listen, "admin API listen address (empty = off)")
	fs.String("ops-listen", d.Ops.Listen, "metrics and health listen address (empty = off)")
}

// Load reads, merges, expands and validates the configuration. It returns
// either a complete, valid Config (callback defaults applied, ${NAME}
// expanded, secret files read) or nil and every problem found, joined
// (see Problems); never a half config.
func Load(src Source) (*Config, error) {
	c, _, err := load(src)
	return c, err
}

// loaded is what a load read, for the reloader's change detection.
type loaded struct {
	fileData    []byte
	secretFiles []string // resolved paths of secret_file entries
}

// bytesProvider serves already-read file bytes to koanf, so that koanf and
// the strict pass see the very same content even while the file is being
// edited.
type bytesProvider []byte

func (b bytesProvider) ReadBytes() ([]byte, error) { return b, nil }
func (b bytesProvider) Read() (map[string]any, error) {
	return nil, errors.New("bytesProvider: Read unsupported")
}

// load is Load, also returning what it read for the reloader. Layers go
// into one koanf instance in precedence order (defaults, file,
// environment, flags), are decoded once, then expanded and checked; every
// step adds to one list of problems so that a run reports them all.
func load(src Source) (*Config, *loaded, error) {
	environ := src.Environ
	if environ == nil {
		environ = os.Environ
	}
	envList := environ()
	info := &loaded{}
	k := koanf.New(".")
	if err := k.Load(structs.Provider(Default(), "koanf"), nil); err != nil {
		return nil, info, fmt.Errorf("loading defaults: %w", err)
	}
	f, err := loadFile(k, src.Path, info)
	if err != nil {
		return nil, info, err
	}
	probs := f.probs
	leaves := leafKeys()
	overridden := map[string]bool{} // keys the environment or flags set
	envProbs, err := loadEnv(k, envList, leaves, overridden)
	if err != nil {
		return nil, info, err
	}
	probs = append(probs, envProbs...)
	if err := loadFlags(k, src.Flags, leaves, overridden); err != nil {
		return nil, info, err
	}

	c := decodeConfig(k, &f, &probs)
	c.inherit()
	// A key with a type or expansion problem is reported once: validate
	// would only complain again about its placeholder value.
	suppress := f.typeErr
	n := len(probs)
	info.secretFiles = c.resolveSecrets(&probs, envLookup(envList), filepath.Dir(src.Path))
	for _, e := range probs[n:] {
		suppress[e.Path] = true
	}
	probs = c.appendChecks(probs, suppress, src.Check)
	if len(probs) > 0 {
		placeProblems(probs, f.ix, overridden)
		return nil, info, probs.err()
	}
	return c, info, nil
}

// fileLayer is what load took from the configuration file.
type fileLayer struct {
	ix *fileIndex // nil without a file
	// cbNodes are the file's callbacks when koanf has not got them (see
	// loadFile); decodeConfig decodes them itself.
	cbNodes []*yaml.Node
	// typeErr holds the keys the strict pass found a problem at.
	typeErr map[string]bool
	probs   problems // the strict pass's
}

// loadFile reads the file at path (none when "") into k, after the strict
// pass has checked it against Config. It returns an error, and load
// stops, only when there is nothing to decode: the file cannot be read or
// is not YAML. Otherwise the strict pass's problems are in the layer.
func loadFile(k *koanf.Koanf, path string, info *loaded) (fileLayer, error) {
	f := fileLayer{typeErr: map[string]bool{}}
	if path == "" {
		return f, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return f, &FieldError{File: path, Msg: fmt.Sprintf("cannot read config file: %v", unwrapPathErr(err))}
	}
	info.fileData = data
	f.ix, f.probs = strictCheck(path, data)
	if len(f.probs) == 1 && errors.Is(f.probs[0], ErrSyntax) {
		return f, f.probs.err()
	}
	for _, e := range f.probs {
		f.typeErr[e.Path] = true
	}
	// koanf gets the file without its callbacks when it can: only
	// the file sets callbacks, and decodeNode reads them from
	// the strict pass's tree at a fraction of koanf's cost.
	parser := nullsKeepDefaults{kyaml.Parser()}
	if rest, nodes, ok := splitCallbacks(f.ix); ok && fastCallbacks && k.Load(bytesProvider(rest), parser) == nil {
		f.cbNodes = nodes
	} else if err := k.Load(bytesProvider(data), parser); err != nil {
		// The strict pass's problems explain the failure better when it
		// found any; otherwise YAML decoding refused what parsing
		// accepted (a duplicate key).
		if len(f.probs) > 0 {
			return f, f.probs.err()
		}
		return f, yamlSyntaxError(path, err)
	}
	return f, nil
}

// nullsKeepDefaults is the YAML parser minus the file's null values at
// the configuration's own keys: a key written with no value (`interval:`,
// or a whole `watch:` left empty) keeps its default, as it does inside a
// callback, instead of merging over it as a zero (which would silently
// turn the watcher off, or fail with "0s is less than 200ms"). Nulls
// inside maps (header values) are data and stay.
type nullsKeepDefaults struct{ koanf.Parser }

func (p nullsKeepDefaults) Unmarshal(b []byte) (map[string]any, error) {
	m, err := p.Parser.Unmarshal(b)
	if err == nil {
		dropNulls(m, reflect.TypeOf(Config{}))
	}
	return m, err
}

// dropNulls deletes m's nil values at t's fields, recursing into sections.
func dropNulls(m map[string]any, t reflect.Type) {
	fields := structFields(t)
	for k, v := range m {
		f, ok := fields[k]
		if !ok {
			continue // an unknown key: the strict pass reports it
		}
		if v == nil {
			delete(m, k)
			continue
		}
		if sub, isMap := v.(map[string]any); isMap && f.Type.Kind() == reflect.Struct && f.Type != durationType {
			dropNulls(sub, f.Type)
		}
	}
}

// loadEnv loads the MISTRAL_TAP_* variables of envList into k and marks
// the keys they set in overridden. It returns the problems of unknown
// variables and bad values, sorted by variable name (the environment's
// order means nothing), and an error only if koanf fails.
func loadEnv(k *koanf.Koanf, envList []string, leaves map[string]reflect.Type, overridden map[string]bool) (problems, error) {
	envErr := problems{}
	if err := k.Load(env.Provider(".", env.Opt{
		Prefix:      EnvPrefix,
		EnvironFunc: func() []string { return envList },
		TransformFunc: func(name, v string) (string, any) {
			if envReserved[name] || k8sServiceLink(name, v) {
				return "", nil
			}
			key := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, EnvPrefix)), "__", ".")
			t, ok := leaves[key]
			if !ok {
				envErr.add(FieldError{Field: name, Msg: fmt.Sprintf("unknown environment variable (no settable key %q; e.g. %sWATCH__INTERVAL sets watch.interval)", key, EnvPrefix)})
				return "", nil
			}
			val, err := envValue(t, v)
			overridden[key] = true
			if err != nil {
				envErr.add(FieldError{Path: key, Field: key, Value: redactIfSecret(key, v), Msg: fmt.Sprintf("from %s: %v", name, err)})
				return "", nil
			}
			return key, val
		},
	}), nil); err != nil {
		return nil, fmt.Errorf("loading environment: %w", err)
	}
	slices.SortFunc(envErr, func(a, b *FieldError) int { return cmp.Compare(a.Field, b.Field) })
	return envErr, nil
}

// loadFlags loads into k the flags of fs that the user set and that name
// a key (see Source.Flags), and marks those keys in overridden.
func loadFlags(k *koanf.Koanf, fs *pflag.FlagSet, leaves map[string]reflect.Type, overridden map[string]bool) error {
	if fs == nil {
		return nil
	}
	byFlag := map[string]string{}
	for key := range leaves {
		byFlag[strings.NewReplacer(".", "-", "_", "-").Replace(key)] = key
	}
	if err := k.Load(posflag.ProviderWithFlag(fs, ".", k, func(f *pflag.Flag) (string, any) {
		key, ok := byFlag[f.Name]
		if !ok || !f.Changed {
			return "", nil
		}
		overridden[key] = true
		return key, posflag.FlagVal(fs, f)
	}), nil); err != nil {
		return fmt.Errorf("loading flags: %w", err)
	}
	return nil
}

// decodeConfig decodes k's merged layers, and the callbacks f kept from
// koanf, into a Config. A decoding failure is a problem only when the
// strict pass found none: it would be their consequence. It then drops
// the file's parsed tree, which load no longer needs.
func decodeConfig(k *koanf.Koanf, f *fileLayer, probs *problems) *Config {
	// Pre-populating Callbacks makes the decoder fill each element in place
	// (mapstructure reuses existing slice elements), so keys absent from a
	// callback keep the callback defaults.
	// Only the file sets callbacks, so the strict pass has counted them
	// (k.Get would deep-copy the whole list just to count it).
	var c Config
	if f.ix != nil && f.ix.callbacks > 0 {
		c.Callbacks = make([]Callback, f.ix.callbacks)
		for i := range c.Callbacks {
			c.Callbacks[i] = defaultCallback()
		}
	}
	if err := k.Unmarshal("", &c); err != nil && len(f.typeErr) == 0 {
		probs.add(FieldError{Msg: fmt.Sprintf("decoding configuration: %v", err)})
	}
	if f.cbNodes != nil {
		// koanf decoded the default (no callbacks) over the slice.
		c.Callbacks = make([]Callback, len(f.cbNodes))
		for i, n := range f.cbNodes {
			c.Callbacks[i] = defaultCallback()
			decodeNode(n, reflect.ValueOf(&c.Callbacks[i]).Elem())
		}
		f.cbNodes = nil
	}
	f.ix.release()
	c.nilEmpty()
	return &c
}

// nilEmpty sets the maps and lists that merged to empty back to nil, as
// in Default(), so that an empty file loads to exactly Default().
func (c *Config) nilEmpty() {
	if len(c.Watch.Headers) == 0 {
		c.Watch.Headers = nil
	}
	if len(c.Delivery.AllowNetworks) == 0 {
		c.Delivery.AllowNetworks = nil
	}
	if len(c.Listeners.AllowNetworks) == 0 {
		c.Listeners.AllowNetworks = nil
	}
	if len(c.Callbacks) == 0 {
		c.Callbacks = nil
	}
}

// appendChecks appends to probs the problems validate finds at keys not
// in suppress, then those of check (Source.Check) at keys that have none
// yet (see appendNew). check sees c even when it has problems, so that
// one run reports everything.
func (c *Config) appendChecks(probs problems, suppress map[string]bool, check func(*Config) error) problems {
	var vp problems
	c.validate(&vp)
	for _, e := range vp {
		if !suppress[e.Path] {
			probs = append(probs, e)
		}
	}
	if check != nil {
		probs = appendNew(probs, Problems(check(c)))
	}
	return probs
}

// placeProblems locates probs in the file, except at keys the environment
// or flags set (the file's value is not the one in use), and orders them:
// located problems first, in file order; the rest keep their discovery
// order.
func placeProblems(probs problems, ix *fileIndex, overridden map[string]bool) {
	for _, e := range probs {
		if !overridden[e.Path] {
			ix.locate(e)
		}
	}
	slices.SortStableFunc(probs, func(a, b *FieldError) int {
		if (a.Line == 0) != (b.Line == 0) {
			if a.Line == 0 {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
}

// appendNew appends the problems of more whose key has no problem in
// probs yet, at, above or below it ("callbacks.0.events" covers
// "callbacks.0.events.1" and the reverse).
func appendNew(probs, more []*FieldError) []*FieldError {
	had := make(map[string]bool, len(probs))     // keys with a problem
	above := make(map[string]bool, 2*len(probs)) // their ancestors
	for _, e := range probs {
		had[e.Path] = true
		for p := e.Path; strings.Contains(p, "."); {
			p = p[:strings.LastIndexByte(p, '.')]
			above[p] = true
		}
	}
	covered := func(path string) bool {
		if path == "" || above[path] {
			return path != ""
		}
		for p := path; ; p = p[:strings.LastIndexByte(p, '.')] {
			if had[p] {
				return true
			}
			if !strings.Contains(p, ".") {
				return false
			}
		}
	}
	for _, e := range more {
		if !covered(e.Path) {
			probs = append(probs, e)
		}
	}
	return probs
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// inherit applies Delivery's timeout and retries to callbacks that do not
// override them, and the CloudEvents source default.
func (c *Config) inherit() {
	source := "mistral-tap://"
	if u, err := url.Parse(c.Upstream); err == nil && u.Host != "" {
		source += u.Host
	}
	for i := range c.Callbacks {
		cb := &c.Callbacks[i]
		if cb.Timeout == 0 {
			cb.Timeout = c.Delivery.Timeout
		}
		if cb.Retries == nil {
			r := c.Delivery.Retries
			cb.Retries = &r
		}
		if cb.CloudEvents.Source == "" {
			cb.CloudEvents.Source = source
		}
	}
}

// resolveSecrets expands ${NAME} in the fields that may hold secrets and
// reads secret files (relative paths are relative to the config file's
// directory). It returns the secret files read.
func (c *Config) resolveSecrets(p *problems, lookup func(string) (string, bool), dir string) []string {
	var used *[]string // where exp records the values it substitutes
	exp := func(path, cb, field, what string, s *string) {
		v, err := expand(*s, lookup, used)
		if err != nil {
			p.add(FieldError{Path: path, Callback: cb, Field: field, Value: redacted, Msg: what + err.Error()})
			return
		}
		*s = v
	}
	expMap := func(path, cb, field string, m map[string]string) {
		for _, name := range slices.Sorted(maps.Keys(m)) {
			v := m[name]
			exp(path+"."+name, cb, field, "header "+name+": ", &v)
			m[name] = v
		}
	}
	used = &c.secretVals
	expMap("watch.headers", "", "watch.headers", c.Watch.Headers)
	exp("admin.token", "", "admin.token", "", &c.Admin.Token)
	exp("store.dsn", "", "store.dsn", "", &c.Store.DSN)
	exp("watch.keystone.password", "", "watch.keystone.password", "", &c.Watch.Keystone.Password)
	exp("listeners.key", "", "listeners.key", "", &c.Listeners.Key)

	var files []string
	if f := c.readListenerKey(p, dir); f != "" {
		files = append(files, f)
	}
	for i := range c.Callbacks {
		cb := &c.Callbacks[i]
		used = &cb.secretVals
		label := CallbackLabel(cb, i)
		base := "callbacks." + strconv.Itoa(i) + "."
		fileProblem := func(msg string) {
			p.add(FieldError{Path: base + "secret_file", Callback: label, Field: "secret_file", Value: cb.SecretFile, Msg: msg})
		}
		exp(base+"url", label, "url", "", &cb.URL)
		exp(base+"amqp.url", label, "amqp.url", "", &cb.AMQP.URL)
		expMap(base+"headers", label, "headers", cb.Headers)
		exp(base+"secret", label, "secret", "", &cb.Secret)
		for j := range cb.Secrets {
			exp(base+"secrets."+strconv.Itoa(j), label, "secrets", "", &cb.Secrets[j])
		}
		if cb.SecretFile == "" {
			continue
		}
		if cb.Secret != "" {
			fileProblem("secret and secret_file are exclusive")
			continue
		}
		f := cb.SecretFile
		if !filepath.IsAbs(f) && dir != "" {
			f = filepath.Join(dir, f)
		}
		files = append(files, f)
		b, err := os.ReadFile(f)
		if err != nil {
			fileProblem(fmt.Sprintf("cannot read %s: %v", f, unwrapPathErr(err)))
			continue
		}
		s := strings.TrimRight(string(b), "\r\n")
		if s == "" {
			fileProblem(fmt.Sprintf("%s is empty", f))
			continue
		}
		cb.Secret = s
		cb.secretVals = append(cb.secretVals, s)
	}
	return files
}

// readListenerKey reads listeners.key_file into listeners.key (a
// secret), and returns the path read ("" when none).
func (c *Config) readListenerKey(p *problems, dir string) string {
	l := &c.Listeners
	if l.KeyFile == "" {
		return ""
	}
	problem := func(msg string) {
		p.add(FieldError{Path: "listeners.key_file", Field: "listeners.key_file", Value: l.KeyFile, Msg: msg})
	}
	if l.Key != "" {
		problem("key and key_file are exclusive")
		return ""
	}
	f := l.KeyFile
	if !filepath.IsAbs(f) && dir != "" {
		f = filepath.Join(dir, f)
	}
	b, err := os.ReadFile(f)
	if err != nil {
		problem(fmt.Sprintf("cannot read %s: %v", f, unwrapPathErr(err)))
		return f
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		problem(fmt.Sprintf("%s is empty", f))
		return f
	}
	l.Key = s
	c.secretVals = append(c.secretVals, s)
	return f
}

// leafKeys lists the keys the environment and flags may set, with their
// types: every scalar or list field outside callbacks, not maps.
func leafKeys() map[string]reflect.Type {
	out := map[string]reflect.Type{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for name, f := range structFields(t) {
			key := join(prefix, name)
			switch ft := f.Type; {
			case ft == durationType:
				out[key] = ft
			case ft.Kind() == reflect.Struct:
				walk(ft, key)
			case ft.Kind() == reflect.Map, key == "callbacks":
			default:
				out[key] = ft
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	return out
}

// envValue checks an environment value against the key's type and
// returns what koanf should decode.
func envValue(t reflect.Type, v string) (any, error) {
	switch {
	case t == durationType:
		if _, err := parseDuration(v); err != nil {
			return nil, fmt.Errorf("invalid duration %q (e.g. 500ms, 5s, 7d)", v)
		}
		return v, nil
	case t.Kind() == reflect.Slice:
		var out []string
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out, nil
	case t.Kind() == reflect.Int || t.Kind() == reflect.Int64:
		if _, err := strconv.ParseInt(v, 0, 64); err != nil {
			return nil, fmt.Errorf("want an integer, got %q", v)
		}
	case t.Kind() == reflect.Float64:
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return nil, fmt.Errorf("want a number, got %q", v)
		}
	case t.Kind() == reflect.Bool:
		if _, err := strconv.ParseBool(v); err != nil {
			return nil, fmt.Errorf("want true or false, got %q", v)
		}
	}
	return v, nil
}

// k8sLink matches the suffixes of Kubernetes' service-link variables after
// EnvPrefix: for a Service "mistral-tap[-x]" every pod of the namespace
// gets MISTRAL_TAP[_X]_SERVICE_HOST, _SERVICE_PORT[_<name>], _PORT and
// _PORT_<port>_<proto>[_PROTO|_PORT|_ADDR]. No configuration key has these
// names: keys below the top level use "__".
var k8sLink = regexp.MustCompile(`^(?:(SERVICE_HOST)|(SERVICE_PORT(?:_[A-Z0-9_]+)?)|(PORT)|(PORT_[0-9]+_(?:TCP|UDP|SCTP))(_PROTO|_PORT|_ADDR)?)$`)

// k8sServiceLink reports whether name=value is a Kubernetes service link.
// The value must have the shape Kubernetes gives it (an IP, a port, a
// tcp://ip:port URL, a protocol), so that a typo of a real key with a
// different value is still refused.
func k8sServiceLink(name, value string) bool {
	// The service's own name may contain "_PORT" or "_SERVICE", so every
	// split between a name and a suffix is tried.
	rest := strings.TrimPrefix(name, EnvPrefix)
	for i := 0; i < len(rest); i++ {
		if i > 0 && rest[i-1] != '_' {
			continue
		}
		if m := k8sLink.FindStringSubmatch(rest[i:]); m != nil && k8sValueFits(m, value) {
			return true
		}
	}
	return false
}

// k8sValueFits checks value against the link kind matched in m.
func k8sValueFits(m []string, value string) bool {
	isPort := func(s string) bool { n, err := strconv.Atoi(s); return err == nil && n > 0 && n < 65536 }
	isIP := func(s string) bool { _, err := netip.ParseAddr(s); return err == nil }
	isURL := func(s string) bool {
		for _, p := range []string{"tcp://", "udp://", "sctp://"} {
			if rest, ok := strings.CutPrefix(s, p); ok {
				h, port, err := net.SplitHostPort(rest)
				return err == nil && isIP(h) && isPort(port)
			}
		}
		return false
	}
	switch {
	case m[1] != "":
		return isIP(value) || value == "None" // headless services
	case m[2] != "":
		return isPort(value)
	case m[3] != "":
		return isURL(value)
	case m[5] == "_PROTO":
		return value == "tcp" || value == "udp" || value == "sctp"
	case m[5] == "_PORT":
		return isPort(value)
	case m[5] == "_ADDR":
		return isIP(value)
	default:
		return isURL(value)
	}
}
