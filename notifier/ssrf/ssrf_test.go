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
		// IPv6 forms that embed an IPv4 address are judged by it too.
		{"::127.0.0.1", nil, false}, // IPv4-compatible loopback: Linux dials it
		{"::169.254.169.254", nil, false},
		{"::10.0.0.1", nil, false},
		{"::8.8.8.8", nil, true},
		{"::ffff:0:127.0.0.1", nil, false}, // SIIT (::ffff:0:0:0/96)
		{"::ffff:0:a00:1", nil, false},
		{"::ffff:0:808:808", nil, true},
		{"64:ff9b::127.0.0.1", nil, false},   // NAT64 well-known prefix
		{"64:ff9b:1::a9fe:a9fe", nil, false}, // local-use NAT64: refused as a whole
		{"64:ff9b:1:808:808::", nil, false},
		{"2002:7f00:1::", nil, false},             // 6to4 of 127.0.0.1
		{"2002:a9fe:a9fe::1", nil, false},         // 6to4 of 169.254.169.254
		{"2002:c0a8:101:1::1", nil, false},        // 6to4 of 192.168.1.1
		{"2002:808:808::1", nil, true},            // 6to4 of 8.8.8.8
		{"2001:0:7f00:1::1", nil, false},          // Teredo, server 127.0.0.1
		{"2001:0:808:808::80ff:fffe", nil, false}, // Teredo, client 127.0.0.1 (inverted)
		{"2001:0:808:808::f7f7:f7f7", nil, true},  // Teredo, server and client 8.8.8.8
		{"2001:db8::7f00:1", nil, true},           // documentation prefix, not Teredo: nothing embedded
		{"2606:4700::7f00:1", nil, true},          // ordinary global address ending like 127.0.0.1
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
		{"2002:7f00:1::", []string{"127.0.0.0/8"}, true}, // an allow-listed IPv4 allows its embeddings
		{"64:ff9b::a9fe:a9fe", []string{"169.254.0.0/16"}, true},
		{"2001:0:7f00:1::80ff:fffe", []string{"127.0.0.1"}, true},
		{"2001:0:7f00:1::f5ff:fffe", []string{"127.0.0.1"}, false}, // client 10.0.0.1 not allowed
		{"64:ff9b:1::1", []string{"64:ff9b:1::/48"}, true},
		{"2002:7f00:1::", []string{"2002::/16"}, true},
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
	// The IPv4-compatible form of loopback reaches 127.0.0.1 on Linux.
	if err := g.Control("tcp6", "[::127.0.0.1]:80", nil); !errors.Is(err, ErrForbidden) {
		t.Errorf("Control(::127.0.0.1) = %v, want ErrForbidden", err)
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
