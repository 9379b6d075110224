// Package ssrf refuses outgoing connections to internal addresses at dial
// time.
//
// The check runs in net.Dialer.Control, after name resolution and just before
// connect(2), on the IP address actually being dialled. Checking the URL's
// host before the request (as Mistral's egress.validate_url does) leaves a
// DNS-rebinding window: the name can resolve to a public address for the
// check and to 169.254.169.254 for the connection. Here there is nothing
// left to rebind. This is Convoy's pattern.
package ssrf

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
)

// ErrForbidden is wrapped by every refusal, so callers can tell an SSRF
// refusal (permanent) from a connection error (transient) with errors.Is.
var ErrForbidden = errors.New("destination address is forbidden (loopback, link-local, private or reserved)")

// Guard decides which IP addresses a webhook may connect to. Its zero value
// refuses every internal address and allows public ones; use New to add an
// allow list. A Guard is safe for concurrent use.
type Guard struct {
	allow []netip.Prefix
}

// blocked are the ranges refused unless allow-listed, besides those netip
// classifies itself (loopback, private, link-local, multicast, unspecified).
var blocked = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),     // "this network"; 0.0.0.0 reaches localhost on Linux
	netip.MustParsePrefix("100.64.0.0/10"), // CGNAT shared address space (RFC 6598)
	netip.MustParsePrefix("192.0.0.0/24"),  // IETF protocol assignments (RFC 6890)
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking (RFC 2544)
	netip.MustParsePrefix("240.0.0.0/4"),   // reserved, incl. 255.255.255.255 broadcast
	netip.MustParsePrefix("fec0::/10"),     // deprecated site-local, still routed by some stacks
}

// nat64 is the well-known NAT64 prefix (RFC 6052): 64:ff9b::a.b.c.d reaches
// the IPv4 address a.b.c.d through a translator, so the embedded address is
// checked too.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// New returns a Guard that also allows the given networks. Each entry is a
// CIDR ("127.0.0.0/8", "fd00::/8") or a single address ("10.0.0.5"). The
// error names the first bad entry.
func New(allow []string) (*Guard, error) {
	g := &Guard{}
	for _, s := range allow {
		s = strings.TrimSpace(s)
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(s)
			if err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return nil, fmt.Errorf("ssrf: allow_networks entry %q is not a CIDR or IP address: %w", s, err)
		}
		g.allow = append(g.allow, p.Masked())
	}
	return g, nil
}

// Allowed reports whether a connection to ip may be made: always for a public
// address, and for an internal one only if an allow-listed network contains
// it. IPv4-mapped IPv6 addresses (::ffff:127.0.0.1) and NAT64 addresses are
// judged by the IPv4 address they embed.
func (g *Guard) Allowed(ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.WithZone("")
	if g.allowListed(ip) {
		return true
	}
	return !internal(ip)
}

func (g *Guard) allowListed(ip netip.Addr) bool {
	if g == nil {
		return false
	}
	candidates := []netip.Addr{ip, ip.Unmap()}
	if v4, ok := embedded(ip); ok {
		candidates = append(candidates, v4)
	}
	for _, p := range g.allow {
		for _, c := range candidates {
			if p.Contains(c) {
				return true
			}
		}
	}
	return false
}

// embedded returns the IPv4 address inside a NAT64 address.
func embedded(ip netip.Addr) (netip.Addr, bool) {
	if !ip.Is6() || !nat64.Contains(ip) {
		return netip.Addr{}, false
	}
	b := ip.As16()
	return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
}

// internal reports whether ip is in a range refused by default.
func internal(ip netip.Addr) bool {
	ip = ip.Unmap()
	if v4, ok := embedded(ip); ok {
		if internal(v4) {
			return true
		}
	}
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() ||
		ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() {
		return true
	}
	for _, p := range blocked {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Control is a net.Dialer.Control function. address is the resolved
// "ip:port" being dialled; a refused address gives an error wrapping
// ErrForbidden that names it.
func (g *Guard) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("ssrf: cannot check dial address %q (%s): %w", address, network, ErrForbidden)
	}
	if !g.Allowed(ap.Addr()) {
		return fmt.Errorf("ssrf: refusing to connect to %s (add it to delivery.allow_networks to allow): %w", address, ErrForbidden)
	}
	return nil
}
