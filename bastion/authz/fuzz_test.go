package authz

import (
	"context"
	"net/netip"
	"testing"
)

// FuzzParseTarget: no panics; accepted targets are normalised and parse to
// themselves again.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"node1", "10.0.0.1", "[fd00::1]", "fe80::1%eth0", "A.B.", "::ffff:127.0.0.1", "127.1", "", "x\x00y"} {
		f.Add(s, uint32(22))
	}
	f.Fuzz(func(t *testing.T, host string, port uint32) {
		tg, err := ParseTarget(host, port)
		if err != nil {
			return
		}
		if tg.Port == 0 || uint32(tg.Port) != port {
			t.Fatalf("port %d accepted as %d", port, tg.Port)
		}
		again, err := ParseTarget(tg.Host, port)
		if err != nil || again != tg {
			t.Fatalf("ParseTarget(%q) = %+v, re-parse = %+v, %v", host, tg, again, err)
		}
		if tg.IsAddr() && (tg.Addr.Zone() != "" || tg.Addr.Is4In6()) {
			t.Fatalf("address not normalised: %v", tg.Addr)
		}
	})
}

// fuzzDNS resolves every name to the address encoded in the fuzz input.
type fuzzDNS struct{ addrs []netip.Addr }

func (f fuzzDNS) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return f.addrs, nil
}

// FuzzDecide: whatever the target and the resolver's answer, an allowed hop
// never dials a special address unless a prefix rule inside its range
// names it, and never dials anything it did not check.
func FuzzDecide(f *testing.F) {
	f.Add("web1.prod.internal", uint32(22), []byte{10, 20, 1, 5}, []byte{})
	f.Add("x.prod.internal", uint32(22), []byte{169, 254, 169, 254}, []byte{10, 0, 0, 1})
	f.Add("127.0.0.1", uint32(2201), []byte{}, []byte{})
	f.Add("localnode", uint32(2250), []byte{127, 0, 0, 1}, []byte{})
	f.Add("db1", uint32(5432), []byte{0, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, []byte{})
	f.Add("lab", uint32(22), []byte{192, 0, 2, 10}, []byte{192, 0, 2, 10})
	p := testPolicy(f)
	roleSets := [][]string{{"any"}, {"web", "db"}, {"net", "loop"}, {"world"}, {"meta", "linklocal", "self"}}
	f.Fuzz(func(t *testing.T, host string, port uint32, a1, a2 []byte) {
		var answer []netip.Addr
		for _, b := range [][]byte{a1, a2} {
			if a, ok := netip.AddrFromSlice(b); ok {
				answer = append(answer, a)
			}
		}
		q := *p
		q.Resolver = fuzzDNS{answer}
		for _, roles := range roleSets {
			d, err := q.Decide(context.Background(), roles, host, port)
			if err != nil {
				continue
			}
			if len(d.Addrs) == 0 {
				t.Fatalf("allowed %q with no addresses", host)
			}
			own, _ := q.LocalAddrs()
			rules, _ := q.Rules(roles)
			for _, a := range d.Addrs {
				if a.Is4In6() || a.Zone() != "" {
					t.Fatalf("dial address %v not normalised", a)
				}
				if !d.Target.IsAddr() && !contains(answer, a) && !inventoryAddr(q, a) {
					t.Fatalf("dial address %v was not in the resolver's answer %v", a, answer)
				}
				c, special := Classify(a, own)
				if !special {
					continue
				}
				named := false
				for _, r := range rules {
					if r.Prefix.IsValid() && r.Prefix.Contains(a) && r.AllowsPort(d.Target.Port) && c.namedBy(r.Prefix) {
						named = true
					}
				}
				if !named {
					t.Fatalf("roles %v: %q:%d allowed to special %s address %v (rule %s)", roles, host, port, c.Name, a, d.Rule)
				}
			}
		}
	})
}

func contains(as []netip.Addr, a netip.Addr) bool {
	for _, b := range as {
		if b.Unmap() == a {
			return true
		}
	}
	return false
}

func inventoryAddr(p Policy, a netip.Addr) bool {
	for _, n := range p.inventory {
		if b, err := netip.ParseAddr(n.Addr); err == nil && b.Unmap() == a {
			return true
		}
	}
	return false
}
