package listeners

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/sign"
)

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

// TestCheckBad feeds every kind of bad body the issue lists, and more, and
// checks the message names the problem.
func TestCheckBad(t *testing.T) {
	long := strings.Repeat("a", 300)
	tests := []struct{ name, body, want string }{
		{"not JSON", `{"execution_id": `, "malformed JSON"},
		{"garbage", `hello`, "malformed JSON"},
		{"empty", ``, "empty or cut short"},
		{"array", `[1]`, "must be a JSON object"},
		{"trailing data", `{"execution_id":"x","url":"http://h/"} {}`, "data after the listener object"},
		{"unknown scope", `{"cron_trigger_id":"x","url":"http://h/"}`, `unknown field "cron_trigger_id"`},
		{"no scope", `{"url":"http://h/"}`, "no scope"},
		{"two scopes", `{"execution_id":"x","workflow_name":"wf","url":"http://h/"}`, "two scopes (execution_id and workflow_name)"},
		{"empty scope", `{"execution_id":" ","url":"http://h/"}`, "execution_id must not be empty"},
		{"long scope", `{"execution_id":"` + long + `","url":"http://h/"}`, "longer than 255"},
		{"slash in id", `{"execution_id":"a/../b","url":"http://h/"}`, "contains a character"},
		{"bad glob", `{"workflow_name":"wf[","url":"http://h/"}`, "bad glob"},
		{"unknown event", `{"execution_id":"x","events":["TASK_FINISHED"],"url":"http://h/"}`, `unknown event "TASK_FINISHED"`},
		{"empty events", `{"execution_id":"x","events":[],"url":"http://h/"}`, "at least one event"},
		{"events not a list", `{"execution_id":"x","events":"TASK","url":"http://h/"}`, "field events: want a list"},
		{"no url", `{"execution_id":"x"}`, "url is required"},
		{"relative url", `{"execution_id":"x","url":"/hook"}`, "want an absolute http or https URL"},
		{"ftp url", `{"execution_id":"x","url":"ftp://h/"}`, `scheme "ftp"`},
		{"no host", `{"execution_id":"x","url":"http:///p"}`, "has no host"},
		{"bad url", `{"execution_id":"x","url":"http://h/%zz"}`, "not a URL"},
		{"numeric host", `{"execution_id":"x","url":"http://2130706433/"}`, "ambiguous numeric"},
		{"template url", `{"execution_id":"x","url":"http://h/{{.Event.ID}}"}`, "must be literal"},
		{"method", `{"execution_id":"x","url":"http://h/","method":"TRACE"}`, `method "TRACE"`},
		{"format", `{"execution_id":"x","url":"http://h/","format":"oslo"}`, `format "oslo"`},
		{"hop-by-hop header", `{"execution_id":"x","url":"http://h/","headers":{"Connection":"close"}}`, "header Connection is set by"},
		{"signature header", `{"execution_id":"x","url":"http://h/","headers":{"webhook-signature":"v1,x"}}`, "header webhook-signature is set by"},
		{"same header twice", `{"execution_id":"x","url":"http://h/","headers":{"X-A":"1","x-a":"2"}}`, "headers X-A and x-a are the same header"},
		{"bad header name", `{"execution_id":"x","url":"http://h/","headers":{"a b":"v"}}`, "not a valid header name"},
		{"header line break", `{"execution_id":"x","url":"http://h/","headers":{"X-A":"v\r\nX-B: w"}}`, "value of header X-A contains a line break"},
		{"header template", `{"execution_id":"x","url":"http://h/","headers":{"X-A":"{{.Event.ID}}"}}`, "must be literal"},
		{"header too long", `{"execution_id":"x","url":"http://h/","headers":{"X-A":"` + strings.Repeat("v", 5000) + `"}}`, "longer than 4096"},
		{"headers not strings", `{"execution_id":"x","url":"http://h/","headers":{"X-A":1}}`, "field headers: want a string, got JSON number"},
		{"empty secret", `{"execution_id":"x","url":"http://h/","secret":""}`, "secret must not be empty"},
		{"bad whsec", `{"execution_id":"x","url":"http://h/","secret":"whsec_!!!"}`, "not valid base64"},
		{"expires format", `{"execution_id":"x","url":"http://h/","expires_at":"tomorrow"}`, `"tomorrow" is neither`},
		{"expires past", `{"execution_id":"x","url":"http://h/","expires_at":"2026-12-01 10:00:00"}`, "not in the future"},
		{"expires beyond max", `{"execution_id":"x","url":"http://h/","expires_at":"2027-12-01T10:00:00Z"}`, "longest lifetime allowed (720h0m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Decode([]byte(tt.body))
			if err == nil {
				_, err = b.Check(t0, TTL{Default: 24 * time.Hour, Max: 720 * time.Hour})
			}
			var br *BadRequest
			if !errors.As(err, &br) {
				t.Fatalf("err = %v, want a *BadRequest", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %q, want it to contain %q", err, tt.want)
			}
			for _, secret := range []string{"close", "v1,x", "X-B: w"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("err = %q quotes header value %q", err, secret)
				}
			}
		})
	}
}

