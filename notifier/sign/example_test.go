package sign_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/sign"
)

// A receiver verifies each request with the callback's secret(s) before
// trusting it, and uses webhook-id to drop duplicates.
func ExampleVerify() {
	secrets := []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read error", http.StatusBadRequest)
			return
		}
		err = sign.Verify(secrets,
			r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"),
			body, r.Header.Get("webhook-signature"), 5*time.Minute, time.Now())
		if err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		fmt.Println("verified", r.Header.Get("webhook-id"))
		w.WriteHeader(http.StatusNoContent)
	})

	// What mistral-tap sends:
	body := `{"id": "ex-1", "event": "WORKFLOW_SUCCEEDED"}`
	now := time.Now()
	sig, _ := sign.Sign(secrets, "evt_1", now, []byte(body))
	req := httptest.NewRequest(http.MethodPost, "/hook", strings.NewReader(body))
	req.Header.Set("webhook-id", "evt_1")
	req.Header.Set("webhook-timestamp", fmt.Sprint(now.Unix()))
	req.Header.Set("webhook-signature", sig)
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	fmt.Println(rec.Code)
	// Output:
	// verified evt_1
	// 204
}

// The test vector of the Standard Webhooks reference libraries (e.g. the
// Svix PHP library's testSignFunctionWorks).
func ExampleSign() {
	sig, _ := sign.Sign([]string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
		"msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0),
		[]byte(`{"test": 2432232314}`))
	fmt.Println(sig)
	// Output: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
}
