package payload

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// tricky returns a task event whose strings exercise every escaping rule.
func tricky() *event.Event {
	ev := Samples()[1]
	task := *ev.Task
	info := "ça a échoué ☃ 😀 \x7f\x01\n\t\"quoted\" \\ / <b>&amp; \u2028 end"
	task.StateInfo = &info
	task.Name = "tâche-1"
	ev.Task = &task
	return ev
}

func render(t *testing.T, s Spec, ev *event.Event) Message {
	t.Helper()
	f, err := New(s)
	if err != nil {
		t.Fatalf("New(%+v): %v", s, err)
	}
	m, err := f.Format(ev)
	if err != nil {
		t.Fatalf("Format: %v", err)
	}
	return m
}

// dump is the golden representation of a message: method, sorted headers,
// blank line, body.
func dump(m Message) []byte {
	var b bytes.Buffer
	b.WriteString(m.Method + "\n")
	keys := make([]string, 0, len(m.Header))
	for k := range m.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range m.Header[k] {
			b.WriteString(k + ": " + v + "\n")
		}
	}
	b.WriteString("\n")
	b.Write(m.Body)
	b.WriteString("\n")
	return b.Bytes()
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden file:\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestGolden(t *testing.T) {
	samples := Samples()
	events := map[string]*event.Event{"execution": samples[0], "task": samples[1], "tricky": tricky()}
	specs := map[string]Spec{
		"mistral":                {},
		"envelope":               {Format: FormatEnvelope},
		"oslo":                   {Format: FormatOslo},
		"cloudevents_structured": {Format: FormatCloudEvents, Source: "mistral-tap://127.0.0.1:8989"},
		"cloudevents_binary":     {Format: FormatCloudEvents, CloudEventsMode: ModeBinary, Source: "mistral-tap://127.0.0.1:8989"},
		"template": {Format: FormatTemplate, Method: "put",
			Headers:  map[string]string{"X-Event": "{{ .Event.Type }}", "Authorization": "Bearer s3cret"},
			Template: `{"text": {{ toJson (printf "%s %s is %s" (lower .Event.Kind) .Event.EntityID .Payload.state) }}, "seq": {{ .Event.Sequence }}, "info": {{ toJson (default "none" .Payload.state_info) }}}`},
	}
	for sname, spec := range specs {
		for ename, ev := range events {
			t.Run(sname+"_"+ename, func(t *testing.T) {
				m := render(t, spec, ev)
				golden(t, sname+"_"+ename, dump(m))
				ct := m.Header.Get("Content-Type")
				if sname == "cloudevents_structured" {
					if ct != ContentTypeCloudEvents {
						t.Errorf("Content-Type %q", ct)
					}
				} else if ct != ContentTypeJSON {
					t.Errorf("Content-Type %q", ct)
				}
				if !json.Valid(m.Body) {
					t.Errorf("body is not valid JSON: %s", m.Body)
				}
			})
		}
	}
}

// TestMistralMatchesPython checks the "mistral" body against what Mistral
// itself would produce: Python's json.dumps of the same ordered dict.
func TestMistralMatchesPython(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not available")
	}
	for _, ev := range append(Samples(), tricky()) {
		// The compact rendering is parsed by Python (object_pairs_hook keeps
		// the order, as Mistral's dict has it) and dumped with defaults.
		in := mistralObject(ev).appendJSON(nil, compact)
		cmd := exec.Command(py, "-c", `import json, sys, collections
d = json.loads(sys.stdin.buffer.read().decode("utf-8"), object_pairs_hook=collections.OrderedDict)
sys.stdout.write(json.dumps(d))`)
		cmd.Stdin = bytes.NewReader(in)
		want, err := cmd.Output()
		if err != nil {
			t.Fatalf("python3: %v", err)
		}
		got := render(t, Spec{}, ev).Body
		if !bytes.Equal(got, want) {
			t.Errorf("event %s:\nGo:     %s\nPython: %s", ev.Type, got, want)
		}
	}
}

