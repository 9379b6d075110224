package main

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestDemo runs the demo end to end (fake engine, proxy, receiver) and
// checks what a user sees: the banner, every scripted step in order and a
// non-zero count of delivered notifications; a bad flag is a usage error.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three workflows through the proxy")
	}
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string // in this order
		stderr string   // exact
	}{
		{"scripted", []string{"demo"}, 0, []string{
			"mistral-tap demo\n  fake Mistral   http://127.0.0.1:",
			"(clients talk to this)",
			"==> defining workflows demo_deploy, demo_migrate, demo_backup\n",
			"==> starting demo_deploy (succeeds) and demo_migrate (fails)\n",
			"==> starting demo_backup, then pausing and resuming it\n",
			"==> all three executions finished; waiting for the last notifications\n",
			" notifications delivered.\n",
		}, ""},
		{"bad flag", []string{"demo", "--nope"}, 2, nil, "mistral-tap demo: unknown flag: --nope\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tt.args, &out, &errOut)
			if code != tt.code {
				t.Fatalf("exit code %d, want %d; stderr: %s", code, tt.code, errOut.String())
			}
			if errOut.String() != tt.stderr {
				t.Errorf("stderr %q, want %q", errOut.String(), tt.stderr)
			}
			rest := out.String()
			for _, want := range tt.stdout {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Fatalf("stdout lacks %q (in order):\n%s", want, out.String())
				}
				rest = rest[i+len(want):]
			}
			if tt.code != 0 {
				return
			}
			m := regexp.MustCompile(`\n(\d+) notifications delivered\.\n`).FindStringSubmatch(out.String())
			if m == nil {
				t.Fatalf("no count in:\n%s", out.String())
			}
			n, _ := strconv.Atoi(m[1])
			if n == 0 {
				t.Errorf("no notifications delivered:\n%s", out.String())
			}
		})
	}
}
