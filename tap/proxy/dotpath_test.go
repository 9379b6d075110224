package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"sync"
	"testing"
)

// escapeTargets are request targets whose ".." segments climb above the
// API root under some reading of the path; each must be refused.
var escapeTargets = []string{
	"/../other-app/secret",
	"/%2e%2e/other-app/secret",
	"/%2E%2E/other-app/secret",
	"/%2e./other-app/secret",
	"/.%2E/other-app/secret",
	"/v2/../../x",
	"/v2/./../../x",
	"/v2/..%2f..%2fx",
	"/v2/..%2F..%2Fx",
	"/v2%2f..%2f..%2fx",
	"/%2e%2e%2fother-app/secret",
	"/v2/executions/..%2F..%2F..%2Fx",
	"/a/b/../../../x",
	"/..",
	"/v2/..//..",
	"//../x",
	"/a%2fb/../..",          // a server that keeps %2F in the segment
	"/%252e%252e/x",         // decoded twice
	"/%25252e%25252e/x",     // decoded three times
	"/%25%32%65%25%32%65/x", // %2e%2e once decoded
	"/v2/..%252f..%252fx",   // a double-decoded slash
	"/v2/%2e%2e/%2e%2e/x",
	"/../v2/executions",
}

// staysTargets are request targets under the API root, dot segments or
// not: each is forwarded exactly as it came.
var staysTargets = []string{
	"/",
	"/v2",
	"/v2/",
	"/v2/executions",
	"/v2/executions?updated_at=gte:2024-05-01&x=/../../",
	"/v2/workflows/wb1.main",
	"/v2/executions/../tasks",
	"/v2/./executions",
	"/v2/%2e%2e",
	"/..foo/x",
	"/v2/x%2f/../..",
	"/v2/executions/a%2Fb",
	"/v2/...",
	"/a/b/../../x",
}

// rawGET sends target on a fresh connection as the request line, byte for
// byte, and returns the response status and body.
func rawGET(t *testing.T, addr, target string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET "+target+" HTTP/1.1\r\nHost: "+addr+"\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", target, err)
	}
	return resp.StatusCode, string(b)
}

// TestDotSegmentsCannotLeaveBasePath: with the upstream at a base path,
// targets whose dot segments climb above the API root are refused with a
// Mistral-style 400 and never reach the upstream; the others, the version
// document at / included, reach it unchanged under the base path, also in
// absolute form.
func TestDotSegmentsCannotLeaveBasePath(t *testing.T) {
	var mu sync.Mutex
	var got []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.RequestURI)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{}`)
	}))
	t.Cleanup(up.Close)
	base, _ := url.Parse(up.URL + "/workflow")
	e := newEnv(t, nil, func(o *Options) { o.Upstream = base })
	front := strings.TrimPrefix(e.front.URL, "http://")
	received := func() []string {
		mu.Lock()
		defer mu.Unlock()
		r := got
		got = nil
		return r
	}
	abs := "http://" + base.Host + "/workflow"

	for _, target := range append(escapeTargets, abs+"/../x", abs+"/%2e%2e/x", abs+"/v2/../../x") {
		status, body := rawGET(t, front, target)
		var fault struct{ Faultcode, Faultstring string }
		if status != http.StatusBadRequest || json.Unmarshal([]byte(body), &fault) != nil || fault.Faultcode != "Client" || fault.Faultstring == "" {
			t.Errorf("GET %s: %d %s, want 400 with a Mistral fault", target, status, body)
		}
		if r := received(); len(r) != 0 {
			t.Errorf("GET %s reached the upstream as %q", target, r)
		}
	}
	for _, target := range staysTargets {
		status, _ := rawGET(t, front, target)
		want := "/workflow" + target
		if target == "/" {
			want = "/workflow/"
		}
		if r := received(); status != http.StatusOK || len(r) != 1 || r[0] != want {
			t.Errorf("GET %s: %d, upstream got %q, want [%q]", target, status, r, want)
		}
	}
	if status, _ := rawGET(t, front, abs+"/v2/executions"); status != http.StatusOK {
		t.Errorf("absolute-form GET under the base path: %d", status)
	}
	if r := received(); len(r) != 1 || r[0] != "/workflow/v2/executions" {
		t.Errorf("absolute-form GET reached the upstream as %q", r)
	}
}

// capture is a RoundTripper that records the URL it was asked for and
// answers 200 with an empty JSON object.
type capture struct{ urls []*url.URL }

func (c *capture) RoundTrip(r *http.Request) (*http.Response, error) {
	c.urls = append(c.urls, r.URL)
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("{}")), ContentLength: 2, Request: r}, nil
}

// underBase is the test's own oracle: whether escaped path p, resolved by
// path.Clean under each reading a server may apply (decoded once; split
// first with dot-like segments decoded; decoded repeatedly), stays under
// /workflow.
func underBase(p string) bool {
	under := func(s string) bool {
		c := path.Clean(s)
		return c == "/workflow" || strings.HasPrefix(c, "/workflow/")
	}
	readings := []string{p}
	if d, err := url.PathUnescape(p); err == nil {
		readings = append(readings, d)
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		for range 4 {
			if s == "." || s == ".." {
				segs[i] = s
				break
			}
			d, err := url.PathUnescape(s)
			if err != nil || d == s {
				break
			}
			s = d
		}
	}
	readings = append(readings, strings.Join(segs, "/"))
	for d, i := p, 0; i < 4; i++ {
		n, err := url.PathUnescape(d)
		if err != nil || n == d {
			break
		}
		d = n
		readings = append(readings, d)
	}
	for _, r := range readings {
		if !under(r) {
			return false
		}
	}
	return true
}

// FuzzForwardedPathStaysUnderBase: whatever the request target, what is
// forwarded stays under the upstream's base path in every reading of the
// oracle, and what is refused is answered 400 or 403.
func FuzzForwardedPathStaysUnderBase(f *testing.F) {
	for _, s := range append(append([]string{}, escapeTargets...), staysTargets...) {
		f.Add(s)
	}
	f.Add("http://engine:8989/workflow/../x")
	f.Add("http://engine:8989/workflow/v2/executions")
	f.Add("/v2/executions/%2e%2e%2f%2e%2e%2f")
	base, _ := url.Parse("http://engine:8989/workflow")
	f.Fuzz(func(t *testing.T, target string) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: engine:8989\r\n\r\n")))
		if err != nil {
			return
		}
		tr := &capture{}
		p, err := New(Options{Upstream: base, Transport: tr, Observer: newRecorder()})
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		p.ServeHTTP(w, req)
		p.Wait()
		if len(tr.urls) == 0 {
			if w.Code != http.StatusBadRequest && w.Code != http.StatusForbidden {
				t.Fatalf("GET %q: not forwarded, answered %d", target, w.Code)
			}
			return
		}
		if fwd := tr.urls[0].EscapedPath(); !underBase(fwd) {
			t.Fatalf("GET %q was forwarded as %q, outside /workflow", target, fwd)
		}
	})
}
