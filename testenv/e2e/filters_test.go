package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/testenv/receiver"
)

// filterDSL: a standalone workflow whose name looks like a member of the
// workbook e2e.wb (it is not: no prefix guessing), and one that exists in
// two namespaces.
const filterDSL = `---
version: '2.0'
e2e.wb.lookalike:
  tasks:
    a:
      action: std.noop
e2e_filter:
  tasks:
    a:
      action: std.noop
      on-success: [b]
    b:
      action: std.noop
`

// TestFiltersOnRealWorkbooksAndNamespaces checks workbook membership (with
// dotted names), namespace and workflow/task glob filters against a real
// Mistral: each filtered callback gets exactly its events.
func TestFiltersOnRealWorkbooksAndNamespaces(t *testing.T) {
	skipWithoutTap(t)
	filtered := receiver.New()
	fs := httptest.NewServer(filtered)
	defer fs.Close()

	e := newEnvWith(t, fmt.Sprintf(`  - name: wb
    events: [on-execution-complete]
    workbook: e2e.wb
    url: %[1]s/wb
  - name: ns
    events: [WORKFLOW_SUCCEEDED]
    namespace: e2e-ns
    url: %[1]s/ns
  - name: glob
    events: [TASK_SUCCEEDED]
    workflow: "e2e_filt*"
    task: b
    url: %[1]s/glob
`, fs.URL))
	ctx := ctxFor(t, 2*time.Minute)
	if err := e.api.DefineWorkbook(ctx, workbookDSL); err != nil {
		t.Fatal(err)
	}
	if err := e.api.DefineWorkflows(ctx, filterDSL); err != nil {
		t.Fatal(err)
	}
	// The same workflow in another namespace.
	if _, _, err := e.api.Do(ctx, http.MethodPost, "/v2/workflows?namespace=e2e-ns", filterDSL, "text/plain"); err != nil && !isStatus(err, http.StatusConflict) {
		t.Fatal(err)
	}

	start := func(wf, ns string) string {
		body := map[string]any{"workflow_name": wf}
		if ns != "" {
			body["workflow_namespace"] = ns
		}
		_, b, err := e.api.Do(ctx, http.MethodPost, "/v2/executions", body, "application/json")
		if err != nil {
			t.Fatalf("start %s/%s: %v", ns, wf, err)
		}
		var x Execution
		json.Unmarshal(b, &x)
		if _, err := e.api.WaitExecution(ctx, x.ID, Terminal...); err != nil {
			t.Fatal(err)
		}
		return x.ID
	}
	wbMain := start("e2e.wb.main", "")
	lookalike := start("e2e.wb.lookalike", "")
	nsRun := start("e2e_filter", "e2e-ns")
	defRun := start("e2e_filter", "")

	subs, err := e.direct.Descendants(ctx, wbMain)
	if err != nil || len(subs) != 1 {
		t.Fatalf("workbook sub-execution: %v %v", subs, err)
	}
	want := []string{
		"/glob TASK_SUCCEEDED " + defRun, // task b's workflow_execution_id
		"/glob TASK_SUCCEEDED " + nsRun,
		"/ns WORKFLOW_SUCCEEDED " + nsRun,
		"/wb WORKFLOW_SUCCEEDED " + subs[0].ID,
		"/wb WORKFLOW_SUCCEEDED " + wbMain,
	}
	sort.Strings(want)
	// Only this test's executions count: a fresh mistral-tap also reports
	// executions of the same workflows that ended shortly before it
	// started (its watcher's catch-up), e.g. an earlier run's on this
	// engine.
	ours := map[string]bool{wbMain: true, lookalike: true, nsRun: true, defRun: true, subs[0].ID: true}
	collect := func() []string {
		var got []string
		for _, r := range filtered.Requests() {
			var m map[string]any
			json.Unmarshal(r.Body, &m)
			ev, _ := m["event"].(string)
			id, _ := m["id"].(string)
			if weid, ok := m["workflow_execution_id"].(string); ok {
				id = weid // tasks are identified here by their execution
			}
			if ours[id] {
				got = append(got, r.Path+" "+ev+" "+id)
			}
		}
		sort.Strings(got)
		return got
	}

	deadline := time.Now().Add(15 * time.Second)
	got := collect()
	for len(got) < len(want) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		got = collect()
	}
	time.Sleep(1500 * time.Millisecond) // anything extra would arrive now
	if n := len(collect()); n != len(got) {
		t.Errorf("%d more deliveries arrived late", n-len(got))
	}
	if !slices.Equal(got, want) {
		t.Errorf("filtered deliveries:\n got  %v\n want %v", got, want)
	}
	t.Logf("FILTERS workbook/namespace/glob: %d deliveries, want %d", len(got), len(want))
}
