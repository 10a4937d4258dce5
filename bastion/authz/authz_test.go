package authz

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/postern-dev/postern/internal/config"
)

// fakeDNS is a Resolver backed by a map.
type fakeDNS map[string][]string

func (f fakeDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	as, ok := f[host]
	if !ok {
		return nil, fmt.Errorf("lookup %s: no such host", host)
	}
	var out []netip.Addr
	for _, a := range as {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

var testDNS = fakeDNS{
	"web1.prod.internal":   {"10.20.1.5"},
	"web2.prod.internal":   {"10.20.1.6", "fd00:20::6"},
	"evil.prod.internal":   {"10.20.1.7", "169.254.169.254"},
	"meta.prod.internal":   {"169.254.169.254"},
	"self.prod.internal":   {"192.0.2.10"},
	"local.prod.internal":  {"127.0.0.1", "::1"},
	"localhost":            {"127.0.0.1", "::1"},
	"db.example.com":       {"198.51.100.7"},
	"nat64.prod.internal":  {"64:ff9b::a9fe:a9fe"},
	"mapped.prod.internal": {"::ffff:127.0.0.1"},
	"dbhost.internal":      {"10.30.0.9"},
}

const testConfig = `
[bastion]
[[bastion.node]]
name = "db1"
addr = "10.30.0.9"
labels = { env = "prod", tier = "db" }
[[bastion.node]]
name = "db2"
addr = "dbhost.internal"
labels = { env = "prod", tier = "db" }
[[bastion.node]]
name = "lab"
addr = "10.40.0.1"
labels = { env = "lab" }
[[bastion.node]]
name = "localnode"
addr = "127.0.0.1"
labels = { env = "local" }

[[role]]
name = "web"
groups = ["g"]
nodes = ["*.prod.internal", "*.prod.internal:8080"]

[[role]]
name = "db"
groups = ["g"]
nodes = ["label:tier=db", "label:tier=db:5432"]

[[role]]
name = "net"
groups = ["g"]
nodes = ["10.40.0.0/16:22-2222", "[fd00:20::/64]"]

[[role]]
name = "loop"
groups = ["g"]
nodes = ["127.0.0.1:2201-2299", "label:env=local"]

[[role]]
name = "meta"
groups = ["g"]
nodes = ["169.254.169.254:80"]

[[role]]
name = "linklocal"
groups = ["g"]
nodes = ["169.254.0.0/16:80"]

[[role]]
name = "world"
groups = ["g"]
nodes = ["0.0.0.0/0:1-65535", "[::/0]:1-65535"]

[[role]]
name = "any"
groups = ["g"]
nodes = ["*:1-65535"]

[[role]]
name = "self"
groups = ["g"]
nodes = ["192.0.2.10"]
`

func testPolicy(t testing.TB) *Policy {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.Resolver = testDNS
	p.LocalAddrs = func() ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("fe80::1")}, nil
	}
	return p
}

