package amqp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/notifier/payload"
	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/notifier/store"
)

// TestURLTemplateThroughOutbox runs this package's outbox harness over the
// HTTP transport: a GET to a templated URL carries the event in its query
// and no body, and an event the template cannot render for becomes a dead
// letter that says why, without holding up the others.
func TestURLTemplateThroughOutbox(t *testing.T) {
	type hit struct {
		method, query string
		body          int64
	}
	hits := make(chan hit, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits <- hit{r.Method, r.URL.RawQuery, r.ContentLength}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	c, err := send.New(send.Options{AllowNetworks: []string{"127.0.0.0/8"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cb := config.Callback{Name: "log", Events: []string{"*"}, Method: "GET", Ordering: "none", Concurrency: 2, Timeout: 5 * time.Second,
		URL:   "http://" + host + "/log?execution_id={{ .Event.RootExecutionID }}&task={{ .Event.Task.Name }}&event={{ .Event.Type }}",
		Retry: config.RetryPolicy{InitialInterval: 10 * time.Millisecond, MaxInterval: 10 * time.Millisecond, Multiplier: 1, MaxAge: time.Hour}}
	f, err := payload.New(payload.Spec{Method: cb.Method, URL: cb.URL})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.TempDir(), store.Options{Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d, err := notifier.New(notifier.Options{Store: st, Sender: notifier.Transports{config.TypeHTTP: c}, Routing: &notifier.Routing{
		Matcher: matchAll{cb.Name}, Delivery: config.Default().Delivery,
		Routes: map[string]notifier.Route{cb.Name: {Callback: cb, Format: f}}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// The template reaches into .Event.Task: fine for task events, a
	// render error for execution events (validate accepts it: a callback
	// may be for one kind only).
	evs := events("u", 1, 1)
	exec := payload.Samples()[0]
	evs = append(evs, *exec)
	if err := d.Accept(ctx, evs, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case h := <-hits:
		if h.method != "GET" || h.body > 0 || h.query != "execution_id=u-root-0&task=t&event=TASK_SUCCEEDED" {
			t.Errorf("hit %+v", h)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no request")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows, err := st.List(ctx, store.Filter{State: store.Dead, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 1 {
			want := "payload: url: template failed for event " + exec.ID
			if rows[0].Attempts != 1 || !strings.Contains(rows[0].LastError, want) {
				t.Errorf("dead letter after %d attempts: %q; want %q", rows[0].Attempts, rows[0].LastError, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the unrenderable event is not a dead letter")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
