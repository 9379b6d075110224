package config

import "testing"

// TestDocsExampleLoads keeps docs/mistral-tap.example.yaml, the README's
// configuration reference, valid.
func TestDocsExampleLoads(t *testing.T) {
	c, err := Load(Source{Path: "../docs/mistral-tap.example.yaml", Environ: func() []string {
		return []string{"HOOK_TOKEN=t0ken", "HOOK_SECRET=s3cret"}
	}})
	if err != nil {
		for _, p := range Problems(err) {
			t.Error(p)
		}
		t.Fatal(err)
	}
	d := Default()
	if c.Listen != d.Listen || c.Upstream != d.Upstream || c.Watch.Interval != d.Watch.Interval ||
		c.Proxy.MaxTapBody != d.Proxy.MaxTapBody || c.Delivery.Retries != d.Delivery.Retries {
		t.Errorf("the example's documented defaults drifted from Default(): %+v", c)
	}
	if len(c.Callbacks) != 2 || c.Callbacks[0].Headers["Authorization"] != "Bearer t0ken" {
		t.Errorf("callbacks = %+v", c.Callbacks)
	}
}
