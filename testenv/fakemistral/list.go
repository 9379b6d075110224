package fakemistral

import (
	"fmt"
	"net/http"
	"net/url"
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
	if bad := checkArgNames(q, c); bad != nil {
		writeErr(w, bad.status, bad.msg)
		return
	}
	items = e.visible(items)
	lq, bad := parseListQuery(q, c, e.listFields(c, items), fixed)
	if bad != nil {
		writeErr(w, bad.status, bad.msg)
		return
	}
	marker, bad := findMarker(items, q.Get("marker"), c.notFound)
	if bad != nil {
		writeErr(w, bad.status, bad.msg)
		return
	}
	page := lq.selectPage(items, marker)
	body := obj{{c.key, lq.shape(page, c)}}
	if lq.limit > 0 && len(page) == lq.limit {
		// A full page may have a successor; Mistral does not look.
		body = append(body, kv{"next", lq.nextLink(r, c.key, page[len(page)-1])})
	}
	writeJSON(w, 200, body)
}

// reject is a list request refused: the status and Mistral's message.
type reject struct {
	status int
	msg    string
}

// listQuery is a list request's arguments once checked.
type listQuery struct {
	limit              int // 0: no limit
	sortKeys, sortDirs []string
	fields             []string // nil: every field but the hidden ones
	filters            []filter
	linkArgs           []string // the filters as the next link repeats them
	includeOutput      bool
}

// checkArgNames refuses an argument the endpoint does not declare (WSME's
// "Unknown argument" in Mistral), before any value is looked at.
func checkArgNames(q url.Values, c listConf) *reject {
	allowed := map[string]bool{"marker": true, "limit": true, "sort_keys": true, "sort_dirs": true, "fields": true}
	for _, f := range c.filters {
		allowed[f] = true
	}
	for _, x := range c.extras {
		allowed[x] = true
	}
	for k := range q {
		if !allowed[k] {
			return &reject{400, fmt.Sprintf("Unknown argument: %q", k)}
		}
	}
	return nil
}

// listFields is the resource's field names in render order, taken from an
// item when there is one so they match what is served.
func (e *Engine) listFields(c listConf, items []obj) []string {
	if len(items) > 0 {
		return items[0].keys()
	}
	return e.fieldsOf(c)
}

// parseListQuery checks limit, sorting, fields and filter values, always
// in that order, so a request with several problems gets the same one.
func parseListQuery(q url.Values, c listConf, all []string, fixed map[string]string) (listQuery, *reject) {
	isField := map[string]bool{}
	for _, f := range all {
		isField[f] = true
	}
	var lq listQuery
	var bad *reject
	if lq.limit, bad = parseLimit(q.Get("limit")); bad != nil {
		return lq, bad
	}
	if lq.sortKeys, lq.sortDirs, bad = parseSort(q.Get("sort_keys"), q.Get("sort_dirs"), isField); bad != nil {
		return lq, bad
	}
	if lq.fields, bad = parseFields(q.Get("fields"), all, isField); bad != nil {
		return lq, bad
	}
	if lq.filters, lq.linkArgs, bad = parseFilters(q, c, fixed); bad != nil {
		return lq, bad
	}
	lq.includeOutput = q.Get("include_output") == "true" || q.Get("include_output") == "True"
	return lq, nil
}

// parseLimit reads limit; 0 means none was given.
func parseLimit(s string) (int, *reject) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, &reject{400, fmt.Sprintf("Invalid input for field/attribute limit. Value: '%s'. unable to convert to int", s)}
	}
	if n <= 0 {
		return 0, &reject{400, "Limit must be positive."}
	}
	return n, nil
}

// parseSort reads sort_keys and sort_dirs (default created_at asc), pads
// the directions with asc and appends id as the tie-breaker, which makes
// the order total so marker paging neither skips nor repeats items.
func parseSort(keysArg, dirsArg string, isField map[string]bool) (keys, dirs []string, bad *reject) {
	keys = splitList(keysArg)
	if len(keys) == 0 {
		keys = []string{"created_at"}
	}
	dirs = splitList(dirsArg)
	if len(dirs) == 0 {
		dirs = []string{"asc"}
	}
	if len(keys) < len(dirs) {
		return nil, nil, &reject{400, "Length of sort_keys must be equal or greater than sort_dirs."}
	}
	for len(dirs) < len(keys) {
		dirs = append(dirs, "asc")
	}
	for _, d := range dirs {
		if d != "asc" && d != "desc" {
			return nil, nil, &reject{400, "Unknown sort direction, must be 'desc' or 'asc'."}
		}
	}
	for _, k := range keys {
		if !isField[k] {
			return nil, nil, &reject{400, fmt.Sprintf("Invalid sort key: %s", k)}
		}
	}
	if !contains(keys, "id") {
		keys = append(keys, "id")
		dirs = append(dirs, "asc")
	}
	return keys, dirs, nil
}

