package authz

import (
	"net/netip"
	"slices"
)

// Class describes why an address is special. Special addresses are refused
// unless a prefix rule inside Prefix names them; Never classes are refused
// whatever the rules say.
type Class struct {
	Name   string       // "loopback", "link-local", "metadata", "bastion", …
	Prefix netip.Prefix // the special range the address falls in
	Never  bool         // no rule can allow it
}

// MetadataAddrs are cloud instance-metadata and platform endpoints. A rule
// must name each of them exactly to allow it.
var MetadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"), // AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean
	netip.MustParseAddr("169.254.170.2"),   // AWS ECS task metadata
	netip.MustParseAddr("169.254.169.253"), // AWS DNS resolver
	netip.MustParseAddr("169.254.169.123"), // AWS time sync
	netip.MustParseAddr("fd00:ec2::254"),   // AWS IMDS over IPv6
	netip.MustParseAddr("fd00:ec2::253"),   // AWS DNS over IPv6
	netip.MustParseAddr("fd00:ec2::123"),   // AWS time sync over IPv6
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
	netip.MustParseAddr("168.63.129.16"),   // Azure wire server
	netip.MustParseAddr("192.0.0.192"),     // Oracle Cloud (classic)
}

var (
	nat64Prefix     = netip.MustParsePrefix("64:ff9b::/96")
	v4CompatPrefix  = netip.MustParsePrefix("::/96")
	thisNetwork     = netip.MustParsePrefix("0.0.0.0/8")
	broadcast       = netip.MustParsePrefix("255.255.255.255/32")
	loopback4       = netip.MustParsePrefix("127.0.0.0/8")
	loopback6       = netip.MustParsePrefix("::1/128")
	linkLocal4      = netip.MustParsePrefix("169.254.0.0/16")
	linkLocal6      = netip.MustParsePrefix("fe80::/10")
	multicast4      = netip.MustParsePrefix("224.0.0.0/4")
	multicast6      = netip.MustParsePrefix("ff00::/8")
	unspecified6    = netip.MustParsePrefix("::/128")
	ipv4MappedRange = netip.MustParsePrefix("::ffff:0:0/96")
)

// Classify reports whether a is special and why. own lists the bastion's
// own addresses. a is unmapped first (::ffff:127.0.0.1 is 127.0.0.1).
func Classify(a netip.Addr, own []netip.Addr) (Class, bool) {
	a = a.Unmap().WithZone("")
	if !a.IsValid() {
		return Class{Name: "invalid", Never: true}, true
	}
	if slices.Contains(MetadataAddrs, a) {
		return Class{Name: "metadata", Prefix: netip.PrefixFrom(a, a.BitLen())}, true
	}
	switch {
	case thisNetwork.Contains(a), unspecified6.Contains(a):
		return Class{Name: "unspecified", Prefix: hostPrefix(a), Never: true}, true
	case broadcast.Contains(a):
		return Class{Name: "broadcast", Prefix: broadcast, Never: true}, true
	case loopback4.Contains(a):
		return Class{Name: "loopback", Prefix: loopback4}, true
	case loopback6.Contains(a):
		return Class{Name: "loopback", Prefix: loopback6}, true
	case linkLocal4.Contains(a):
		return Class{Name: "link-local", Prefix: linkLocal4}, true
	case linkLocal6.Contains(a):
		return Class{Name: "link-local", Prefix: linkLocal6}, true
	case multicast4.Contains(a), multicast6.Contains(a):
		return Class{Name: "multicast", Prefix: hostPrefix(a), Never: true}, true
	case nat64Prefix.Contains(a):
		// 64:ff9b::a.b.c.d reaches a.b.c.d through a NAT64 gateway.
		b := a.As16()
		v4 := netip.AddrFrom4([4]byte(b[12:16]))
		if c, special := Classify(v4, own); special {
			return Class{Name: "nat64 " + c.Name, Prefix: hostPrefix(a), Never: c.Never}, true
		}
	case v4CompatPrefix.Contains(a) && !ipv4MappedRange.Contains(a):
		// Deprecated IPv4-compatible IPv6 (::a.b.c.d): never a real node.
		return Class{Name: "ipv4-compatible", Prefix: hostPrefix(a), Never: true}, true
	}
	for _, o := range own {
		if o.Unmap().WithZone("") == a {
			return Class{Name: "bastion", Prefix: hostPrefix(a)}, true
		}
	}
	return Class{}, false
}

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// namedBy reports whether prefix p (from a rule) explicitly names special
// addresses of class c: p lies entirely inside c.Prefix.
func (c Class) namedBy(p netip.Prefix) bool {
	if c.Never || !c.Prefix.IsValid() || !p.IsValid() {
		return false
	}
	return p.Bits() >= c.Prefix.Bits() && c.Prefix.Contains(p.Addr())
}
