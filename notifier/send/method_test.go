package send

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/sign"
)

// TestMethods: GET, HEAD and DELETE carry no body and no Content-Type
// (the facts are in a templated URL), and their signature covers the empty
// body; other methods send the body.
func TestMethods(t *testing.T) {
	type seen struct {
		method, query, ct string
		body              []byte
		h                 http.Header
	}
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.URL.RawQuery, r.Header.Get("Content-Type"), b, r.Header.Clone()}
	}))
	defer srv.Close()
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	for _, tt := range []struct {
		method   string
		wantBody bool
	}{{"GET", false}, {"HEAD", false}, {"DELETE", false}, {"PUT", true}, {"PATCH", true}, {"POST", true}} {
		t.Run(tt.method, func(t *testing.T) {
			r := baseRequest(srv.URL + "/log?execution_id=e1&event=WORKFLOW_FAILED")
			r.Method, r.Secrets = tt.method, []string{"whsec_c2VjcmV0"}
			res := newClient(t, loopback, clock.Now).Send(context.Background(), r)
			if res.Outcome != Delivered {
				t.Fatal(res.Err)
			}
			s := <-got
			if s.method != tt.method || s.query != "execution_id=e1&event=WORKFLOW_FAILED" {
				t.Errorf("got %s ?%s", s.method, s.query)
			}
			if hasBody := len(s.body) > 0 || s.ct != ""; hasBody != tt.wantBody {
				t.Errorf("body %q, Content-Type %q; want body: %t", s.body, s.ct, tt.wantBody)
			}
			body := s.body
			if !tt.wantBody {
				body = nil
			}
			h := s.h
			if err := sign.Verify(r.Secrets, h.Get("webhook-id"), h.Get("webhook-timestamp"), body, h.Get("webhook-signature"), time.Hour, clock.Now()); err != nil {
				t.Errorf("signature does not verify over the sent body: %v", err)
			}
		})
	}
}
