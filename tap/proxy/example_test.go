package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"

	"github.com/mistral-tap/mistral-tap/tap/event"
	"github.com/mistral-tap/mistral-tap/tap/proxy"
)

type printObserver struct{}

func (printObserver) Observe(o event.Observation) {
	fmt.Println("observed", o.Execution.ID, o.Execution.State)
}

func Example() {
	mistral := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"executions": [{"id": "e1", "state": "RUNNING", "workflow_name": "wf"}], "next": null}`)
	}))
	defer mistral.Close()

	up, _ := url.Parse(mistral.URL)
	p, err := proxy.New(proxy.Options{Upstream: up, Observer: printObserver{}})
	if err != nil {
		fmt.Println(err)
		return
	}
	// In the application: go proxy.Serve(ctx, cfg.Listen, p, log), then
	// p.Wait() once Serve has returned.
	front := httptest.NewServer(p)
	defer front.Close()

	resp, err := http.Get(front.URL + "/v2/executions")
	if err != nil {
		fmt.Println(err)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	p.Wait()
	fmt.Println(resp.StatusCode, p.Stats().Observations)
	// Output:
	// observed e1 RUNNING
	// 200 1
}
