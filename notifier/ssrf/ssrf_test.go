package ssrf

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestAllowed(t *testing.T) {
	tests := []struct {
		ip    string
		allow []string
		want  bool
	}{
		{"8.8.8.8", nil, true},
		{"1.1.1.1", nil, true},
		{"2606:4700:4700::1111", nil, true},
		{"127.0.0.1", nil, false},
		{"127.255.0.7", nil, false},
		{"::1", nil, false},
		{"169.254.169.254", nil, false}, // cloud metadata
		{"169.254.0.1", nil, false},
		{"fe80::1", nil, false},
		{"fe80::1%eth0", nil, false},
		{"10.1.2.3", nil, false},
		{"172.16.0.1", nil, false},
		{"172.31.255.255", nil, false},
		{"172.32.0.1", nil, true},
		{"192.168.1.1", nil, false},
		{"fc00::1", nil, false},
		{"fd12:3456::1", nil, false},
		{"0.0.0.0", nil, false},
		{"::", nil, false},
		{"224.0.0.1", nil, false},
		{"ff02::1", nil, false},
		{"100.64.0.1", nil, false},
		{"100.127.255.254", nil, false},
		{"100.128.0.1", nil, true},
		{"255.255.255.255", nil, false},
		{"::ffff:127.0.0.1", nil, false},
		{"::ffff:169.254.169.254", nil, false},
		{"::ffff:10.0.0.1", nil, false},
		{"::ffff:8.8.8.8", nil, true},
		{"64:ff9b::a9fe:a9fe", nil, false}, // NAT64 of 169.254.169.254
		{"64:ff9b::808:808", nil, true},    // NAT64 of 8.8.8.8
		// allow list
		{"127.0.0.1", []string{"127.0.0.0/8"}, true},
		{"::ffff:127.0.0.1", []string{"127.0.0.0/8"}, true},
		{"::1", []string{"127.0.0.0/8"}, false},
		{"::1", []string{"::1"}, true},
		{"10.1.2.3", []string{"10.1.0.0/16"}, true},
		{"10.2.0.1", []string{"10.1.0.0/16"}, false},
		{"169.254.169.254", []string{"10.0.0.0/8", "127.0.0.1"}, false},
		{"192.168.7.7", []string{"192.168.7.7"}, true},
		{"fd00::5", []string{"fd00::/8"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.ip+"/"+strings.Join(tt.allow, ","), func(t *testing.T) {
			g, err := New(tt.allow)
			if err != nil {
				t.Fatal(err)
			}
			if got := g.Allowed(netip.MustParseAddr(tt.ip)); got != tt.want {
				t.Errorf("Allowed(%s) with allow %v = %v, want %v", tt.ip, tt.allow, got, tt.want)
			}
		})
	}
}

func TestZeroGuardAndInvalidAddr(t *testing.T) {
	var g Guard
	if g.Allowed(netip.Addr{}) {
		t.Error("invalid address allowed")
	}
	if !g.Allowed(netip.MustParseAddr("8.8.4.4")) {
		t.Error("zero Guard refuses a public address")
	}
	var nilGuard *Guard
	if nilGuard.Allowed(netip.MustParseAddr("127.0.0.1")) {
		t.Error("nil Guard allows loopback")
	}
}

func TestNewBadCIDR(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "not-a-net", "", "10.0.0/8"} {
		_, err := New([]string{"127.0.0.0/8", bad})
		if err == nil {
			t.Errorf("New(%q) accepted", bad)
			continue
		}
		if !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("error %q does not name %q", err, bad)
		}
	}
}

func TestControl(t *testing.T) {
	g, _ := New(nil)
	err := g.Control("tcp4", "169.254.169.254:80", nil)
	if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "169.254.169.254:80") {
		t.Errorf("Control(metadata) = %v, want ErrForbidden naming the address", err)
	}
	if err := g.Control("tcp6", "[fe80::1%lo]:443", nil); !errors.Is(err, ErrForbidden) {
		t.Errorf("Control(link-local with zone) = %v", err)
	}
	if err := g.Control("tcp", "garbage", nil); !errors.Is(err, ErrForbidden) {
		t.Errorf("Control(garbage) = %v", err)
	}
	if err := g.Control("tcp4", "93.184.216.34:443", nil); err != nil {
		t.Errorf("Control(public) = %v", err)
	}
}

// TestDialerEndToEnd checks that the guard is effective when installed in a
// real dialer: a loopback receiver is unreachable unless allow-listed, even
// when it is addressed by a name ("localhost") rather than an IP.
func TestDialerEndToEnd(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	for _, tt := range []struct {
		name  string
		allow []string
		url   string
		ok    bool
	}{
		{"ip refused", nil, srv.URL, false},
		{"name refused", nil, "http://localhost:" + port, false},
		{"ip allowed", []string{"127.0.0.0/8"}, srv.URL, true},
		{"other net allowed only", []string{"10.0.0.0/8"}, srv.URL, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g, err := New(tt.allow)
			if err != nil {
				t.Fatal(err)
			}
			d := &net.Dialer{Timeout: 5 * time.Second, Control: g.Control}
			c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, Proxy: nil}}
			defer c.CloseIdleConnections()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tt.url, nil)
			resp, err := c.Do(req)
			if tt.ok {
				if err != nil {
					t.Fatalf("allowed request failed: %v", err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusNoContent {
					t.Errorf("status %d", resp.StatusCode)
				}
				return
			}
			if err == nil {
				resp.Body.Close()
				t.Fatal("request to loopback succeeded without allow list")
			}
			if !errors.Is(err, ErrForbidden) {
				t.Errorf("error %v does not wrap ErrForbidden", err)
			}
		})
	}
}