func TestDecide(t *testing.T) {
	p := testPolicy(t)
	tests := []struct {
		name     string
		roles    []string
		host     string
		port     uint32
		wantErr  error
		wantAddr []string
		wantRule string
		wantNode string
	}{
		{name: "glob", roles: []string{"web"}, host: "web1.prod.internal", port: 22, wantAddr: []string{"10.20.1.5"}, wantRule: "web: *.prod.internal"},
		{name: "glob upper case and trailing dot", roles: []string{"web"}, host: "WEB1.prod.internal.", port: 22, wantAddr: []string{"10.20.1.5"}},
		{name: "glob second port", roles: []string{"web"}, host: "web1.prod.internal", port: 8080, wantAddr: []string{"10.20.1.5"}, wantRule: "web: *.prod.internal:8080"},
		{name: "glob wrong port", roles: []string{"web"}, host: "web1.prod.internal", port: 2222, wantErr: ErrNotAllowed},
		{name: "glob all addresses", roles: []string{"web"}, host: "web2.prod.internal", port: 22, wantAddr: []string{"10.20.1.6", "fd00:20::6"}},
		{name: "glob no match", roles: []string{"web"}, host: "db.example.com", port: 22, wantErr: ErrNotAllowed},
		{name: "unknown role grants nothing", roles: []string{"nosuchrole"}, host: "web1.prod.internal", port: 22, wantErr: ErrNotAllowed},
		{name: "no roles", host: "web1.prod.internal", port: 22, wantErr: ErrNotAllowed},
		{name: "one address metadata refuses all", roles: []string{"web"}, host: "evil.prod.internal", port: 22, wantErr: ErrAddressRefused},
		{name: "glob to metadata", roles: []string{"web"}, host: "meta.prod.internal", port: 22, wantErr: ErrAddressRefused},
		{name: "glob to own address", roles: []string{"web"}, host: "self.prod.internal", port: 22, wantErr: ErrAddressRefused},
		{name: "glob to loopback", roles: []string{"web"}, host: "local.prod.internal", port: 22, wantErr: ErrAddressRefused},
		{name: "glob to nat64 metadata", roles: []string{"web"}, host: "nat64.prod.internal", port: 22, wantErr: ErrAddressRefused},
		{name: "glob to mapped loopback", roles: []string{"web"}, host: "mapped.prod.internal", port: 22, wantErr: ErrAddressRefused},
		{name: "unresolvable", roles: []string{"web"}, host: "gone.prod.internal", port: 22, wantErr: ErrResolve},
		{name: "no dns without a possible rule", roles: []string{"web"}, host: "gone.example.com", port: 22, wantErr: ErrNotAllowed},

		{name: "label by name", roles: []string{"db"}, host: "db1", port: 22, wantAddr: []string{"10.30.0.9"}, wantNode: "db1", wantRule: "db: label:tier=db"},
		{name: "label port", roles: []string{"db"}, host: "db1", port: 5432, wantAddr: []string{"10.30.0.9"}, wantNode: "db1"},
		{name: "label by node address", roles: []string{"db"}, host: "10.30.0.9", port: 22, wantAddr: []string{"10.30.0.9"}, wantNode: "db1"},
		{name: "label node with dns addr", roles: []string{"db"}, host: "db2", port: 22, wantAddr: []string{"10.30.0.9"}, wantNode: "db2"},
		{name: "label mismatch", roles: []string{"db"}, host: "lab", port: 22, wantErr: ErrNotAllowed},
		{name: "label unknown name", roles: []string{"db"}, host: "db3", port: 22, wantErr: ErrNotAllowed},

		{name: "cidr", roles: []string{"net"}, host: "10.40.3.4", port: 2222, wantAddr: []string{"10.40.3.4"}, wantRule: "net: 10.40.0.0/16:22-2222"},
		{name: "cidr by inventory name", roles: []string{"net"}, host: "lab", port: 22, wantAddr: []string{"10.40.0.1"}, wantNode: "lab"},
		{name: "cidr port out of range", roles: []string{"net"}, host: "10.40.3.4", port: 2223, wantErr: ErrNotAllowed},
		{name: "cidr outside", roles: []string{"net"}, host: "10.41.0.1", port: 22, wantErr: ErrNotAllowed},
		{name: "cidr v6 in brackets", roles: []string{"net"}, host: "[fd00:20::9]", port: 22, wantAddr: []string{"fd00:20::9"}},
		{name: "cidr dns name resolved", roles: []string{"net"}, host: "web2.prod.internal", port: 22, wantErr: ErrNotAllowed},

		{name: "loopback named", roles: []string{"loop"}, host: "127.0.0.1", port: 2201, wantAddr: []string{"127.0.0.1"}, wantNode: "localnode"},
		{name: "loopback named wrong port", roles: []string{"loop"}, host: "127.0.0.1", port: 22, wantErr: ErrAddressRefused},
		{name: "loopback via label", roles: []string{"loop"}, host: "localnode", port: 22, wantErr: ErrAddressRefused},
		{name: "loopback via label prefix port", roles: []string{"loop"}, host: "localnode", port: 2250, wantAddr: []string{"127.0.0.1"}, wantNode: "localnode"},
		{name: "localhost name", roles: []string{"any"}, host: "localhost", port: 22, wantErr: ErrAddressRefused},
		{name: "loopback literal glob", roles: []string{"any"}, host: "127.0.0.1", port: 22, wantErr: ErrAddressRefused},
		{name: "loopback other", roles: []string{"any"}, host: "127.0.0.2", port: 22, wantErr: ErrAddressRefused},
		{name: "v6 loopback", roles: []string{"any"}, host: "::1", port: 22, wantErr: ErrAddressRefused},
		{name: "mapped v6 loopback", roles: []string{"any"}, host: "::ffff:127.0.0.1", port: 22, wantErr: ErrAddressRefused},
		{name: "unspecified", roles: []string{"any"}, host: "0.0.0.0", port: 22, wantErr: ErrAddressRefused},
		{name: "metadata literal", roles: []string{"any"}, host: "169.254.169.254", port: 80, wantErr: ErrAddressRefused},
		{name: "aws v6 metadata", roles: []string{"any"}, host: "fd00:ec2::254", port: 80, wantErr: ErrAddressRefused},
		{name: "alibaba metadata", roles: []string{"any"}, host: "100.100.100.200", port: 80, wantErr: ErrAddressRefused},
		{name: "link-local v6", roles: []string{"any"}, host: "fe80::2", port: 22, wantErr: ErrAddressRefused},
		{name: "link-local v6 zone", roles: []string{"any"}, host: "fe80::2%eth0", port: 22, wantErr: ErrBadTarget},
		{name: "own address", roles: []string{"any"}, host: "192.0.2.10", port: 22, wantErr: ErrAddressRefused},
		{name: "public ok with any", roles: []string{"any"}, host: "198.51.100.9", port: 22, wantAddr: []string{"198.51.100.9"}},
		{name: "metadata named exactly", roles: []string{"meta"}, host: "169.254.169.254", port: 80, wantAddr: []string{"169.254.169.254"}},
		{name: "link-local range allows link-local", roles: []string{"linklocal"}, host: "169.254.1.1", port: 80, wantAddr: []string{"169.254.1.1"}},
		{name: "link-local range does not allow metadata", roles: []string{"linklocal"}, host: "169.254.169.254", port: 80, wantErr: ErrAddressRefused},
		{name: "world does not allow loopback", roles: []string{"world"}, host: "127.0.0.1", port: 22, wantErr: ErrAddressRefused},
		{name: "world does not allow metadata", roles: []string{"world"}, host: "169.254.169.254", port: 80, wantErr: ErrAddressRefused},
		{name: "world does not allow own", roles: []string{"world"}, host: "192.0.2.10", port: 22, wantErr: ErrAddressRefused},
		{name: "world allows public", roles: []string{"world"}, host: "198.51.100.7", port: 443, wantAddr: []string{"198.51.100.7"}},
		{name: "own address named", roles: []string{"self"}, host: "192.0.2.10", port: 22, wantAddr: []string{"192.0.2.10"}},
		{name: "own address named via dns", roles: []string{"self"}, host: "self.prod.internal", port: 22, wantAddr: []string{"192.0.2.10"}},
		{name: "multicast never", roles: []string{"any", "world"}, host: "224.0.0.1", port: 22, wantErr: ErrAddressRefused},

		{name: "roles combine", roles: []string{"db", "web"}, host: "web1.prod.internal", port: 22, wantAddr: []string{"10.20.1.5"}},
		{name: "port zero", roles: []string{"any"}, host: "198.51.100.9", port: 0, wantErr: ErrBadTarget},
		{name: "port too big", roles: []string{"any"}, host: "198.51.100.9", port: 70000, wantErr: ErrBadTarget},
		{name: "bad host", roles: []string{"any"}, host: "a b", port: 22, wantErr: ErrBadTarget},
		{name: "empty host", roles: []string{"any"}, host: "", port: 22, wantErr: ErrBadTarget},
		{name: "numeric host", roles: []string{"any"}, host: "2130706433", port: 22, wantErr: ErrBadTarget},
		{name: "leading dash", roles: []string{"any"}, host: "-oProxyCommand", port: 22, wantErr: ErrBadTarget},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := p.Decide(context.Background(), tt.roles, tt.host, tt.port)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Decide = %+v, %v; want %v", d, err, tt.wantErr)
				}
				var den *Denial
				if !errors.As(err, &den) || den.Detail == "" || !strings.HasPrefix(den.UserMessage(), "postern: access to ") {
					t.Errorf("error %v is not a *Denial with detail and user message", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			var got []string
			for _, a := range d.Addrs {
				got = append(got, a.String())
			}
			if !slices.Equal(got, tt.wantAddr) {
				t.Errorf("addrs = %v, want %v", got, tt.wantAddr)
			}
			if tt.wantRule != "" && d.Rule != tt.wantRule {
				t.Errorf("rule = %q, want %q", d.Rule, tt.wantRule)
			}
			if d.Node != tt.wantNode {
				t.Errorf("node = %q, want %q", d.Node, tt.wantNode)
			}
		})
	}
}

