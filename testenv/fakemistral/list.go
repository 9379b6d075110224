package fakemistral

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// listConf describes one list endpoint (rest_utils.get_all's inputs).
type listConf struct {
	key      string   // JSON key and path segment: "executions"
	notFound string   // model name in 404 messages for a bad marker
	filters  []string // filterable fields, in the controller's argument order
	extras   []string // other accepted arguments (include_output, ...)
	enums    map[string][]string
	hidden   []string // fields left out of items unless asked for
}

var (
	execStates = []string{"IDLE", "RUNNING", "SUCCESS", "ERROR", "PAUSED", "CANCELLED"}
	taskStates = []string{"IDLE", "RUNNING", "SUCCESS", "ERROR", "DELAYED"}

	execList = listConf{
		key: "executions", notFound: "WorkflowExecution",
		filters: []string{"workflow_name", "workflow_id", "description", "tags", "params", "task_execution_id",
			"root_execution_id", "state", "state_info", "input", "output", "created_at", "updated_at", "project_id"},
		extras: []string{"include_output", "all_projects", "nulls"},
		enums:  map[string][]string{"state": execStates},
		hidden: []string{"output", "published_global"},
	}
	taskList = listConf{
		key: "tasks", notFound: "TaskExecution",
		filters: []string{"name", "workflow_name", "workflow_id", "workflow_execution_id", "tags", "state",
			"state_info", "result", "published", "processed", "created_at", "updated_at", "reset", "env"},
		enums:  map[string][]string{"state": taskStates},
		hidden: []string{"result", "published_global"},
	}
	actionList = listConf{
		key: "action_executions", notFound: "ActionExecution",
		filters: []string{"name", "workflow_name", "task_name", "task_execution_id", "state", "state_info",
			"accepted", "input", "output", "created_at", "updated_at", "description", "tags", "params"},
		extras: []string{"include_output"},
		enums:  map[string][]string{"state": execStates},
		hidden: []string{"output"},
	}
	workflowList = listConf{
		key: "workflows", notFound: "WorkflowDefinition",
		filters: []string{"name", "input", "definition", "tags", "scope", "project_id", "created_at", "updated_at", "namespace"},
		extras:  []string{"all_projects"},
	}
	workbookList = listConf{
		key: "workbooks", notFound: "Workbook",
		filters: []string{"name", "definition", "tags", "scope", "created_at", "updated_at", "namespace"},
		extras:  []string{"all_projects"},
	}
)

type filter struct {
	field, op, raw string
	values         []string
}

var filterOps = []string{"eq", "neq", "gt", "gte", "lt", "lte", "has", "in", "nin"}

func parseFilter(field, raw string) filter {
	f := filter{field: field, op: "eq", raw: raw}
	v := raw
	if op, rest, ok := strings.Cut(raw, ":"); ok {
		for _, known := range filterOps {
			if op == known {
				f.op, v = op, rest
			}
		}
	}
	if f.op == "in" || f.op == "nin" {
		f.values = strings.Split(v, ",")
	} else {
		f.values = []string{v}
	}
	if field == "created_at" || field == "updated_at" {
		for i, x := range f.values {
			f.values[i] = normTime(x)
		}
	}
	return f
}

// normTime accepts "YYYY-MM-DD HH:MM:SS[.ffffff]" and the ISO "T" form and
// compares as PostgreSQL would (whole seconds are what Mistral stores).
func normTime(s string) string {
	s = strings.TrimSpace(strings.Replace(s, "T", " ", 1))
	for _, layout := range []string{"2006-01-02 15:04:05.999999", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, strings.TrimSuffix(s, "Z")); err == nil {
			if t.Nanosecond() != 0 {
				// A fractional bound: compare on the string with the fraction,
				// which orders correctly against whole-second stamps.
				return t.Format("2006-01-02 15:04:05.000000")
			}
			return t.Format(timeFmt)
		}
	}
	return s
}

func valueString(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", false
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case []string:
		return strings.Join(x, ","), true
	}
	return fmt.Sprint(v), true
}

