package app

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mistral-tap/mistral-tap/notifier/send"
)

// TestWithListeners: which requests the listeners API gets and which go
// to the proxy (and its dot-segment guard).
func TestWithListeners(t *testing.T) {
	tests := []struct {
		prefix, target string
		wantAPI        bool
	}{
		{"", "/v2/listeners", true},
		{"", "/v2/listeners/", true},
		{"", "/v2/listeners/0b5c7d1e", true},
		{"", "/v2/listeners?limit=2&marker=x", true},
		{"", "/v2/listenersX", false},
		{"", "/v2/executions", false},
		{"", "/v2/listeners/../executions", false},
		{"", "/v2/listeners/./x", false},
		{"", "/v2/listeners//x", false},
		{"", "/v2/listeners/%2e%2e/executions", false},
		{"", "/v2/listeners/a%2Fb", false},
		{"", "/x/v2/listeners", false},
		{"", "http://other.example/v2/listeners", false},
		{"/workflow", "/workflow/v2/listeners/id", true},
		{"/workflow/", "/workflow/v2/listeners", true},
		{"/workflow", "/v2/listeners", false},
	}
	for _, tc := range tests {
		var api, proxy bool
		h := withListeners(tc.prefix,
			http.HandlerFunc(func(http.ResponseWriter, *http.Request) { api = true }),
			http.HandlerFunc(func(http.ResponseWriter, *http.Request) { proxy = true }))
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", tc.target, nil))
		if api != tc.wantAPI || proxy == tc.wantAPI {
			t.Errorf("prefix %q, %s: api %v proxy %v, want api %v", tc.prefix, tc.target, api, proxy, tc.wantAPI)
		}
	}
}

type namedSender string

func (s namedSender) Send(context.Context, send.Request) send.Result {
	return send.Result{Err: &senderMark{string(s)}}
}

type senderMark struct{ name string }

func (m *senderMark) Error() string { return m.name }

// TestListenerSender: listener routes use the listeners' client (their own
// SSRF allow list), file callbacks the others.
func TestListenerSender(t *testing.T) {
	s := listenerSender{listeners: namedSender("listeners"), all: namedSender("all")}
	for name, want := range map[string]string{"listener:0b5c": "listeners", "ops": "all", "listeners-x": "all"} {
		if got := s.Send(context.Background(), send.Request{Callback: name}).Err.Error(); got != want {
			t.Errorf("%s went to %s, want %s", name, got, want)
		}
	}
}
