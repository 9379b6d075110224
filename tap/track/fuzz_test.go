package track

import "testing"

// FuzzPoliciesOf: runtime_context comes from the engine as a JSON-encoded
// string; whatever it holds, reading it must not panic and must not yield a
// negative retry count.
func FuzzPoliciesOf(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"retry_task_policy": {"retry_no": 2}}`, `{"wait_before_policy": {"skip": true}}`,
		`{"triggered_by": [{"task_id": "a"}, {"task_id": "b"}]}`, `{"retry_task_policy": {"retry_no": -5}}`,
		`{"retry_task_policy": "x", "wait_after_policy": 1}`, `not json`, ``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rc string) {
		p := policiesOf(&rc)
		if p.retry < 0 {
			t.Fatalf("negative retry count %d from %q", p.retry, rc)
		}
	})
}
