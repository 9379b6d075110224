package track

import (
	"context"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
	"github.com/mistral-tap/mistral-tap/tap/mistral"
	"github.com/mistral-tap/mistral-tap/testenv/fakemistral"
)

// TestFetchCompletesAnExecution: the engine's Fetcher returns the execution, its
// sub-executions and every task of both, as the tracker needs to order a
// tapped completion causally.
func TestFetchCompletesAnExecution(t *testing.T) {
	eng := fakemistral.New(fakemistral.Options{})
	defer eng.Close()
	srv := httptest.NewServer(eng)
	defer srv.Close()
	if err := eng.DefineWorkflow(`version: '2.0'
parent:
  tasks:
    a:
      action: std.noop
      on-success: [call]
    call:
      workflow: child
child:
  tasks:
    x:
      action: std.noop
`, ""); err != nil {
		t.Fatal(err)
	}
	id, err := eng.Start("parent", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := eng.WaitDone(ctx, id); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(srv.URL)
	c, err := mistral.New(mistral.Options{BaseURL: u})
	if err != nil {
		t.Fatal(err)
	}
	w := FetchFrom(c)

	obs, err := w.Fetch(ctx, id, true)
	if err != nil {
		t.Fatal(err)
	}
	var execs, tasks int
	for _, o := range obs {
		if o.Source != event.SourceTap {
			t.Errorf("source %s", o.Source)
		}
		if o.Execution != nil {
			execs++
		} else {
			tasks++
		}
	}
	if execs != 2 || tasks != 3 {
		t.Errorf("fetched %d executions and %d tasks, want 2 and 3", execs, tasks)
	}

	obs, err = w.Fetch(ctx, id, false)
	if err != nil || len(obs) != 1 || obs[0].Execution == nil || obs[0].Execution.State != "SUCCESS" {
		t.Errorf("Fetch without tasks: %v %v", obs, err)
	}
	if _, err := w.Fetch(ctx, "nope", false); err == nil {
		t.Error("Fetch of a missing execution succeeded")
	}
}
