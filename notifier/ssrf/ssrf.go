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

// IPv6 forms that carry an IPv4 address, which a translator, a tunnel or
// the kernel may turn into a connection to that IPv4 address. Each is judged
// by the IPv4 address it embeds as well as by itself: ::127.0.0.1 was
// dialled as loopback by Linux before this check existed.
var (
	v4compat  = netip.MustParsePrefix("::/96")           // IPv4-compatible ::a.b.c.d (RFC 4291, deprecated)
	siit      = netip.MustParsePrefix("::ffff:0:0:0/96") // IPv4-translated ::ffff:0:a.b.c.d (SIIT, RFC 2765)
	nat64     = netip.MustParsePrefix("64:ff9b::/96")    // NAT64 well-known prefix (RFC 6052)
	sixToFour = netip.MustParsePrefix("2002::/16")       // 6to4: the IPv4 address is bits 16-48 (RFC 3056)
	teredo    = netip.MustParsePrefix("2001::/32")       // Teredo: server IPv4 in bits 32-64, client IPv4 inverted in 96-128 (RFC 4380)
)

// nat64Local is the local-use NAT64 prefix (RFC 8215). Where the IPv4
// address sits inside it depends on the operator's translator prefix length,
// and it only ever reaches the operator's own networks, so the whole range
// is refused unless allow-listed.
var nat64Local = netip.MustParsePrefix("64:ff9b:1::/48")

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
// it. An IPv4-mapped address (::ffff:127.0.0.1) is judged as the IPv4
// address; an IPv6 form that embeds an IPv4 address (IPv4-compatible, SIIT,
// NAT64, 6to4, Teredo) is refused when an embedded IPv4 address is refused.
func (g *Guard) Allowed(ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.WithZone("").Unmap()
	if g.allowListed(ip) {
		return true
	}
	if internal(ip) {
		return false
	}
	for _, v4 := range embedded(ip) {
		if internal(v4) && !g.allowListed(v4) {
			return false
		}
	}
	return true
}

func (g *Guard) allowListed(ip netip.Addr) bool {
	if g == nil {
		return false
	}
	for _, p := range g.allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// embedded returns the IPv4 addresses an IPv6 transition form carries: one,
// or two for Teredo (its server and its client).
func embedded(ip netip.Addr) []netip.Addr {
	if !ip.Is6() {
		return nil
	}
	b := ip.As16()
	v4 := func(i int) netip.Addr { return netip.AddrFrom4([4]byte(b[i : i+4])) }
	switch {
	case v4compat.Contains(ip), siit.Contains(ip), nat64.Contains(ip):
		return []netip.Addr{v4(12)}
	case sixToFour.Contains(ip):
		return []netip.Addr{v4(2)}
	case teredo.Contains(ip):
		client := [4]byte{^b[12], ^b[13], ^b[14], ^b[15]}
		return []netip.Addr{v4(4), netip.AddrFrom4(client)}
	}
	return nil
}

// internal reports whether ip itself is in a range refused by default.
func internal(ip netip.Addr) bool {
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() ||
		ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || nat64Local.Contains(ip) {
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