// parseFields reads fields, naming every unknown one at once as Mistral
// does; id always comes back, first, since clients page by it.
func parseFields(s string, all []string, isField map[string]bool) ([]string, *reject) {
	fields := splitList(s)
	if len(fields) == 0 {
		return fields, nil
	}
	var bad []string
	for _, f := range fields {
		if !isField[f] {
			bad = append(bad, f)
		}
	}
	if len(bad) > 0 {
		return nil, &reject{400, fmt.Sprintf("Some fields do not exist  [%s], please choose from [%s]", strings.Join(bad, ", "), strings.Join(all, ", "))}
	}
	if !contains(fields, "id") {
		fields = append([]string{"id"}, fields...)
	}
	return fields, nil
}

// parseFilters reads the filters in the controller's argument order (the
// order the next link repeats them in), checking enum values.
func parseFilters(q url.Values, c listConf, fixed map[string]string) (filters []filter, linkArgs []string, bad *reject) {
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
			return nil, nil, &reject{400, fmt.Sprintf("Invalid input for field/attribute %s. Value: '%s'. Value should be one of: %s", f, raw[0], strings.Join(allowedVals, ", "))}
		}
		filters = append(filters, parseFilter(f, raw[0]))
		linkArgs = append(linkArgs, f+"="+raw[0])
	}
	return filters, linkArgs, nil
}

// findMarker finds the item a page starts after; an unknown marker is a
// 404 naming the model, as in Mistral.
func findMarker(items []obj, m, notFound string) (obj, *reject) {
	if m == "" {
		return nil, nil
	}
	var marker obj
	for _, it := range items {
		if id, _ := it.get("id"); id == m {
			marker = it
		}
	}
	if marker == nil {
		return nil, &reject{404, fmt.Sprintf("%s not found [id=%s]", notFound, m)}
	}
	return marker, nil
}

// compare orders two items by the sort keys and directions.
func (lq listQuery) compare(a, b obj) int {
	for i, k := range lq.sortKeys {
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
			if lq.sortDirs[i] == "desc" {
				return -cmp
			}
			return cmp
		}
	}
	return 0
}

// selectPage keeps the items that pass every filter and sort after the
// marker, sorted, at most limit of them.
func (lq listQuery) selectPage(items []obj, marker obj) []obj {
	var page []obj
	for _, it := range items {
		ok := true
		for _, f := range lq.filters {
			if !f.match(it) {
				ok = false
				break
			}
		}
		if ok && (marker == nil || lq.compare(it, marker) > 0) {
			page = append(page, it)
		}
	}
	sort.SliceStable(page, func(i, j int) bool { return lq.compare(page[i], page[j]) < 0 })
	if lq.limit > 0 && len(page) > lq.limit {
		page = page[:lq.limit]
	}
	return page
}

// shape cuts the page's items to the asked fields, or else drops the
// fields Mistral leaves out of lists (output unless include_output).
func (lq listQuery) shape(page []obj, c listConf) []obj {
	out := make([]obj, len(page))
	for i, it := range page {
		switch {
		case len(lq.fields) > 0:
			it = it.pick(lq.fields)
		default:
			for _, h := range c.hidden {
				if h == "output" && lq.includeOutput {
					continue
				}
				it = it.without(h)
			}
		}
		out[i] = it
	}
	return out
}

// nextLink builds the next page's URL exactly as Mistral does: from the
// request's Host, not URL-encoded, every sort key and filter repeated.
func (lq listQuery) nextLink(r *http.Request, key string, last obj) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	args := "sort_keys=" + strings.Join(lq.sortKeys, ",") + "&sort_dirs=" + strings.Join(lq.sortDirs, ",") + "&"
	for _, a := range lq.linkArgs {
		args += a + "&"
	}
	lastID, _ := last.get("id")
	link := fmt.Sprintf("%s://%s/v2/%s?%slimit=%d&marker=%v", scheme, r.Host, key, args, lq.limit, lastID)
	if len(lq.fields) > 0 {
		link += "&fields=" + strings.Join(lq.fields, ",")
	}
	return link
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