func TestDenialMessages(t *testing.T) {
	p := testPolicy(t)
	_, err := p.Decide(context.Background(), []string{"web"}, "meta.prod.internal", 22)
	var d *Denial
	if !errors.As(err, &d) {
		t.Fatalf("err = %v", err)
	}
	if msg := d.UserMessage(); strings.Contains(msg, "169.254") || !strings.Contains(msg, "meta.prod.internal:22") {
		t.Errorf("user message %q must name the target and hide the address", msg)
	}
	if !strings.Contains(d.Detail, "169.254.169.254") || !strings.Contains(d.Detail, "metadata") {
		t.Errorf("detail %q must name the address and its class", d.Detail)
	}
	_, err = p.Decide(context.Background(), []string{"any"}, "bad\x1b[2Jhost", 22)
	if !errors.As(err, &d) || strings.ContainsRune(d.UserMessage(), '\x1b') {
		t.Errorf("control characters reach the client: %v", err)
	}
}

func TestLocalAddrsFailureRefuses(t *testing.T) {
	p := testPolicy(t)
	p.LocalAddrs = func() ([]netip.Addr, error) { return nil, errors.New("netlink down") }
	_, err := p.Decide(context.Background(), []string{"any"}, "198.51.100.9", 22)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "netlink down") {
		t.Fatalf("err = %v, want ErrUnavailable with the cause", err)
	}
}

