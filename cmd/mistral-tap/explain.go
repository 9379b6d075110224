package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/mistral-tap/mistral-tap/cmd/mistral-tap/app"
	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/matcher"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

// staticWorkbooks answers workbook membership from --workbook, since
// explain does not talk to the engine.
type staticWorkbooks struct{ name, workflow string }

func (s staticWorkbooks) WorkbookOf(wf, _ string) (string, bool) {
	if s.name == "" || wf != s.workflow {
		return "", false
	}
	return s.name, true
}

// cmdExplain prints which callbacks an event would reach and why the
// others would not.
func cmdExplain(args []string, stdout io.Writer) error {
	fs := pflag.NewFlagSet("explain", pflag.ContinueOnError)
	fs.SetOutput(stdout)
	cfgPath := fs.StringP("config", "c", os.Getenv("MISTRAL_TAP_CONFIG"), "configuration file")
	raw := fs.String("event", "", `the event as JSON: a Mistral notifier body ({"event": "TASK_FAILED", "workflow_name": ..., "name": ...})`)
	typ := fs.String("type", "", "event type, e.g. TASK_FAILED (instead of --event)")
	wf := fs.String("workflow", "", "workflow name (with --type)")
	task := fs.String("task", "", "task name (with a TASK_* --type)")
	ns := fs.String("namespace", "", "workflow namespace")
	wb := fs.String("workbook", "", "treat the workflow as a member of this workbook")
	project := fs.String("project", "", "the execution's Keystone project (id, or the name a callback's project: uses)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *cfgPath == "" {
		return usageError{fmt.Errorf("--config is required")}
	}
	cfg, err := config.Load(config.Source{Path: *cfgPath, Check: app.Check})
	if err != nil {
		printProblems(stdout, err)
		return errReported
	}

	ev, err := explainEvent(*raw, *typ, *wf, *task, *ns)
	if err != nil {
		return usageError{err}
	}
	if *project != "" {
		setProject(ev, *project)
	}
	m, err := matcher.New(cfg.Callbacks, staticWorkbooks{name: *wb, workflow: ev.WorkflowName()})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "event %s workflow=%q namespace=%q", ev.Type, ev.WorkflowName(), ev.Namespace())
	if ev.Task != nil {
		fmt.Fprintf(stdout, " task=%q", ev.Task.Name)
	}
	if p := projectOf(ev); p != "" {
		fmt.Fprintf(stdout, " project=%q", p)
	}
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, d := range m.Explain(ev) {
		verdict := "skip"
		if d.Matched {
			verdict = "SEND"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", verdict, d.Callback, d.Reason)
	}
	return tw.Flush()
}

// explainEvent builds the event to explain from a Mistral notifier body or
// from the flags.
func explainEvent(raw, typ, wf, task, ns string) (ev *event.Event, err error) {
	if raw != "" {
		var body struct {
			Event             string `json:"event"`
			ID                string `json:"id"`
			Name              string `json:"name"`
			WorkflowName      string `json:"workflow_name"`
			WorkflowNamespace string `json:"workflow_namespace"`
			State             string `json:"state"`
			WorkflowExecution string `json:"workflow_execution_id"`
			ProjectID         string `json:"project_id"`
		}
		if err := json.Unmarshal([]byte(raw), &body); err != nil {
			return nil, fmt.Errorf("--event is not valid JSON: %w", err)
		}
		typ, wf, ns = body.Event, body.WorkflowName, body.WorkflowNamespace
		if strings.HasPrefix(typ, "TASK_") {
			task = body.Name
		}
		defer func() {
			if ev != nil && body.ProjectID != "" {
				setProject(ev, body.ProjectID)
			}
		}()
	}
	t := event.Type(typ)
	known := false
	for _, k := range event.Types {
		known = known || k == t
	}
	if !known {
		return nil, fmt.Errorf("event type %q is not one of Mistral's (%s ...)", typ, event.Types[0])
	}
	ev = &event.Event{Type: t}
	if t.Kind() == event.KindTask {
		ev.Task = &event.Task{Name: task, WorkflowName: wf, WorkflowNamespace: ns}
	} else {
		ev.Execution = &event.Execution{WorkflowName: wf, WorkflowNamespace: ns}
	}
	return ev, nil
}

func setProject(ev *event.Event, p string) {
	if ev.Task != nil {
		ev.Task.ProjectID = p
	} else {
		ev.Execution.ProjectID = p
	}
}

func projectOf(ev *event.Event) string {
	if ev.Task != nil {
		return ev.Task.ProjectID
	}
	return ev.Execution.ProjectID
}