func TestMistralBodyShape(t *testing.T) {
	got := string(render(t, Spec{}, Samples()[0]).Body)
	want := `{"id": "a7d4b3c2-0000-4000-8000-000000000001", "name": "wb1.main", "workflow_name": "wb1.main", "workflow_namespace": "", "workflow_id": "024e3b1a-0000-4000-8000-000000000002", "state": "ERROR", "state_info": "Failure caused by error in tasks: fetch", "project_id": "<default-project>", "task_execution_id": null, "root_execution_id": null, "created_at": "2026-11-28 06:48:35", "updated_at": "2026-11-28 06:48:38", "event": "WORKFLOW_FAILED"}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestCloudEventsBinaryHeaders(t *testing.T) {
	ev := Samples()[1]
	ev.Task.ID = "id with space%"
	m := render(t, Spec{Format: FormatCloudEvents, CloudEventsMode: ModeBinary}, ev)
	for k, want := range map[string]string{
		"Ce-Specversion":     "1.0",
		"Ce-Type":            "io.openstack.mistral.task.launched",
		"Ce-Source":          DefaultSource,
		"Ce-Subject":         "id%20with%20space%25",
		"Ce-Sequence":        "00000000000000000002",
		"Ce-Inferred":        "true",
		"Ce-Datacontenttype": "",
	} {
		if got := m.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	var data map[string]any
	if err := json.Unmarshal(m.Body, &data); err != nil || data["type"] != "TASK_LAUNCHED" {
		t.Errorf("binary body is not the envelope: %s (%v)", m.Body, err)
	}
}

func TestCloudEventType(t *testing.T) {
	for typ, want := range map[event.Type]string{
		event.WorkflowSucceeded: "io.openstack.mistral.workflow.succeeded",
		event.TaskSkipped:       "io.openstack.mistral.task.skipped",
		event.WorkflowRerun:     "io.openstack.mistral.workflow.rerun",
	} {
		if got := CloudEventType(typ); got != want {
			t.Errorf("CloudEventType(%s) = %s, want %s", typ, got, want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		spec Spec
		want string // substring naming the field
	}{
		{"format", Spec{Format: "xml"}, "format"},
		{"mode", Spec{Format: FormatCloudEvents, CloudEventsMode: "batch"}, "cloudevents.mode"},
		{"method", Spec{Method: "PO ST"}, "method"},
		{"header name", Spec{Headers: map[string]string{"Bad Name": "x"}}, "headers.Bad Name"},
		{"reserved header", Spec{Headers: map[string]string{"webhook-id": "x"}}, "headers.webhook-id"},
		{"header CRLF", Spec{Headers: map[string]string{"X-A": "a\r\nX-B: b"}}, "headers.X-A"},
		{"header template syntax", Spec{Headers: map[string]string{"X-Token": "{{ .Secret"}}, "headers.X-Token"},
		{"header template field", Spec{Headers: map[string]string{"X-Token": "{{ .Event.Nope }}"}}, "headers.X-Token"},
		{"template missing", Spec{Format: FormatTemplate}, "template"},
		{"template syntax", Spec{Format: FormatTemplate, Template: `{{ .Event.ID `}, "template"},
		{"template unknown func", Spec{Format: FormatTemplate, Template: `{{ sprigOnly .Event.ID }}`}, "template"},
		{"template unknown field", Spec{Format: FormatTemplate, Template: `{{ .Event.Workflow }}`}, "template"},
		{"template unknown payload key", Spec{Format: FormatTemplate, Template: `{"s": "{{ .Payload.stat }}"}`}, "template"},
		{"template kind typo in guarded branch", Spec{Format: FormatTemplate, Template: `{{ with .Event.Task }}{"n": "{{ .Nmae }}"}{{ else }}{}{{ end }}`}, "template"},
		{"template not json", Spec{Format: FormatTemplate, Template: `id={{ .Event.ID }}`}, "not valid JSON"},
		{"template with other format", Spec{Format: FormatEnvelope, Template: `{}`}, "template"},
		{"url template syntax", Spec{URL: "http://h/{{ .Event.ID "}, "url"},
		{"routing key template syntax", Spec{RoutingKey: "x.{{ .Event.ID "}, "routing_key"},
		{"routing key control character", Spec{RoutingKey: "x.\ty"}, "routing_key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.spec)
			if err == nil {
				t.Fatal("New accepted a bad spec")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %q", err, tt.want)
			}
			// config maps errors to fields by this shape.
			field, _, ok := strings.Cut(strings.TrimPrefix(err.Error(), "payload: "), ": ")
			if !ok || !(field == "format" || field == "method" || field == "template" || field == "cloudevents.mode" || field == "url" || field == "routing_key" || strings.HasPrefix(field, "headers.")) {
				t.Errorf("error %q is not \"payload: <field>: ...\"", err)
			}
			for _, v := range tt.spec.Headers {
				if strings.Contains(err.Error(), v) {
					t.Errorf("error %q leaks header value %q", err, v)
				}
			}
		})
	}
}

func TestNewAccepts(t *testing.T) {
	for _, tt := range []struct {
		name string
		spec Spec
	}{
		{"task-only template", Spec{Format: FormatTemplate, Template: `{"task": {{ toJson .Event.Task.Name }}}`}},
		{"execution-only payload key", Spec{Format: FormatTemplate, Template: `{"parent": {{ toJson .Payload.task_execution_id }}}`}},
		{"text body with content type", Spec{Format: FormatTemplate, Template: `{{ .Event.Type }} {{ .Event.EntityID }}`,
			Headers: map[string]string{"Content-Type": "text/plain"}}},
		{"all funcs", Spec{Format: FormatTemplate, Template: `{"a": {{ toJson (upper .Event.Type) }}, "b": {{ quote (lower .Event.Kind) }}, "c": {{ unixTime .Event.Time }}, "d": {{ toJson (rfc3339 now) }}, "e": {{ toPrettyJson .Envelope }}}`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.spec); err != nil {
				t.Errorf("New: %v", err)
			}
		})
	}
}

func TestTemplateFailsAtFormat(t *testing.T) {
	// Task-only template: accepted at load, fails (without panicking) on an
	// execution event.
	f, err := New(Spec{Format: FormatTemplate, Template: `{"task": {{ toJson .Event.Task.Name }}}`})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Format(Samples()[0]); err == nil || !strings.Contains(err.Error(), "template") {
		t.Errorf("Format(execution) = %v, want a template error", err)
	}
	if _, err := f.Format(&event.Event{ID: "x"}); err == nil {
		t.Error("Format accepted an event without entity")
	}
	// Header template failing at Format must not leak the value.
	f, err = New(Spec{Headers: map[string]string{"Authorization": "Bearer tok-{{ .Event.Task.Name }}"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Format(Samples()[0])
	if err == nil || strings.Contains(err.Error(), "Bearer") {
		t.Errorf("Format = %v, want an error without the header value", err)
	}
}

func TestFuncs(t *testing.T) {
	s := "x"
	var nilS *string
	for _, tt := range []struct {
		name string
		got  any
		want any
	}{
		{"default nil ptr", dflt("d", nilS), "d"},
		{"default set ptr", dflt("d", &s), "x"},
		{"default empty", dflt("d", ""), "d"},
		{"default zero", dflt(1, 0), 1},
		{"default value", dflt("d", "v"), "v"},
		{"default nil", dflt("d", nil), "d"},
		{"default empty slice", dflt("d", []string{}), "d"},
		{"text named string", text(event.TaskFailed), "TASK_FAILED"},
		{"text nil ptr", text(nilS), ""},
	} {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if j, err := join(",", []string{"a", "b"}); err != nil || j != "a,b" {
		t.Errorf("join = %q, %v", j, err)
	}
	if _, err := join(",", 3); err == nil {
		t.Error("join accepted a non-list")
	}
	if j, _ := toJSON("<a&b>"); j != `"<a&b>"` {
		t.Errorf("toJson escapes HTML: %s", j)
	}
}

func BenchmarkFormat(b *testing.B) {
	ev := Samples()[0]
	for _, spec := range []Spec{{}, {Format: FormatEnvelope}, {Format: FormatCloudEvents},
		{Format: FormatTemplate, Template: `{"id": {{ toJson .Event.ID }}, "state": {{ toJson .Payload.state }}}`}} {
		f, err := New(spec)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(f.format, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.Format(ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
