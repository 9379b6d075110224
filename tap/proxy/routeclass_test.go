package proxy

import "testing"

func TestRouteClass(t *testing.T) {
	tests := []struct {
		prefix, method, path, want string
	}{
		{"", "GET", "/", "root"},
		{"", "GET", "/v2", "root"},
		{"", "GET", "/v2/", "root"},
		{"", "GET", "/v2/executions", "executions"},
		{"", "POST", "/v2/executions/", "executions"},
		{"", "GET", "/v2/executions/0b5c", "execution"},
		{"", "GET", "/v2/executions/0b5c/tasks", "execution"},
		{"", "GET", "/v2/tasks", "tasks"},
		{"", "PUT", "/v2/tasks/abc", "task"},
		{"", "GET", "/v2/action_executions/x", "action_execution"},
		{"", "POST", "/v2/workbooks", "workbooks"},
		{"", "GET", "/v2/workflows/wf1", "workflows"},
		{"", "GET", "/v2/cron_triggers", "cron_triggers"},
		{"", "GET", "/v2/unknown_thing/1", "other"},
		{"", "GET", "/v3/executions", "other"},
		{"", "GET", "/favicon.ico", "other"},
		{"/workflow", "GET", "/workflow/v2/executions", "executions"},
		{"workflow/", "GET", "/workflow/v2/tasks/1", "task"},
		{"/workflow", "GET", "/workflowx/v2/tasks", "other"},
		{"/workflow", "GET", "/v2/tasks", "other"},
		{"/workflow", "GET", "/workflow", "root"},
	}
	for _, tt := range tests {
		if got := RouteClass(tt.prefix, tt.method, tt.path); got != tt.want {
			t.Errorf("RouteClass(%q, %q, %q) = %q, want %q", tt.prefix, tt.method, tt.path, got, tt.want)
		}
	}
}
