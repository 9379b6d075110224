package mistral

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net/url"
	"strconv"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// Execution and task fields the lists ask for: everything Mistral's
// notifier payload has (so events are complete), nothing heavy (input,
// output, params, published).
const (
	ExecutionFields = "id,workflow_id,workflow_name,workflow_namespace,state,state_info,project_id,task_execution_id,root_execution_id,created_at,updated_at"
	TaskFields      = "id,name,workflow_execution_id,workflow_name,workflow_namespace,workflow_id,state,state_info,type,project_id,created_at,updated_at,started_at,finished_at,runtime_context"
)

// Workbook is the part of Mistral's workbook resource mistral-tap uses.
type Workbook struct {
	Name       string `json:"name"`
	Namespace  string `json:"namespace"`
	Definition string `json:"definition"`
}

// Executions lists GET /v2/executions?q page by page (see the package doc:
// fields, limit and marker are the Client's). Each iteration is one
// request: a page, or the error that ends the list.
func (c *Client) Executions(ctx context.Context, q url.Values) iter.Seq2[[]event.Execution, error] {
	return byMarker(c, ctx, "executions", ExecutionFields, q, func(x *event.Execution) (string, string) { return x.ID, x.State })
}

// Tasks lists GET /v2/tasks?q page by page, like Executions.
func (c *Client) Tasks(ctx context.Context, q url.Values) iter.Seq2[[]event.Task, error] {
	return byMarker(c, ctx, "tasks", TaskFields, q, func(x *event.Task) (string, string) { return x.ID, x.State })
}

// Execution reads GET /v2/executions/<id>, every field. An answer without
// an id or a state is an error: it cannot be tracked.
func (c *Client) Execution(ctx context.Context, id string) (event.Execution, error) {
	var x event.Execution
	if err := c.get(ctx, "/executions/"+url.PathEscape(id), url.Values{}, &x); err != nil {
		return event.Execution{}, err
	}
	if x.ID == "" || x.State == "" {
		return event.Execution{}, fmt.Errorf("mistral: execution %s: response lacks id or state", id)
	}
	return x, nil
}

// Workbooks lists GET /v2/workbooks?q page by page, following `next` (see
// the package doc). Each iteration is one request.
func (c *Client) Workbooks(ctx context.Context, q url.Values) iter.Seq2[[]Workbook, error] {
	return func(yield func([]Workbook, error) bool) {
		q := cloneValues(q)
		q.Set("limit", strconv.Itoa(c.pageSize))
		all := q.Get("all_projects")
		seen := map[string]bool{}
		for range maxPages {
			var p struct {
				Workbooks []Workbook `json:"workbooks"`
				Next      string     `json:"next"`
			}
			if err := c.get(ctx, "/workbooks", q, &p); err != nil {
				yield(nil, err)
				return
			}
			if !yield(p.Workbooks, nil) || p.Next == "" || len(p.Workbooks) == 0 {
				return
			}
			nu, err := url.Parse(p.Next)
			if err != nil {
				yield(nil, fmt.Errorf("mistral: bad next link in the workbooks list: %w", err))
				return
			}
			q = nu.Query()
			if m := q.Get("marker"); m == "" || seen[m] {
				return
			} else {
				seen[m] = true
			}
			if all != "" {
				q.Set("all_projects", all)
			}
		}
		yield(nil, fmt.Errorf("mistral: workbooks list did not end after %d pages", maxPages))
	}
}

// Workbook reads GET /v2/workbooks/<name>?namespace=<namespace>, for
// deployments whose lists leave out the definitions.
func (c *Client) Workbook(ctx context.Context, name, namespace string) (Workbook, error) {
	var wb Workbook
	err := c.get(ctx, "/workbooks/"+url.PathEscape(name), url.Values{"namespace": {namespace}}, &wb)
	return wb, err
}

// byMarker pages /v2/<res> by marker: the last row of a full page.
func byMarker[T any](c *Client, ctx context.Context, res, fields string, q url.Values, idState func(*T) (string, string)) iter.Seq2[[]T, error] {
	return func(yield func([]T, error) bool) {
		q := cloneValues(q)
		q.Set("fields", fields)
		q.Set("limit", strconv.Itoa(c.pageSize))
		q.Del("marker")
		for range maxPages {
			var env map[string]json.RawMessage
			if err := c.get(ctx, "/"+res, q, &env); err != nil {
				yield(nil, err)
				return
			}
			rows, n, last, err := decodePage(env[res], idState)
			if err != nil {
				yield(nil, fmt.Errorf("mistral: malformed %s list from the engine: %w", res, err))
				return
			}
			if !yield(rows, nil) || n < c.pageSize || last == "" {
				return
			}
			q.Set("marker", last)
		}
		yield(nil, fmt.Errorf("mistral: %s list did not end after %d pages", res, maxPages))
	}
}

// decodePage decodes one page. It returns the usable rows, the page's length
// and the marker for the next page: the last row as the engine sent it,
// taken before unusable rows are dropped.
func decodePage[T any](raw json.RawMessage, idState func(*T) (string, string)) ([]T, int, string, error) {
	if len(raw) == 0 {
		return nil, 0, "", nil
	}
	var page []T
	if err := json.Unmarshal(raw, &page); err != nil {
		return nil, 0, "", err
	}
	if len(page) == 0 {
		return nil, 0, "", nil
	}
	n := len(page)
	last, _ := idState(&page[n-1])
	return usable(page, idState), n, last, nil
}

// usable drops rows without an id or a state: they cannot be tracked, and
// one bad row must not spoil the rest of the page.
func usable[T any](in []T, idState func(*T) (string, string)) []T {
	out := in[:0]
	for i := range in {
		if id, st := idState(&in[i]); id != "" && st != "" {
			out = append(out, in[i])
		}
	}
	return out
}

func cloneValues(v url.Values) url.Values {
	c := make(url.Values, len(v))
	for k, vs := range v {
		c[k] = append([]string(nil), vs...)
	}
	return c
}

// All collects every page of a list, stopping at the first error.
func All[T any](pages iter.Seq2[[]T, error]) ([]T, error) {
	var out []T
	for p, err := range pages {
		if err != nil {
			return nil, err
		}
		out = append(out, p...)
	}
	return out, nil
}
