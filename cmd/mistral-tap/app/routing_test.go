package app_test

import (
	"os"
	"strings"
	"testing"

	"github.com/mistral-tap/mistral-tap/cmd/mistral-tap/app"
	"github.com/mistral-tap/mistral-tap/config"
)

const routingGood = `
callbacks:
  - name: tpl
    events: [TASK_FAILED]
    url: http://127.0.0.1:8080/
    format: template
    template: '{"id": "{{ .Event.ID }}"}'
`

// TestCompilerOnReload: a reload whose template or event selector does
// not compile is refused with the problem's position, the running
// configuration stays, and a configuration that loads is compiled once.
func TestCompilerOnReload(t *testing.T) {
	path := writeConfig(t, routingGood)
	comp := &app.Compiler{}
	var compiled []*app.Compiled
	r := config.NewReloader(config.Source{Path: path, Check: comp.Check}, func(c *config.Config) error {
		out, err := comp.For(c)
		compiled = append(compiled, out)
		return err
	}, nil)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	first := r.Current()
	if again, _ := comp.For(first); len(compiled) != 1 || again != compiled[0] {
		t.Errorf("For compiled the loaded configuration again")
	}

	bad := strings.Replace(routingGood, "{{ .Event.ID }}", "{{ .Event.Nope }}", 1)
	bad = strings.Replace(bad, "[TASK_FAILED]", "[TASK_FAILED, TASK_EXPLODED]", 1)
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	err := r.Reload()
	var got []string
	for _, p := range config.Problems(err) {
		got = append(got, p.Error())
	}
	want := []string{
		path + `:4:27: callback "tpl": field events: unknown event "TASK_EXPLODED"`,
		path + `:7:15: callback "tpl": field template: fails on a sample event`,
	}
	if len(got) != len(want) {
		t.Fatalf("problems = %q, want %d", got, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d = %q, want prefix %q", i, got[i], want[i])
		}
	}
	if r.Current() != first || len(compiled) != 1 {
		t.Errorf("a bad reload was applied")
	}
}
