package main

import "testing"

func TestKeepTarget(t *testing.T) {
	tests := []struct {
		name, only string
		want       bool
	}{
		// The baselines stay whatever -targets says.
		{"direct: canned", "nginx", true},
		{"httputil → canned", "nginx", true},
		{webhookFloor, "nginx", true},
		{"direct: fake engine", "nginx", false},
		{"mistral-tap → canned", "nginx", false},
		{"nginx → canned", "nginx", true},
		{"mistral-tap → canned", "nginx,tap", true},
		{"direct: fake engine", "nginx,tap", false},
		{"direct: fake engine", "fake", true},
		// Empty items match nothing, not everything.
		{"mistral-tap → canned", ",", false},
		{"mistral-tap → canned", "", false},
	}
	for _, tt := range tests {
		if got := keepTarget(tt.name, tt.only); got != tt.want {
			t.Errorf("keepTarget(%q, %q) = %v, want %v", tt.name, tt.only, got, tt.want)
		}
	}
}
