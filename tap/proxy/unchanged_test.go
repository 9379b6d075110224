package proxy

import "testing"

func TestLastBodiesSkipsOnlyRepeats(t *testing.T) {
	var l lastBodies
	steps := []struct {
		key, body string
		want      bool
	}{
		{"GET /v2/executions", `{"executions": [1]}`, false},
		{"GET /v2/executions", `{"executions": [1]}`, true},
		{"GET /v2/executions?limit=1", `{"executions": [1]}`, false},
		{"GET /v2/executions", `{"executions": [2]}`, false},
		{"GET /v2/executions", `{"executions": [1]}`, false},
		{"GET /v2/executions", `{"executions": [1]}`, true},
	}
	for i, s := range steps {
		if got := l.unchanged(s.key, []byte(s.body)); got != s.want {
			t.Errorf("step %d (%s %s): unchanged = %v, want %v", i, s.key, s.body, got, s.want)
		}
	}
}
