package sign

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	specSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTS     = 1614265330
	specBody   = `{"test": 2432232314}`
	// specSig is the vector the Standard Webhooks reference libraries test
	// against (svix-webhooks php/tests: testSignFunctionWorks).
	specSig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignSpecVector(t *testing.T) {
	got, err := Sign([]string{specSecret}, specID, time.Unix(specTS, 0), []byte(specBody))
	if err != nil {
		t.Fatal(err)
	}
	if got != specSig {
		t.Errorf("Sign = %s, want %s", got, specSig)
	}
}

func TestSignRotationAndRawSecrets(t *testing.T) {
	raw := "plain-password"
	got, err := Sign([]string{specSecret, raw}, specID, time.Unix(specTS, 0), []byte(specBody))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(got, " ")
	if len(parts) != 2 || parts[0] != specSig {
		t.Fatalf("Sign = %q, want 2 signatures, first %s", got, specSig)
	}
	// Independent computation of the raw-key signature.
	h := hmac.New(sha256.New, []byte(raw))
	h.Write([]byte(specID + "." + strconv.Itoa(specTS) + "." + specBody))
	if want := "v1," + base64.StdEncoding.EncodeToString(h.Sum(nil)); parts[1] != want {
		t.Errorf("raw secret signature %s, want %s", parts[1], want)
	}
}

func TestSignErrors(t *testing.T) {
	for _, tt := range []struct {
		name    string
		secrets []string
	}{
		{"none", nil},
		{"empty", []string{""}},
		{"bad base64", []string{"whsec_!!!notbase64"}},
		{"empty whsec", []string{"whsec_"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Sign(tt.secrets, "id", time.Unix(1, 0), nil)
			if err == nil {
				t.Fatal("Sign accepted bad secrets")
			}
			for _, s := range tt.secrets {
				if len(s) > len(Prefix) && strings.Contains(err.Error(), s) {
					t.Errorf("error %q leaks the secret", err)
				}
			}
		})
	}
}

func TestVerify(t *testing.T) {
	now := time.Unix(specTS, 0)
	ts := strconv.Itoa(specTS)
	other := "whsec_" + base64.StdEncoding.EncodeToString([]byte("another-key-of-24-bytes!"))
	otherSig, _ := Sign([]string{other}, specID, now, []byte(specBody))
	for _, tt := range []struct {
		name    string
		secrets []string
		id, ts  string
		body    string
		header  string
		now     time.Time
		want    error
	}{
		{"spec vector", []string{specSecret}, specID, ts, specBody, specSig, now, nil},
		{"rotation: second header sig", []string{specSecret}, specID, ts, specBody, otherSig + " " + specSig, now, nil},
		{"rotation: second secret", []string{other, specSecret}, specID, ts, specBody, specSig, now, nil},
		{"unknown scheme skipped", []string{specSecret}, specID, ts, specBody, "v1a,xyz " + specSig, now, nil},
		{"within tolerance", []string{specSecret}, specID, ts, specBody, specSig, now.Add(4 * time.Minute), nil},
		{"too old", []string{specSecret}, specID, ts, specBody, specSig, now.Add(6 * time.Minute), ErrTimestampRange},
		{"too new", []string{specSecret}, specID, ts, specBody, specSig, now.Add(-6 * time.Minute), ErrTimestampRange},
		{"bad ts", []string{specSecret}, specID, "soon", specBody, specSig, now, ErrBadTimestamp},
		{"tampered body", []string{specSecret}, specID, ts, specBody + " ", specSig, now, ErrBadSignature},
		{"other id", []string{specSecret}, "msg_other", ts, specBody, specSig, now, ErrBadSignature},
		{"wrong secret", []string{other}, specID, ts, specBody, specSig, now, ErrBadSignature},
		{"no signature", []string{specSecret}, specID, ts, specBody, "", now, ErrNoSignature},
		{"only v1a", []string{specSecret}, specID, ts, specBody, "v1a,abc", now, ErrNoSignature},
		{"no secret", nil, specID, ts, specBody, specSig, now, ErrNoSecret},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.secrets, tt.id, tt.ts, []byte(tt.body), tt.header, 0, tt.now)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func python(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not available")
	}
	return p
}

// TestPythonIndependentSignature compares with a signature computed by
// Python's hmac module, for a whsec_ secret, a raw secret and a non-ASCII body.
func TestPythonIndependentSignature(t *testing.T) {
	py := python(t)
	body := []byte(`{"state_info": "ça a échoué ☃", "n": null}`)
	ts := time.Unix(1767225600, 0)
	for _, secret := range []string{specSecret, "raw secret with spaces"} {
		script := `
import base64, hashlib, hmac, sys
secret, msg_id, ts = sys.argv[1], sys.argv[2], sys.argv[3]
key = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
body = sys.stdin.buffer.read()
print("v1," + base64.b64encode(hmac.new(key, msg_id.encode() + b"." + ts.encode() + b"." + body, hashlib.sha256).digest()).decode())`
		cmd := exec.Command(py, "-c", script, secret, "evt_abc", strconv.FormatInt(ts.Unix(), 10))
		cmd.Stdin = bytes.NewReader(body)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("python3: %v", err)
		}
		got, err := Sign([]string{secret}, "evt_abc", ts, body)
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.TrimSpace(string(out)); got != want {
			t.Errorf("secret %q: Go %s, Python %s", secret, got, want)
		}
	}
}

// TestVerifyPy runs the documented Python receiver snippet against our
// signatures, so the snippet we publish is known to work.
func TestVerifyPy(t *testing.T) {
	py := python(t)
	body := []byte(`{"id": "x", "event": "TASK_FAILED"}`)
	ts := time.Unix(1767225600, 0)
	hdr, _ := Sign([]string{"whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef01234567")), "raw"}, "evt_1", ts, body)
	for _, tt := range []struct {
		name   string
		secret string
		body   []byte
		valid  bool
	}{
		{"raw secret", "raw", body, true},
		{"whsec secret", "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef01234567")), body, true},
		{"wrong secret", "nope", body, false},
		{"tampered", "raw", append([]byte{' '}, body...), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(py, "verify.py", "--secret", tt.secret, "--id", "evt_1",
				"--timestamp", strconv.FormatInt(ts.Unix(), 10), "--signature", hdr,
				"--now", strconv.FormatInt(ts.Unix()+10, 10))
			cmd.Stdin = bytes.NewReader(tt.body)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				t.Fatalf("verify.py: %v: %s", err, out)
			}
			if valid := err == nil; valid != tt.valid {
				t.Errorf("verify.py valid=%v, want %v (%s)", valid, tt.valid, out)
			}
		})
	}
}

func BenchmarkSigner(b *testing.B) {
	s, _ := NewSigner([]string{specSecret})
	body := bytes.Repeat([]byte("x"), 1024)
	ts := time.Unix(specTS, 0)
	b.ReportAllocs()
	for b.Loop() {
		s.Sign(specID, ts, body)
	}
}