func TestCheckGood(t *testing.T) {
	ttl := TTL{Default: 24 * time.Hour, Max: 720 * time.Hour}
	tests := []struct {
		name, body string
		check      func(t *testing.T, r Request)
	}{
		{"defaults", `{"execution_id":" e1 ","url":"https://h.example/hook"}`, func(t *testing.T, r Request) {
			if r.Scope != (Scope{ScopeExecution, "e1"}) || len(r.Events) != 1 || r.Events[0] != "*" {
				t.Errorf("scope %+v events %v", r.Scope, r.Events)
			}
			if r.Spec.Method != "POST" || r.Spec.Format != "mistral" || !r.SecretGenerated {
				t.Errorf("spec %+v generated %v", r.Spec, r.SecretGenerated)
			}
			key, err := sign.Key(r.Spec.Secret)
			if err != nil || len(key) != 24 || !strings.HasPrefix(r.Spec.Secret, "whsec_") {
				t.Errorf("generated secret %q: key %d bytes, err %v", r.Spec.Secret, len(key), err)
			}
			if !r.ExpiresAt.Equal(t0.Add(24 * time.Hour)) {
				t.Errorf("expires %v, want the default TTL", r.ExpiresAt)
			}
		}},
		{"everything", `{"task_execution_id":"t1","events":["on-task-complete","task_failed"],"url":"http://h/","method":"put",
			"headers":{"Authorization":"Bearer x"},"format":"cloudevents","secret":"plain","expires_at":"2026-12-03 10:00:00"}`,
			func(t *testing.T, r Request) {
				if r.Scope.Kind != ScopeTask || r.Spec.Method != "PUT" || r.Spec.Format != "cloudevents" || r.Spec.Secret != "plain" || r.SecretGenerated {
					t.Errorf("request %+v", r)
				}
				if want := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC); !r.ExpiresAt.Equal(want) {
					t.Errorf("expires %v, want %v", r.ExpiresAt, want)
				}
			}},
		{"rfc3339 expiry", `{"workflow_name":"deploy_*","url":"http://h/","expires_at":"2026-12-02T12:00:00+01:00"}`, func(t *testing.T, r Request) {
			if want := time.Date(2026, 12, 2, 11, 0, 0, 0, time.UTC); !r.ExpiresAt.Equal(want) {
				t.Errorf("expires %v, want %v", r.ExpiresAt, want)
			}
		}},
		{"workbook", `{"workbook_name":"wb","url":"http://h/","events":["EXECUTION"]}`, func(t *testing.T, r Request) {
			if r.Scope != (Scope{ScopeWorkbook, "wb"}) {
				t.Errorf("scope %+v", r.Scope)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Decode([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			r, err := b.Check(t0, ttl)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, r)
		})
	}
}

func TestNoTTL(t *testing.T) {
	b, _ := Decode([]byte(`{"execution_id":"x","url":"http://h/"}`))
	r, err := b.Check(t0, TTL{})
	if err != nil || !r.ExpiresAt.IsZero() {
		t.Fatalf("expires %v, err %v; want none", r.ExpiresAt, err)
	}
	r, _ = b.Check(t0, TTL{Max: time.Hour})
	if !r.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("expires %v; want the max TTL when there is no default", r.ExpiresAt)
	}
}

func TestNewSecret(t *testing.T) {
	a, _ := NewSecret()
	b, _ := NewSecret()
	if a == b {
		t.Fatal("two generated secrets are equal")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(a, sign.Prefix))
	if err != nil || len(raw) != 24 {
		t.Fatalf("secret %q: %d bytes, %v", a, len(raw), err)
	}
}

// FuzzBody checks that no body makes Decode or Check panic, that every
// refusal is a *BadRequest, and that an accepted body is one a listener
// can be built from.
func FuzzBody(f *testing.F) {
	for _, s := range []string{
		`{"execution_id":"x","url":"http://h/"}`,
		`{"workflow_name":"a*","events":["TASK","on-execution-start"],"url":"https://h:8/p?q=1","headers":{"A":"b"},"format":"envelope"}`,
		`{"task_execution_id":"t","url":"http://h/","secret":"whsec_AAAA","expires_at":"2026-12-02 11:00:00"}`,
		`{"execution_id":null,"url":1}`, `[]`, `{}`, `"x"`, `{"headers":{"":""}}`,
	} {
		f.Add([]byte(s))
	}
	ttl := TTL{Default: time.Hour, Max: 24 * time.Hour}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Decode(data)
		if err == nil {
			var r Request
			r, err = b.Check(t0, ttl)
			if err == nil {
				if _, err := newLive(listenerOf(r)); err != nil {
					t.Fatalf("accepted body %q makes no listener: %v", data, err)
				}
				return
			}
		}
		var br *BadRequest
		if !errors.As(err, &br) {
			t.Fatalf("refusal %v is not a *BadRequest", err)
		}
	})
}
