package listeners

import (
	"encoding/json"
	"testing"

	"github.com/mistral-tap/mistral-tap/config/redact"
)

// FuzzCreate posts arbitrary bodies through the handler: it answers 201
// (one listener stored) or a fault body with 400/404 (nothing stored),
// never panics, and never shows a header value.
func FuzzCreate(f *testing.F) {
	for _, s := range []string{
		good,
		`{"task_execution_id":"t1","url":"http://h/","headers":{"X-K":"hidden-value"}}`,
		`{"workflow_name":"w[","url":"http://h/"}`,
		`{"execution_id":"e9","url":"http://h/"}`,
		`{`, `null`, `{"execution_id":"e1","url":"http://h/","expires_at":"2026-12-02T11:00:00Z"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		e := newEnv(t, 0)
		w := e.do("POST", "/v2/listeners", body, "X-Auth-Token", "tok-a")
		switch w.Code {
		case 201:
			if e.st.count() != 1 {
				t.Fatalf("201 with %d listeners stored", e.st.count())
			}
			var v view
			if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
				t.Fatal(err)
			}
			for k, val := range v.Headers {
				if val != redact.Marker {
					t.Fatalf("response shows header %s's value", k)
				}
			}
		case 400, 404:
			faultOf(t, w)
			if e.st.count() != 0 {
				t.Fatalf("%d with a listener stored", w.Code)
			}
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	})
}
