package proxy

import "strings"

// RouteClass names the kind of API resource a client request addresses, for
// metrics labels: "executions" (the collection), "execution" (one execution
// and anything below it), "tasks", "task", "action_executions",
// "action_execution", "workbooks", "workflows", "actions", "cron_triggers",
// "event_triggers", "environments", "services", "members", "root" (/ and
// /v2, version discovery) and "other". The set is closed, so it is safe as a
// label: ids never appear. prefix is Proxy.path_prefix as configured (any
// form New accepts); paths outside it are "other".
func RouteClass(prefix, method, path string) string {
	_ = method // the class is the resource; the method is its own label
	if p := normalizePrefix(prefix); p != "" {
		rest, ok := strings.CutPrefix(path, p)
		if !ok || (rest != "" && rest[0] != '/') {
			return "other"
		}
		path = rest
	}
	path = strings.Trim(path, "/")
	if path == "" || path == "v2" {
		return "root"
	}
	rest, ok := strings.CutPrefix(path, "v2/")
	if !ok {
		return "other"
	}
	// Only the first segment and whether more follow matter; Cut does not
	// allocate (this runs for every proxied request).
	first, _, below := strings.Cut(rest, "/")
	one, many := "", ""
	switch first {
	case "executions":
		one, many = "execution", "executions"
	case "tasks":
		one, many = "task", "tasks"
	case "action_executions":
		one, many = "action_execution", "action_executions"
	case "workbooks", "workflows", "actions", "cron_triggers", "event_triggers",
		"environments", "services", "members", "code_sources", "dynamic_actions":
		return first
	default:
		return "other"
	}
	if !below {
		return many
	}
	return one
}
