package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mistral-tap/mistral-tap/notifier/store"
)

// TestDeliveriesBadUsage pins each refusal of `deliveries`: its exit code,
// its message and which check wins when several apply (the store is opened
// before --since and --state are checked).
func TestDeliveriesBadUsage(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, store.FileName), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	empty := t.TempDir()
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string // prefix
		stderr     string // exact, with the temporary directory as DIR
		stderrPfix bool
	}{
		{"no verb", []string{"deliveries"}, 2, "Usage:\n  mistral-tap deliveries list", "mistral-tap deliveries: want 'list' or 'replay'\n", false},
		{"unknown verb", []string{"deliveries", "purge"}, 2, "Usage:\n  mistral-tap deliveries list", "mistral-tap deliveries: want 'list' or 'replay'\n", false},
		{"unknown flag", []string{"deliveries", "list", "--state-dir", dir, "--nope"}, 2, "", "mistral-tap deliveries: unknown flag: --nope\n", false},
		{"help", []string{"deliveries", "replay", "--help"}, 2, "Usage of deliveries replay:\n      --callback string     only this callback\n  -c, --config string", "mistral-tap deliveries: pflag: help requested\n", false},
		{"bad state", []string{"deliveries", "list", "--state-dir", dir, "--state", "lost"}, 2, "", "mistral-tap deliveries: --state \"lost\": want dead, pending or delivered\n", false},
		{"bad since", []string{"deliveries", "list", "--state-dir", dir, "--since", "yesterday", "--state", "lost"}, 2, "",
			"mistral-tap deliveries: --since \"yesterday\": want RFC 3339 (2026-11-28T10:00:00Z) or a duration like 2h\n", false},
		{"no store before bad since", []string{"deliveries", "replay", "--state-dir", empty, "--since", "yesterday"}, 1, "",
			"mistral-tap deliveries: no store in DIR (has mistral-tap run there?): ", true},
		{"two ids", []string{"deliveries", "replay", "--state-dir", dir, "a", "b"}, 2, "", "mistral-tap deliveries: replay takes at most one delivery id\n", false},
		{"no selector", []string{"deliveries", "replay", "--state-dir", dir}, 2, "", "mistral-tap deliveries: replay needs an ID, --callback or --since\n", false},
		{"unknown id", []string{"deliveries", "replay", "--state-dir", dir, "evt_none/ops"}, 0, "replayed 0 delivery(ies)\n", "", false},
		{"since alone", []string{"deliveries", "replay", "--state-dir", dir, "--since", "2h"}, 0, "replayed 0 delivery(ies)\n", "", false},
		{"empty json list", []string{"deliveries", "list", "--state-dir", dir, "--json"}, 0, "", "", false},
		{"empty table", []string{"deliveries", "list", "--state-dir", dir, "--callback", "ops", "--since", "2026-11-28T10:00:00Z"}, 0,
			"ID  CALLBACK  EVENT  STATE  ATTEMPTS  STATUS  UPDATED  LAST ERROR\n", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tt.args, &out, &errOut)
			if code != tt.code {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tt.code, errOut.String())
			}
			if !strings.HasPrefix(out.String(), tt.stdout) || (tt.stdout == "" && out.Len() != 0) {
				t.Errorf("stdout %q, want it to start with %q", out.String(), tt.stdout)
			}
			want := strings.ReplaceAll(tt.stderr, "DIR", empty)
			if got := errOut.String(); got != want && !(tt.stderrPfix && strings.HasPrefix(got, want)) {
				t.Errorf("stderr %q, want %q", got, want)
			}
		})
	}
}
