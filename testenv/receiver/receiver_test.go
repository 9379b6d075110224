package receiver

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestReceiverRecordsAndScripts(t *testing.T) {
	r := New()
	r.SetResponder(func(n int, _ *http.Request) (int, http.Header) {
		if n <= 2 {
			return http.StatusServiceUnavailable, http.Header{"Retry-After": {"1"}}
		}
		return 0, nil // default 200
	})
	srv := httptest.NewServer(r)
	defer srv.Close()

	wantStatus := []int{503, 503, 200, 200}
	for i, want := range wantStatus {
		resp, err := http.Post(srv.URL+"/hook?x=1", "application/json", strings.NewReader(`{"n":`+string(rune('0'+i))+`}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("request %d: status %d, want %d", i+1, resp.StatusCode, want)
		}
		if want == 503 && resp.Header.Get("Retry-After") != "1" {
			t.Errorf("request %d: Retry-After %q", i+1, resp.Header.Get("Retry-After"))
		}
	}
	got := r.Requests()
	if len(got) != 4 {
		t.Fatalf("got %d requests", len(got))
	}
	for i, q := range got {
		if q.Method != http.MethodPost || q.Path != "/hook" || q.RawQuery != "x=1" || q.Header.Get("Content-Type") != "application/json" {
			t.Errorf("request %d recorded as %+v", i, q)
		}
		if want := `{"n":` + string(rune('0'+i)) + `}`; string(q.Body) != want {
			t.Errorf("request %d body %q, want %q", i, q.Body, want)
		}
	}
	// Requests returns a copy.
	got[0].Body[0] = 'X'
	if r.Requests()[0].Body[0] != '{' {
		t.Error("Requests shares memory with the receiver")
	}
}

func TestWaitFor(t *testing.T) {
	r := New()
	srv := httptest.NewServer(r)
	defer srv.Close()

	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(srv.URL, "text/plain", strings.NewReader("x"))
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := r.WaitFor(ctx, 5)
	if err != nil || len(got) < 5 {
		t.Fatalf("WaitFor: %d, %v", len(got), err)
	}
	wg.Wait()

	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	got, err = r.WaitFor(short, 6)
	if err == nil || len(got) != 5 {
		t.Fatalf("WaitFor(6) = %d, %v; want 5 and an error", len(got), err)
	}
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		name   string
		header http.Header
		body   string
		want   []string
		absent []string
	}{
		{
			name: "mistral execution",
			body: `{"id":"e1","name":"hello","workflow_name":"hello","state":"RUNNING","task_execution_id":null,"root_execution_id":null,"event":"WORKFLOW_LAUNCHED"}`,
			want: []string{"WORKFLOW_LAUNCHED", "hello", "state=RUNNING", "exec=e1"}, absent: []string{"INFERRED", "root="},
		},
		{
			name: "mistral task",
			body: `{"id":"t1","name":"greet","workflow_execution_id":"e1","workflow_name":"hello","state":"SUCCESS","event":"TASK_SUCCEEDED"}`,
			want: []string{"TASK_SUCCEEDED", "hello / greet", "state=SUCCESS", "task=t1 exec=e1"},
		},
		{
			name: "mistral null event",
			body: `{"id":"t1","name":"greet","workflow_execution_id":"e1","workflow_name":"hello","state":"DELAYED","event":null}`,
			want: []string{"null ", "state=DELAYED"},
		},
		{
			name:   "envelope inferred",
			header: http.Header{"Webhook-Id": {"evt_1"}},
			body:   `{"id":"evt_1","type":"WORKFLOW_LAUNCHED","sequence":1,"inferred":true,"previous_state":null,"source":"watch","execution":{"id":"e2","workflow_name":"wb.main","state":"SUCCESS","root_execution_id":"r1","task_execution_id":"t9"}}`,
			want:   []string{"WORKFLOW_LAUNCHED", "wb.main", "seq=1", "INFERRED", "via=watch", "root=r1 parent-task=t9", "id=evt_1"},
		},
		{
			name: "envelope task with previous state",
			body: `{"type":"TASK_SUCCEEDED","sequence":4,"inferred":false,"previous_state":"RUNNING","source":"tap","task":{"id":"t1","name":"greet","workflow_execution_id":"e1","workflow_name":"hello","state":"SUCCESS"}}`,
			want: []string{"TASK_SUCCEEDED", "hello / greet", "RUNNING→SUCCESS", "seq=4", "via=tap", "task=t1 exec=e1"}, absent: []string{"INFERRED"},
		},
		{
			name: "structured cloudevent",
			body: `{"specversion":"1.0","id":"evt_2","source":"/mistral","type":"org.openstack.mistral.task.failed.v1","sequence":"00000000000000000012","inferred":false,"data":{"id":"t2","name":"boom","workflow_execution_id":"e1","workflow_name":"w","state":"ERROR"}}`,
			want: []string{"org.openstack.mistral.task.failed.v1", "w / boom", "seq=12", "state=ERROR"}, absent: []string{"via="},
		},
		{
			name:   "binary cloudevent",
			header: http.Header{"Ce-Type": {"org.openstack.mistral.workflow.failed.v1"}, "Ce-Sequence": {"7"}},
			body:   `{"id":"e3","workflow_name":"w","state":"ERROR","state_info":"boom"}`,
			want:   []string{"org.openstack.mistral.workflow.failed.v1", "seq=7", `info="boom"`},
		},
		{name: "not json", body: "hello", want: []string{"raw hello"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.header
			if h == nil {
				h = http.Header{}
			}
			got := Describe(h, []byte(tt.body))
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("Describe = %q; missing %q", got, w)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(got, a) {
					t.Errorf("Describe = %q; should not contain %q", got, a)
				}
			}
		})
	}
}

func TestConsolePrinter(t *testing.T) {
	var buf bytes.Buffer
	srv := httptest.NewServer(ConsolePrinter(&buf))
	defer srv.Close()
	resp, err := http.Post(srv.URL, "", strings.NewReader(`{"id":"e1","workflow_name":"hello","state":"SUCCESS","event":"WORKFLOW_SUCCEEDED"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
	if out := buf.String(); !strings.Contains(out, "WORKFLOW_SUCCEEDED") || strings.Count(out, "\n") != 1 {
		t.Errorf("printed %q", out)
	}
}