func TestClassify(t *testing.T) {
	own := []netip.Addr{netip.MustParseAddr("10.0.0.1")}
	tests := []struct {
		addr  string
		class string
	}{
		{"127.0.0.1", "loopback"},
		{"127.255.0.1", "loopback"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"},
		{"0.0.0.0", "unspecified"},
		{"0.1.2.3", "unspecified"},
		{"::", "unspecified"},
		{"169.254.169.254", "metadata"},
		{"fd00:ec2::254", "metadata"},
		{"100.100.100.200", "metadata"},
		{"169.254.1.1", "link-local"},
		{"fe80::1", "link-local"},
		{"224.0.0.1", "multicast"},
		{"ff02::1", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"64:ff9b::7f00:1", "nat64 loopback"},
		{"::7f00:1", "ipv4-compatible"},
		{"10.0.0.1", "bastion"},
		{"10.0.0.2", ""},
		{"64:ff9b::a00:2", ""},
		{"2001:db8::1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			c, special := Classify(netip.MustParseAddr(tt.addr), own)
			if special != (tt.class != "") || c.Name != tt.class {
				t.Errorf("Classify(%s) = %q, %v; want %q", tt.addr, c.Name, special, tt.class)
			}
		})
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		host string
		port uint32
		want string
		ok   bool
	}{
		{"node1", 22, "node1:22", true},
		{"Node1.Example.COM.", 2222, "node1.example.com:2222", true},
		{"10.0.0.1", 22, "10.0.0.1:22", true},
		{"[fd00::1]", 22, "[fd00::1]:22", true},
		{"fd00::1", 22, "[fd00::1]:22", true},
		{"::ffff:10.0.0.1", 22, "10.0.0.1:22", true},
		{"under_score", 22, "under_score:22", true},
		{"", 22, "", false},
		{"node1", 0, "", false},
		{"node1", 65536, "", false},
		{"node1:22", 22, "", false},
		{"a..b", 22, "", false},
		{".", 22, "", false},
		{"-x", 22, "", false},
		{"x-", 22, "", false},
		{"[node1]", 22, "", false},
		{"fe80::1%lo", 22, "", false},
		{"127.1", 22, "", false},
		{strings.Repeat("a", 64) + ".com", 22, "", false},
		{strings.Repeat("a.", 127) + "aa", 22, "", false},
		{"héllo", 22, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			got, err := ParseTarget(tt.host, tt.port)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseTarget(%q, %d) = %v, %v; ok want %v", tt.host, tt.port, got, err, tt.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrBadTarget) {
					t.Errorf("err %v is not ErrBadTarget", err)
				}
				return
			}
			if got.String() != tt.want {
				t.Errorf("ParseTarget(%q) = %s, want %s", tt.host, got, tt.want)
			}
		})
	}
}

