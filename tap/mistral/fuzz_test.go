package mistral

import (
	"encoding/json"
	"testing"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// FuzzDecodePage: any page body decodes or fails with an error, never a
// panic; the rows kept all have an id and a state, and there are never more
// of them than the page's length.
func FuzzDecodePage(f *testing.F) {
	for _, s := range []string{
		`[{"id": "a", "state": "RUNNING"}, {"id": "b"}, {"id": "c", "state": ""}]`,
		`[]`, `null`, `[{"id": 5}]`, `{"id": "a"}`, `[{"id": "a", "state": "SUCCESS", "updated_at": null}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		rows, n, last, err := decodePage(json.RawMessage(raw), func(x *event.Execution) (string, string) { return x.ID, x.State })
		if err != nil {
			return
		}
		if len(rows) > n || (n == 0 && last != "") {
			t.Fatalf("%d rows of a page of %d, marker %q", len(rows), n, last)
		}
		for _, r := range rows {
			if r.ID == "" || r.State == "" {
				t.Fatalf("unusable row kept: %+v", r)
			}
		}
	})
}
