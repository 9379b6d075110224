package track

import (
	"context"
	"iter"
	"net/url"
	"slices"
	"testing"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// scopedEngine plays Mistral 15 with auth on for one token's project: it
// lists that project's tasks only, and executions across projects only
// with all_projects.
type scopedEngine struct {
	project string
	execs   []event.Execution
	tasks   []event.Task
	queries *[]string
}

func (e scopedEngine) Execution(_ context.Context, id string) (event.Execution, error) {
	for _, x := range e.execs {
		if x.ID == id {
			return x, nil
		}
	}
	return event.Execution{}, context.Canceled
}

func (e scopedEngine) Executions(_ context.Context, q url.Values) iter.Seq2[[]event.Execution, error] {
	*e.queries = append(*e.queries, "executions "+e.project+" "+q.Encode())
	var out []event.Execution
	for _, x := range e.execs {
		if x.RootExecutionID != nil && *x.RootExecutionID == q.Get("root_execution_id") &&
			(x.ProjectID == e.project || q.Get("all_projects") == "true") {
			out = append(out, x)
		}
	}
	return func(yield func([]event.Execution, error) bool) { yield(out, nil) }
}

func (e scopedEngine) Tasks(_ context.Context, q url.Values) iter.Seq2[[]event.Task, error] {
	*e.queries = append(*e.queries, "tasks "+e.project)
	var out []event.Task
	for _, t := range e.tasks {
		if t.WorkflowExecutionID == q.Get("workflow_execution_id") && t.ProjectID == e.project {
			out = append(out, t)
		}
	}
	return func(yield func([]event.Task, error) bool) { yield(out, nil) }
}

type scopes struct{ base scopedEngine }

func (s scopes) InProject(id string) Engine {
	e := s.base
	e.project = id
	return e
}

func TestFetchAcrossProjectsScopesTasks(t *testing.T) {
	root := "e1"
	var queries []string
	svc := scopedEngine{project: "svc", queries: &queries,
		execs: []event.Execution{{ID: "e1", ProjectID: "p1"}, {ID: "e2", ProjectID: "p1", RootExecutionID: &root}},
		tasks: []event.Task{{ID: "t1", WorkflowExecutionID: "e1", ProjectID: "p1"}, {ID: "t2", WorkflowExecutionID: "e2", ProjectID: "p1"}},
	}
	tests := []struct {
		name      string
		f         Fetcher
		wantTasks []string
		wantExecs int
	}{
		{"service token only sees its project", FetchFrom(svc), nil, 1},
		{"across projects", FetchAcrossProjects(svc, scopes{svc}), []string{"t1", "t2"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obs, err := tt.f.Fetch(context.Background(), "e1", true)
			if err != nil {
				t.Fatal(err)
			}
			var tasks []string
			execs := 0
			for _, o := range obs {
				if o.Task != nil {
					tasks = append(tasks, o.Task.ID)
				} else {
					execs++
				}
			}
			if !slices.Equal(tasks, tt.wantTasks) || execs != tt.wantExecs {
				t.Errorf("fetched tasks %v and %d executions, want %v and %d (queries %v)", tasks, execs, tt.wantTasks, tt.wantExecs, queries)
			}
		})
	}
}