func TestReachable(t *testing.T) {
	p := testPolicy(t)
	var names []string
	for _, r := range p.Reachable([]string{"db", "net"}) {
		names = append(names, r.Node.Name+":"+r.Ports)
	}
	want := []string{"db1:22,5432", "db2:22,5432", "lab:22-2222"}
	if !slices.Equal(names, want) {
		t.Errorf("Reachable = %v, want %v", names, want)
	}
	if got := p.Reachable([]string{"nosuch"}); len(got) != 0 {
		t.Errorf("unknown role reaches %v", got)
	}
}

// TestDecisionRoles: a decision names every role whose own rules allow the
// hop, and only those (a role reaching other nodes has no say on this one).
func TestDecisionRoles(t *testing.T) {
	p := testPolicy(t)
	for _, tt := range []struct {
		roles []string
		host  string
		port  uint32
		want  []string
	}{
		{[]string{"web", "db"}, "web1.prod.internal", 22, []string{"web"}},
		{[]string{"db", "web", "any", "world"}, "web1.prod.internal", 22, []string{"web", "any", "world"}},
		{[]string{"web", "any"}, "web1.prod.internal", 8080, []string{"web", "any"}},
		{[]string{"web", "any"}, "web1.prod.internal", 2222, []string{"any"}},
		{[]string{"any", "world", "loop"}, "localnode", 2201, []string{"loop"}}, // loopback: only a prefix rule inside 127.0.0.0/8
		{[]string{"net", "db"}, "10.40.0.1", 22, []string{"net"}},
	} {
		d, err := p.Decide(context.Background(), tt.roles, tt.host, tt.port)
		if err != nil {
			t.Errorf("%v %s:%d: %v", tt.roles, tt.host, tt.port, err)
			continue
		}
		if !slices.Equal(d.Roles, tt.want) {
			t.Errorf("%v %s:%d: roles %v, want %v", tt.roles, tt.host, tt.port, d.Roles, tt.want)
		}
	}
}
