package app

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/notifier/listeners"
	"github.com/mistral-tap/mistral-tap/notifier/send"
)

// listenerStore is what the listeners API and registry need of the store;
// both the SQLite and the PostgreSQL store have it.
type listenerStore interface {
	listeners.Store
	listeners.Source
}

// sealInfo binds derived sealing keys to their use: the same listeners.key
// used elsewhere would give another key.
const sealInfo = "mistral-tap listeners sealing key v1"

// buildListeners builds the /v2/listeners API and the registry when
// listeners.enabled (after the dispatcher, before the proxy's handler is
// wrapped): the sealing key, the Mistral-backed authorizer, the registry as
// the dispatcher's listener matcher.
func (a *app) buildListeners(_ context.Context, _ Options) error {
	cfg := a.cfg
	if !cfg.Listeners.Enabled {
		return nil
	}
	ls, ok := a.st.(listenerStore)
	if !ok {
		return fmt.Errorf("app: listeners: the %s store keeps no listeners", storeLabel(cfg))
	}
	key, err := sealingKey(cfg)
	if err != nil {
		return err
	}
	sealer, err := listeners.NewSealer(key)
	if err != nil {
		return fmt.Errorf("app: listeners: %w", err)
	}
	auth, err := listeners.NewMistralAuthorizer(listeners.MistralOptions{
		URL: apiRoot(cfg), KeystoneURL: strings.TrimSuffix(strings.TrimSuffix(cfg.Watch.Keystone.AuthURL, "/"), "/v3"),
	})
	if err != nil {
		return fmt.Errorf("app: listeners: %w", err)
	}
	log := a.log.With("component", "listeners")
	a.registry, err = listeners.NewRegistry(listeners.RegistryOptions{
		Store: ls, Dispatcher: a.disp, Sealer: sealer, Base: listenerBase(cfg),
		HistoryRetention: cfg.Listeners.History, Logger: log,
	})
	if err != nil {
		return fmt.Errorf("app: listeners: %w", err)
	}
	a.disp.SetListenerMatcher(a.registry)
	a.listenersAPI, err = listeners.NewHandler(listeners.HandlerOptions{
		Store: ls, Sealer: sealer, Auth: auth, AdminToken: cfg.Admin.Token,
		TTL:        listeners.TTL{Default: cfg.Listeners.DefaultTTL, Max: cfg.Listeners.MaxTTL},
		PerProject: cfg.Listeners.MaxPerProject, Changed: a.registry.Changed, Logger: log,
	})
	if err != nil {
		return fmt.Errorf("app: listeners: %w", err)
	}
	return nil
}

// apiRoot is Mistral's API root as the authorizer asks it: the upstream
// plus the path prefix (the proxy forwards the client's path, prefix
// included, to the upstream).
func apiRoot(cfg *config.Config) string {
	return strings.TrimRight(cfg.Upstream, "/") + strings.TrimRight(cfg.Proxy.PathPrefix, "/")
}

// listenerBase is the callback every listener's route starts from: a
// callback with every default, inheriting the delivery section as a file
// callback does.
func listenerBase(cfg *config.Config) config.Callback {
	c := *cfg
	c.Callbacks = []config.Callback{{Name: "listeners"}}
	c.ApplyDefaults()
	return c.Callbacks[0]
}

// sealingKey derives the 32-byte AES key from listeners.key (or
// key_file, read by config.Load). With neither, a single instance uses
// (and on its first start writes) a random key in state_dir; replicas
// cannot, config validation requires a key with PostgreSQL.
func sealingKey(cfg *config.Config) ([]byte, error) {
	material := cfg.Listeners.Key
	if material == "" {
		if cfg.Store.Driver == config.DriverPostgres {
			return nil, errors.New("app: listeners: listeners.key is required with store.driver postgres")
		}
		var err error
		if material, err = stateKey(filepath.Join(cfg.StateDir, config.ListenerKeyFile)); err != nil {
			return nil, err
		}
	}
	key, err := hkdf.Key(sha256.New, []byte(material), nil, sealInfo, listeners.KeySize)
	if err != nil {
		return nil, fmt.Errorf("app: listeners: deriving the sealing key: %w", err)
	}
	return key, nil
}

// stateKey reads the generated key at p, or creates it (0600, exclusively,
// so that two starts racing agree on one key).
func stateKey(p string) (string, error) {
	for range 2 {
		b, err := os.ReadFile(p)
		if err == nil {
			if s := strings.TrimSpace(string(b)); len(s) >= config.MinListenerKeyLen {
				return s, nil
			}
			return "", fmt.Errorf("app: listeners: %s is shorter than %d characters; restore it, or delete it only if no listener is registered (their secrets cannot be opened without it)", p, config.MinListenerKeyLen)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("app: listeners: reading the sealing key: %w", err)
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("app: listeners: creating the sealing key: %w", err)
		}
		var raw [32]byte
		rand.Read(raw[:]) // never fails (crypto/rand)
		s := base64.StdEncoding.EncodeToString(raw[:])
		_, werr := f.WriteString(s + "\n")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			os.Remove(p)
			return "", fmt.Errorf("app: listeners: writing the sealing key: %w", werr)
		}
		return s, nil
	}
	return "", fmt.Errorf("app: listeners: %s appeared and vanished while being read", p)
}

// withListeners serves prefix/v2/listeners[/id] with the listeners API and
// everything else with next (the proxy). Only clean paths reach the API:
// one with dot segments, escapes or an absolute-form target goes to the
// proxy, whose guard refuses what climbs above the API root and forwards
// the rest to Mistral, as it would without the API.
func withListeners(prefix string, api, next http.Handler) http.Handler {
	base := strings.TrimRight(prefix, "/") + listeners.Path
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if (p == base || strings.HasPrefix(p, base+"/")) && r.URL.Host == "" && r.URL.RawPath == "" &&
			(path.Clean(p) == p || path.Clean(p)+"/" == p) {
			api.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// listenerSender sends listener deliveries through their own client when
// listeners.allow_networks differs from delivery's (clients choose those
// URLs, the operator may allow them less), and the rest through all.
type listenerSender struct {
	listeners, all notifier.Sender
}

func (s listenerSender) Send(ctx context.Context, r send.Request) send.Result {
	if notifier.IsListener(r.Callback) {
		return s.listeners.Send(ctx, r)
	}
	return s.all.Send(ctx, r)
}

// listenerSender is the HTTP client of listener deliveries when
// listeners.allow_networks differs from delivery.allow_networks; nil when
// they share the callbacks' client.
func (a *app) listenerSender(o Options) (notifier.Sender, error) {
	cfg := a.cfg
	if !cfg.Listeners.Enabled || slices.Equal(cfg.ListenerNetworks(), cfg.Delivery.AllowNetworks) {
		return nil, nil
	}
	s, err := send.New(send.Options{AllowNetworks: cfg.ListenerNetworks(), Logger: a.log.With("component", "send"), Version: o.Version})
	if err != nil {
		return nil, fmt.Errorf("app: listeners' delivery client: %w", err)
	}
	a.onClose(func() { s.Close() })
	return s, nil
}
