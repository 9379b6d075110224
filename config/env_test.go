package config

import (
	"strings"
	"testing"
)

// TestKubernetesServiceLinks: the variables Kubernetes injects for a
// Service named mistral-tap... do not stop a load; typos of real keys,
// and service-link names whose values do not look like Kubernetes', still
// do.
func TestKubernetesServiceLinks(t *testing.T) {
	tests := []struct {
		env     []string
		wantErr string
	}{
		{env: []string{
			"MISTRAL_TAP_SERVICE_HOST=10.96.0.12",
			"MISTRAL_TAP_SERVICE_PORT=8990",
			"MISTRAL_TAP_SERVICE_PORT_HTTP=8990",
			"MISTRAL_TAP_PORT=tcp://10.96.0.12:8990",
			"MISTRAL_TAP_PORT_8990_TCP=tcp://10.96.0.12:8990",
			"MISTRAL_TAP_PORT_8990_TCP_PROTO=tcp",
			"MISTRAL_TAP_PORT_8990_TCP_PORT=8990",
			"MISTRAL_TAP_PORT_8990_TCP_ADDR=10.96.0.12",
			"MISTRAL_TAP_ADMIN_SERVICE_HOST=fd00::12",
			"MISTRAL_TAP_ADMIN_PORT_8991_TCP=tcp://[fd00::12]:8991",
		}},
		{env: []string{"MISTRAL_TAP_LISTN=127.0.0.1:9"}, wantErr: "MISTRAL_TAP_LISTN"},
		{env: []string{"MISTRAL_TAP_WATCH_INTERVAL=2s"}, wantErr: "MISTRAL_TAP_WATCH_INTERVAL"},
		{env: []string{"MISTRAL_TAP_PORT=8990"}, wantErr: "MISTRAL_TAP_PORT"},
		{env: []string{"MISTRAL_TAP_SERVICE_HOST=mistral.example.com"}, wantErr: "MISTRAL_TAP_SERVICE_HOST"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.env, ","), func(t *testing.T) {
			_, err := Load(Source{Path: "testdata/good/minimal.yaml", Environ: environ(tt.env...)})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Load error = %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
}