func (f filter) match(o obj) bool {
	raw, _ := o.get(f.field)
	s, ok := valueString(raw)
	if !ok {
		// SQL NULL matches only neq / nin (IS NULL semantics aside).
		return (f.op == "eq" && f.values[0] == "null") || f.op == "neq" || f.op == "nin"
	}
	v := f.values[0]
	switch f.op {
	case "eq":
		return s == v
	case "neq":
		return s != v
	case "gt":
		return s > v
	case "gte":
		return s >= v
	case "lt":
		return s < v
	case "lte":
		return s <= v
	case "has":
		return strings.Contains(s, v)
	case "in", "nin":
		found := false
		for _, x := range f.values {
			if s == x {
				found = true
			}
		}
		return found == (f.op == "in")
	}
	return false
}

// serveList implements Mistral's list contract: filters, sort_keys /
// sort_dirs (with id as the tie-breaker), marker/limit paging, fields, and
// the `next` link. items are complete objects (every field).
func (e *Engine) serveList(w http.ResponseWriter, r *http.Request, c listConf, items []obj, fixed map[string]string) {
	q := r.URL.Query()
	allowed := map[string]bool{"marker": true, "limit": true, "sort_keys": true, "sort_dirs": true, "fields": true}
	for _, f := range c.filters {
		allowed[f] = true
	}
	for _, x := range c.extras {
		allowed[x] = true
	}
	for k := range q {
		if !allowed[k] {
			writeErr(w, 400, fmt.Sprintf("Unknown argument: %q", k))
			return
		}
	}
	items = e.visible(items)
	var all []string
	if len(items) > 0 {
		all = items[0].keys()
	} else {
		all = e.fieldsOf(c)
	}
	isField := map[string]bool{}
	for _, f := range all {
		isField[f] = true
	}

	limit := 0
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			writeErr(w, 400, fmt.Sprintf("Invalid input for field/attribute limit. Value: '%s'. unable to convert to int", s))
			return
		}
		if n <= 0 {
			writeErr(w, 400, "Limit must be positive.")
			return
		}
		limit = n
	}
	sortKeys := splitList(q.Get("sort_keys"))
	if len(sortKeys) == 0 {
		sortKeys = []string{"created_at"}
	}
	sortDirs := splitList(q.Get("sort_dirs"))
	if len(sortDirs) == 0 {
		sortDirs = []string{"asc"}
	}
	if len(sortKeys) < len(sortDirs) {
		writeErr(w, 400, "Length of sort_keys must be equal or greater than sort_dirs.")
		return
	}
	for len(sortDirs) < len(sortKeys) {
		sortDirs = append(sortDirs, "asc")
	}
	for _, d := range sortDirs {
		if d != "asc" && d != "desc" {
			writeErr(w, 400, "Unknown sort direction, must be 'desc' or 'asc'.")
			return
		}
	}
	for _, k := range sortKeys {
		if !isField[k] {
			writeErr(w, 400, fmt.Sprintf("Invalid sort key: %s", k))
			return
		}
	}
	if !contains(sortKeys, "id") {
		sortKeys = append(sortKeys, "id")
		sortDirs = append(sortDirs, "asc")
	}
	fields := splitList(q.Get("fields"))
	if len(fields) > 0 {
		var bad []string
		for _, f := range fields {
			if !isField[f] {
				bad = append(bad, f)
			}
		}
		if len(bad) > 0 {
			writeErr(w, 400, fmt.Sprintf("Some fields do not exist  [%s], please choose from [%s]", strings.Join(bad, ", "), strings.Join(all, ", ")))
			return
		}
		if !contains(fields, "id") {
			fields = append([]string{"id"}, fields...)
		}
	}

	var filters []filter
	var linkArgs []string
	for _, f := range c.filters {
		raw, ok := q[f]
		if !ok {
			// A filter implied by the path (/executions/{id}/tasks) is a
			// filter like any other, also in the next link.
			if v, ok := fixed[f]; ok {
				filters = append(filters, parseFilter(f, v))
				linkArgs = append(linkArgs, f+"="+v)
			}
			continue
		}
		if allowedVals, ok := c.enums[f]; ok && !contains(allowedVals, raw[0]) {
			writeErr(w, 400, fmt.Sprintf("Invalid input for field/attribute %s. Value: '%s'. Value should be one of: %s", f, raw[0], strings.Join(allowedVals, ", ")))
			return
		}
		filters = append(filters, parseFilter(f, raw[0]))
		linkArgs = append(linkArgs, f+"="+raw[0])
	}

	less := func(a, b obj) int {
		for i, k := range sortKeys {
			av, _ := a.get(k)
			bv, _ := b.get(k)
			as, aok := valueString(av)
			bs, bok := valueString(bv)
			cmp := strings.Compare(as, bs)
			if aok != bok {
				// PostgreSQL orders NULL after every value (NULLS LAST for
				// asc, FIRST for desc).
				cmp = 1
				if aok {
					cmp = -1
				}
			}
			if cmp != 0 {
				if sortDirs[i] == "desc" {
					return -cmp
				}
				return cmp
			}
		}
		return 0
	}
	var marker obj
	if m := q.Get("marker"); m != "" {
		for _, it := range items {
			if id, _ := it.get("id"); id == m {
				marker = it
			}
		}
		if marker == nil {
			writeErr(w, 404, fmt.Sprintf("%s not found [id=%s]", c.notFound, m))
			return
		}
	}
	var page []obj
	for _, it := range items {
		ok := true
		for _, f := range filters {
			if !f.match(it) {
				ok = false
				break
			}
		}
		if ok && (marker == nil || less(it, marker) > 0) {
			page = append(page, it)
		}
	}
	sort.SliceStable(page, func(i, j int) bool { return less(page[i], page[j]) < 0 })
	if limit > 0 && len(page) > limit {
		page = page[:limit]
	}
	includeOutput := q.Get("include_output") == "true" || q.Get("include_output") == "True"
	out := make([]obj, len(page))
	for i, it := range page {
		switch {
		case len(fields) > 0:
			it = it.pick(fields)
		default:
			for _, h := range c.hidden {
				if h == "output" && includeOutput {
					continue
				}
				it = it.without(h)
			}
		}
		out[i] = it
	}
	body := obj{{c.key, out}}
	if limit > 0 && len(page) == limit {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		args := "sort_keys=" + strings.Join(sortKeys, ",") + "&sort_dirs=" + strings.Join(sortDirs, ",") + "&"
		for _, a := range linkArgs {
			args += a + "&"
		}
		last, _ := page[len(page)-1].get("id")
		link := fmt.Sprintf("%s://%s/v2/%s?%slimit=%d&marker=%v", scheme, r.Host, c.key, args, limit, last)
		if len(fields) > 0 {
			link += "&fields=" + strings.Join(fields, ",")
		}
		body = append(body, kv{"next", link})
	}
	writeJSON(w, 200, body)
}

// fieldsOf lists a resource's fields when there is no item to look at.
func (e *Engine) fieldsOf(c listConf) []string {
	dummyEx := &execution{Params: map[string]any{}, Input: map[string]any{}}
	dummyTask := &task{ex: dummyEx, State: "SUCCESS"}
	switch c.key {
	case "executions":
		return e.execObj(dummyEx).keys()
	case "tasks":
		return e.taskObj(dummyTask).keys()
	case "action_executions":
		return e.actionObj(&actionExec{task: dummyTask}).keys()
	case "workflows":
		return e.workflowObj(&workflowDef{Spec: &wfSpec{}}, false).keys()
	case "workbooks":
		return e.workbookObj(&workbookDef{}).keys()
	}
	return nil
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// visible keeps the list items the current request may see (see sees).
func (e *Engine) visible(items []obj) []obj {
	if e.viewer == nil {
		return items
	}
	out := items[:0:0]
	for _, it := range items {
		p, _ := it.get("project_id")
		if p == projectID {
			p = ""
		}
		if s, _ := p.(string); e.sees(s, false) {
			out = append(out, it)
		}
	}
	return out
}
