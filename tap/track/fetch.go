package track

import (
	"context"
	"iter"
	"net/url"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// Engine reads executions and tasks from Mistral; *mistral.Client
// implements it. Lists yield one page per request.
type Engine interface {
	Execution(ctx context.Context, id string) (event.Execution, error)
	Executions(ctx context.Context, q url.Values) iter.Seq2[[]event.Execution, error]
	Tasks(ctx context.Context, q url.Values) iter.Seq2[[]event.Task, error]
}

// maxFetchExecutions bounds a fetch of a root with many sub-executions.
const maxFetchExecutions = 50

// FetchFrom returns the Fetcher that reads from e: the execution and, with
// tasks, its tasks and, for a root execution, its first
// maxFetchExecutions sub-executions with theirs. Its observations are
// tap observations: they complete what the tap saw.
func FetchFrom(e Engine) Fetcher { return engineFetcher{e: e, now: time.Now} }

// Projects scopes requests to one Keystone project.
type Projects interface {
	// InProject returns the Engine acting within project id.
	InProject(id string) Engine
}

// FetchAcrossProjects is FetchFrom for an admin that sees every project
// (watch.all_projects with Keystone): sub-executions are listed with
// all_projects, and each execution's tasks with p's Engine for the
// execution's own project, because Mistral 15 lists the token's project's
// tasks only.
func FetchAcrossProjects(e Engine, p Projects) Fetcher {
	return engineFetcher{e: e, projects: p, now: time.Now}
}

type engineFetcher struct {
	e        Engine
	projects Projects // nil: every request through e
	now      func() time.Time
}

// tasksOf is the Engine that lists x's tasks.
func (f engineFetcher) tasksOf(x *event.Execution) Engine {
	if f.projects == nil || x.ProjectID == "" {
		return f.e
	}
	return f.projects.InProject(x.ProjectID)
}

func (f engineFetcher) Fetch(ctx context.Context, executionID string, tasks bool) ([]event.Observation, error) {
	requested := f.now()
	x, err := f.e.Execution(ctx, executionID)
	if err != nil {
		return nil, err
	}
	execs := []event.Execution{x}
	if tasks && x.RootExecutionID == nil {
		q := url.Values{"root_execution_id": {x.ID}}
		if f.projects != nil {
			// An admin's list without it holds its own project only.
			q.Set("all_projects", "true")
		}
		subs, err := all(f.e.Executions(ctx, q))
		if err != nil {
			return nil, err
		}
		execs = append(execs, subs[:min(len(subs), maxFetchExecutions)]...)
	}
	var obs []event.Observation
	for i := range execs {
		obs = append(obs, event.Observation{Source: event.SourceTap, Execution: &execs[i], RequestedAt: requested})
		if !tasks {
			continue
		}
		ts, err := all(f.tasksOf(&execs[i]).Tasks(ctx, url.Values{"workflow_execution_id": {execs[i].ID}}))
		if err != nil {
			return nil, err
		}
		for j := range ts {
			obs = append(obs, event.Observation{Source: event.SourceTap, Task: &ts[j], RequestedAt: requested})
		}
	}
	return obs, nil
}

// all collects every page of a list, stopping at the first error.
func all[T any](pages iter.Seq2[[]T, error]) ([]T, error) {
	var out []T
	for p, err := range pages {
		if err != nil {
			return nil, err
		}
		out = append(out, p...)
	}
	return out, nil
}
