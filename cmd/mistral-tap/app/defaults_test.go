package app_test

import (
	"testing"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/tap/proxy"
)

// TestConfigDefaultsMatchComponentFallbacks: the configuration's defaults
// (its struct tags) and the fallbacks the components apply to zero options
// are one set of facts. The components cannot import config (it is not a
// stage of the flow), so this test, in the package that wires both, fails
// when one side changes alone.
func TestConfigDefaultsMatchComponentFallbacks(t *testing.T) {
	d := config.Default()
	cfg, err := config.Load(config.Source{Path: writeConfig(t, "callbacks:\n  - name: x\n    events: [\"*\"]\n    url: https://example.com/hook\n")})
	if err != nil {
		t.Fatal(err)
	}
	cb := cfg.Callbacks[0]
	cases := []struct {
		name      string
		cfg, comp any
	}{
		{"proxy.dial_timeout", d.Proxy.DialTimeout, proxy.DefaultDialTimeout},
		{"proxy.response_header_timeout", d.Proxy.ResponseHeaderTimeout, proxy.DefaultResponseHeaderTimeout},
		{"proxy.max_idle_conns_per_host", d.Proxy.MaxIdleConnsPerHost, proxy.DefaultMaxIdleConnsPerHost},
		{"delivery.breaker_probe_max", d.Delivery.BreakerProbeMax, notifier.DefaultBreakerProbeMax},
		{"callbacks[].concurrency", cb.Concurrency, notifier.DefaultConcurrency},
		{"callbacks[].retry.initial_interval", cb.Retry.InitialInterval, notifier.DefaultInitialInterval},
		{"callbacks[].retry.max_interval", cb.Retry.MaxInterval, notifier.DefaultMaxInterval},
		{"callbacks[].retry.multiplier", cb.Retry.Multiplier, float64(notifier.DefaultMultiplier)},
		{"callbacks[].retry.max_age", cb.Retry.MaxAge, notifier.DefaultMaxAge},
	}
	for _, c := range cases {
		if c.cfg != c.comp {
			t.Errorf("%s: config default %v, component fallback %v", c.name, c.cfg, c.comp)
		}
	}
}
