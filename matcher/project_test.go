package matcher

import (
	"slices"
	"strings"
	"testing"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

const (
	demoID = "7ff3544c69394ee99dbbe64988b9da50"
	altID  = "93718da87c074baa99909062e4a80b38"
)

// projectIndex is a per-project workbook index that also resolves names,
// as matcher/workbooks.Resolver does with Keystone.
type projectIndex struct {
	names map[string]string // name → id
	wbs   map[string]string // project/workflow → workbook
}

func (p projectIndex) WorkbookOf(wf, ns string) (string, bool) { return "", false }
func (p projectIndex) WorkbookIn(project, wf, ns string) (string, bool) {
	wb, ok := p.wbs[project+"/"+wf]
	return wb, ok
}
func (p projectIndex) ProjectID(name string) (string, bool) {
	id, ok := p.names[name]
	return id, ok
}

func inProject(ev *event.Event, project string) *event.Event {
	if ev.Task != nil {
		ev.Task.ProjectID = project
	} else {
		ev.Execution.ProjectID = project
	}
	return ev
}

func TestProjectFilter(t *testing.T) {
	cbs := []config.Callback{
		{Name: "all", Events: []string{"*"}},
		{Name: "demo-by-id", Events: []string{"*"}, Project: demoID},
		{Name: "demo-by-name", Events: []string{"*"}, Project: "demo"},
		{Name: "unknown-name", Events: []string{"*"}, Project: "gone"},
		{Name: "ops-wb", Events: []string{"*"}, Workbook: "ops"},
		{Name: "ops-wb-alt", Events: []string{"*"}, Workbook: "ops", Project: "alt"},
	}
	idx := projectIndex{names: map[string]string{"demo": demoID, "alt": altID},
		wbs: map[string]string{demoID + "/ops.main": "ops", altID + "/ops.main": "ops", altID + "/other.main": "other"}}
	m, err := New(cbs, idx)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ev   *event.Event
		want []string
	}{
		{"demo execution", inProject(execEv(event.WorkflowLaunched, "hello", ""), demoID), []string{"all", "demo-by-id", "demo-by-name"}},
		{"demo task", inProject(taskEv(event.TaskFailed, "hello", "", "t"), demoID), []string{"all", "demo-by-id", "demo-by-name"}},
		{"alt execution", inProject(execEv(event.WorkflowLaunched, "hello", ""), altID), []string{"all"}},
		{"auth off", inProject(execEv(event.WorkflowLaunched, "hello", ""), "<default-project>"), []string{"all"}},
		// Both projects have a workbook "ops": each event is looked up in
		// its own project's index.
		{"demo ops workbook", inProject(execEv(event.WorkflowLaunched, "ops.main", ""), demoID), []string{"all", "demo-by-id", "demo-by-name", "ops-wb"}},
		{"alt ops workbook", inProject(execEv(event.WorkflowLaunched, "ops.main", ""), altID), []string{"all", "ops-wb", "ops-wb-alt"}},
		{"alt other workbook", inProject(execEv(event.WorkflowLaunched, "other.main", ""), altID), []string{"all"}},
	}
	for _, tt := range tests {
		if got := m.Match(tt.ev); !slices.Equal(got, tt.want) {
			t.Errorf("%s: Match = %v, want %v", tt.name, got, tt.want)
		}
	}
	reasons := map[string]string{}
	for _, d := range m.Explain(inProject(execEv(event.WorkflowLaunched, "hello", ""), altID)) {
		reasons[d.Callback] = d.Reason
	}
	for cb, want := range map[string]string{
		"demo-by-id":   `project "` + altID + `" is not "` + demoID + `"`,
		"demo-by-name": `is not "demo" (` + demoID + `)`,
		"unknown-name": `a name not resolved through Keystone`,
	} {
		if !strings.Contains(reasons[cb], want) {
			t.Errorf("explain %s: %q lacks %q", cb, reasons[cb], want)
		}
	}
	// A match gives one reason per filter set, the project's among them.
	matched := map[string]string{}
	for _, d := range m.Explain(inProject(execEv(event.WorkflowLaunched, "ops.main", ""), altID)) {
		if d.Matched {
			matched[d.Callback] = d.Reason
		}
	}
	for _, tc := range []struct{ cb, want string }{
		{"all", `event type WORKFLOW_LAUNCHED in [*]`},
		{"ops-wb", `event type WORKFLOW_LAUNCHED in [*]; ops.main is a workflow of workbook ops`},
		{"ops-wb-alt", `event type WORKFLOW_LAUNCHED in [*]; project "alt"; ops.main is a workflow of workbook ops`},
	} {
		if matched[tc.cb] != tc.want {
			t.Errorf("explain %s: %q, want %q", tc.cb, matched[tc.cb], tc.want)
		}
	}
}

// Without a name resolver a project name matches nothing: a project filter
// must never let another project's events through.
func TestProjectNameWithoutResolverMatchesNothing(t *testing.T) {
	m, err := New([]config.Callback{{Name: "demo", Events: []string{"*"}, Project: "demo"}}, fakeIndex{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{demoID, altID, ""} {
		if got := m.Match(inProject(execEv(event.WorkflowLaunched, "x", ""), p)); len(got) != 0 {
			t.Errorf("project %q: Match = %v, want none", p, got)
		}
	}
}
