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

type engineFetcher struct {
	e   Engine
	now func() time.Time
}

func (f engineFetcher) Fetch(ctx context.Context, executionID string, tasks bool) ([]event.Observation, error) {
	requested := f.now()
	x, err := f.e.Execution(ctx, executionID)
	if err != nil {
		return nil, err
	}
	execs := []event.Execution{x}
	if tasks && x.RootExecutionID == nil {
		subs, err := all(f.e.Executions(ctx, url.Values{"root_execution_id": {x.ID}}))
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
		ts, err := all(f.e.Tasks(ctx, url.Values{"workflow_execution_id": {execs[i].ID}}))
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
