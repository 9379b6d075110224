package main

import (
	"testing"
	"time"
)

func TestLatencyRow(t *testing.T) {
	ms := time.Millisecond
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(100-i) * ms // reversed: the row sorts
	}
	tests := []struct {
		name string
		d    []time.Duration
		want string
	}{
		{"one", []time.Duration{1500 * time.Microsecond},
			"| x (n=1) | p50 1.50 ms, p99 1.50 ms, max 1.50 ms |\n"},
		{"unsorted", []time.Duration{3 * ms, 1 * ms, 2 * ms},
			"| x (n=3) | p50 2.00 ms, p99 3.00 ms, max 3.00 ms |\n"},
		{"hundred", hundred,
			"| x (n=100) | p50 51.00 ms, p99 100.00 ms, max 100.00 ms |\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := latencyRow("x", tt.d); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
