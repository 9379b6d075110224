package payload

import (
	"strings"
	"testing"
)

func TestURLTemplate(t *testing.T) {
	ev := Samples()[0]
	name := "a b/c?d=e&f#g"
	ev.Execution.WorkflowName = name
	for _, tt := range []struct {
		name, tmpl, want string
	}{
		{"blueprint", `http://host:9000/log?execution_id={{ .Payload.id }}&event={{ .Event.Type }}`,
			"http://host:9000/log?execution_id=a7d4b3c2-0000-4000-8000-000000000001&event=WORKFLOW_FAILED"},
		{"query escaped", `http://h/log?wf={{ .Event.WorkflowName }}&x=1`,
			"http://h/log?wf=a+b%2Fc%3Fd%3De%26f%23g&x=1"},
		{"path escaped", `http://h/wf/{{ .Event.WorkflowName }}/events`,
			"http://h/wf/a%20b%2Fc%3Fd=e&f%23g/events"},
		{"pipeline", `http://h/{{ .Event.Type | lower }}`, "http://h/workflow_failed"},
		{"host value", `http://{{ "svc-1.example" }}:80/x`, "http://svc-1.example:80/x"},
		{"if in query", `http://h/x?a=1{{ if .Event.Execution }}&wf={{ .Event.WorkflowName }}{{ end }}`,
			"http://h/x?a=1&wf=a+b%2Fc%3Fd%3De%26f%23g"},
		{"fragment", `http://h/x#{{ .Event.WorkflowName }}`, "http://h/x#a%20b%2Fc%3Fd=e&f%23g"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, err := New(Spec{URL: tt.tmpl})
			if err != nil {
				t.Fatal(err)
			}
			m, err := f.Format(ev)
			if err != nil {
				t.Fatal(err)
			}
			if m.URL != tt.want {
				t.Errorf("URL\n got %s\nwant %s", m.URL, tt.want)
			}
		})
	}
}

func TestURLTemplateErrors(t *testing.T) {
	for _, tt := range []struct{ name, tmpl, want string }{
		{"syntax", `http://h/{{ .Event.ID `, "url"},
		{"unknown field", `http://h/{{ .Event.Nope }}`, "url"},
		{"host injection", `http://{{ .Event.Execution.StateInfo }}/x`, "host"},
		{"not http", `ftp://h/{{ .Event.ID }}`, "absolute http"},
		{"query in branch", `http://h/x{{ if .Event.Task }}?t={{ .Event.TaskName }}{{ end }}`, "must not start inside"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Spec{URL: tt.tmpl})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "payload: url: ") {
				t.Fatalf("err = %v, want payload: url: ... %q", err, tt.want)
			}
		})
	}
}

// TestURLTemplateFailsForEvent: a template that works on the samples but
// not on a given event fails Format with a clear reason (the delivery is
// then a dead letter).
func TestURLTemplateFailsForEvent(t *testing.T) {
	f, err := New(Spec{URL: `http://{{ .Event.WorkflowName }}.example/x`})
	if err != nil {
		t.Fatal(err)
	}
	ev := Samples()[0]
	ev.Execution.WorkflowName = "evil.com/"
	_, err = f.Format(ev)
	if err == nil || !strings.Contains(err.Error(), "payload: url: template failed for event "+ev.ID) {
		t.Fatalf("err = %v", err)
	}
}

func TestRoutingKey(t *testing.T) {
	f, err := New(Spec{Format: FormatOslo, RoutingKey: "mistral.{{ .Event.Type }}"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.Format(Samples()[1])
	if err != nil {
		t.Fatal(err)
	}
	if m.Key != "mistral.TASK_LAUNCHED" {
		t.Errorf("key %q", m.Key)
	}
	if _, err := New(Spec{RoutingKey: "x.{{ .Event.Nope }}"}); err == nil || !strings.HasPrefix(err.Error(), "payload: routing_key: ") {
		t.Errorf("bad routing key template: %v", err)
	}
	if _, err := New(Spec{RoutingKey: strings.Repeat("k", 256)}); err == nil {
		t.Error("256-byte key accepted")
	}
}

// FuzzURLTemplate: any URL template either fails New with a url error or
// renders, for every sample, an absolute http(s) URL or a url error; never
// a panic.
func FuzzURLTemplate(f *testing.F) {
	for _, s := range []string{`http://h/{{ .Event.ID }}`, `http://h/x?a={{ .Payload.id }}#{{ .Event.Type }}`,
		`http://{{ "h" }}:80/`, `{{ if .Event.Task }}http://a/{{ end }}`, `http://h/{{ range .Payload }}{{ . }}{{ end }}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fm, err := New(Spec{URL: "http://h/" + s})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "payload: url: ") && !strings.HasPrefix(err.Error(), "payload: ") {
				t.Fatalf("error %q", err)
			}
			return
		}
		for _, ev := range Samples() {
			m, err := fm.Format(ev)
			if err != nil {
				continue
			}
			if m.URL != "" && !strings.HasPrefix(m.URL, "http://") && !strings.HasPrefix(m.URL, "https://") {
				t.Fatalf("rendered %q", m.URL)
			}
		}
	})
}
