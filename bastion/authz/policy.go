package authz

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/postern-dev/postern/internal/config"
)

// Policy decisions, for errors.Is.
var (
	// ErrBadTarget: the request's host or port is malformed.
	ErrBadTarget = errors.New("invalid target")
	// ErrNotAllowed: no rule of the person's roles matches the target.
	ErrNotAllowed = errors.New("not allowed by your roles")
	// ErrAddressRefused: a rule matched the name, but it resolves to an
	// address the bastion refuses (loopback, metadata, its own, …).
	ErrAddressRefused = errors.New("resolves to a refused address")
	// ErrResolve: the name could not be resolved.
	ErrResolve = errors.New("cannot resolve host")
	// ErrUnavailable: the bastion could not check the hop (it could not
	// list its own addresses, e.g. out of file descriptors); refused, since
	// it cannot tell whether the target is itself.
	ErrUnavailable = errors.New("the bastion cannot check this hop right now, try again")
)

// Denial is the error Decide returns for a refused hop. Its Error is the
// detail for logs and audit; UserMessage is what the client is told.
type Denial struct {
	Err    error  // one of the Err* sentinels
	Target string // host:port as asked for
	Detail string // for the audit log only
}

func (d *Denial) Error() string { return d.Err.Error() + ": " + d.Detail }
func (d *Denial) Unwrap() error { return d.Err }

// UserMessage is the short reason sent to the client.
func (d *Denial) UserMessage() string {
	return fmt.Sprintf("postern: access to %s denied: %s", d.Target, d.Err)
}

// Resolver looks up the addresses of a host name; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Node is an inventory entry with its name lower-cased.
type Node struct {
	Name   string
	Addr   string
	Labels map[string]string
}

// Rule is a parsed node rule and the role it comes from.
type Rule struct {
	Role string
	config.NodeRule
}

// Policy holds the roles' node rules and the inventory. It is safe for
// concurrent use once built.
type Policy struct {
	roles     map[string][]Rule
	inventory []Node
	// Resolver resolves names that are not in the inventory. Default
	// net.DefaultResolver.
	Resolver Resolver
	// LocalAddrs returns the bastion's own addresses, called on every
	// decision. Default: the addresses of all local interfaces.
	LocalAddrs func() ([]netip.Addr, error)
}

// New builds a policy from the configuration's roles and inventory.
func New(cfg *config.Config) (*Policy, error) {
	p := &Policy{roles: map[string][]Rule{}, Resolver: net.DefaultResolver, LocalAddrs: InterfaceAddrs}
	for _, r := range cfg.Roles {
		rules := []Rule{}
		for _, s := range r.Nodes {
			nr, err := config.ParseNodeRule(s)
			if err != nil {
				return nil, fmt.Errorf("role %s: %w", r.Name, err)
			}
			rules = append(rules, Rule{Role: r.Name, NodeRule: nr})
		}
		p.roles[r.Name] = rules
	}
	for _, n := range cfg.Bastion.Nodes {
		p.inventory = append(p.inventory, Node{Name: strings.ToLower(strings.TrimSuffix(n.Name, ".")), Addr: n.Addr, Labels: n.Labels})
	}
	return p, nil
}

// InterfaceAddrs returns the addresses of every local network interface.
func InterfaceAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list interface addresses: %w", err)
	}
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}

// Decision is an allowed hop.
type Decision struct {
	Target Target
	// Node is the inventory node the target named, if any.
	Node string
	// Addrs are the checked addresses to dial, in order. Dial only these.
	Addrs []netip.Addr
	// Rule is the rule that allowed the first address ("role: rule").
	Rule string
	// Roles are all the person's roles whose own rules allow the first
	// address (in the order asked): the roles under which the hop runs,
	// e.g. for their recording settings.
	Roles []string
}

// Rules returns the rules of the named roles that exist in the
// configuration, and the names that do not.
func (p *Policy) Rules(roles []string) (rules []Rule, unknown []string) {
	for _, name := range roles {
		rs, ok := p.roles[name]
		if !ok {
			unknown = append(unknown, name)
			continue
		}
		rules = append(rules, rs...)
	}
	return rules, unknown
}

// Decide authorises a hop to host:port for a person holding roles. On
// refusal the error is a *Denial.
func (p *Policy) Decide(ctx context.Context, roles []string, host string, port uint32) (Decision, error) {
	deny := func(sentinel error, target, format string, args ...any) (Decision, error) {
		return Decision{}, &Denial{Err: sentinel, Target: target, Detail: fmt.Sprintf(format, args...)}
	}
	asked := net.JoinHostPort(host, fmt.Sprint(port))
	t, err := ParseTarget(host, port)
	if err != nil {
		return deny(ErrBadTarget, sanitize(asked), "%v", err)
	}
	rules, unknown := p.Rules(roles)
	if len(rules) == 0 {
		return deny(ErrNotAllowed, t.String(), "no node rules for roles %v (not configured: %v)", roles, unknown)
	}
	node, inInventory := p.lookup(t)
	var byName *Rule   // a glob or label rule matching the name and port
	var portOK []*Rule // prefix rules allowing the port
	for i := range rules {
		r := &rules[i]
		if !r.AllowsPort(t.Port) {
			continue
		}
		switch r.Kind {
		case config.RulePrefix:
			portOK = append(portOK, r)
		case config.RuleGlob:
			if byName == nil && (globMatch(r.Glob, t.Host) || inInventory && globMatch(r.Glob, node.Name)) {
				byName = r
			}
		case config.RuleLabel:
			if byName == nil && inInventory && node.Labels[r.LabelKey] == r.LabelValue {
				byName = r
			}
		}
	}
	if byName == nil && len(portOK) == 0 {
		return deny(ErrNotAllowed, t.String(), "no rule of roles %v matches %s", roles, t)
	}

	addrs, err := p.resolve(ctx, t, node, inInventory)
	if err != nil {
		return deny(ErrResolve, t.String(), "%v", err)
	}
	own, err := p.LocalAddrs()
	if err != nil {
		// Without the list the bastion cannot tell its own addresses:
		// refuse rather than risk them.
		return deny(ErrUnavailable, t.String(), "list the bastion's own addresses: %v", err)
	}
	d := Decision{Target: t, Node: node.Name}
	for _, a := range addrs {
		class, special := Classify(a, own)
		var allowedBy *Rule
		inPrefix := false
		for _, r := range portOK {
			if !r.Prefix.Contains(a) {
				continue
			}
			inPrefix = true
			if !special || class.namedBy(r.Prefix) {
				allowedBy = r
				break
			}
		}
		if allowedBy == nil && byName != nil && !special {
			allowedBy = byName
		}
		switch {
		case allowedBy != nil:
		case special && (byName != nil || inPrefix):
			if class.Never {
				return deny(ErrAddressRefused, t.String(), "%s resolves to %s, a %s address, which no rule can allow", t.Host, a, class.Name)
			}
			return deny(ErrAddressRefused, t.String(), "%s resolves to %s, a %s address; only a prefix rule inside %s names it", t.Host, a, class.Name, class.Prefix)
		default:
			return deny(ErrNotAllowed, t.String(), "no rule of roles %v matches %s (address %s)", roles, t, a)
		}
		if d.Rule == "" {
			d.Rule = allowedBy.Role + ": " + allowedBy.Raw
			d.Roles = allowingRoles(rules, t.Port, byNameMatch(t, node, inInventory), a, class, special)
		}
		d.Addrs = append(d.Addrs, a)
	}
	return d, nil
}

// byNameMatch reports whether a glob or label rule names the target.
func byNameMatch(t Target, node Node, inInventory bool) func(r *Rule) bool {
	return func(r *Rule) bool {
		switch r.Kind {
		case config.RuleGlob:
			return globMatch(r.Glob, t.Host) || inInventory && globMatch(r.Glob, node.Name)
		case config.RuleLabel:
			return inInventory && node.Labels[r.LabelKey] == r.LabelValue
		}
		return false
	}
}

// allowingRoles lists the roles, in rule order, with a rule that allows
// port and address a of the target on its own: as Decide does, a special address
// only through a prefix rule inside its class.
func allowingRoles(rules []Rule, port uint16, named func(*Rule) bool, a netip.Addr, class Class, special bool) []string {
	var out []string
	for i := range rules {
		r := &rules[i]
		if slices.Contains(out, r.Role) || !r.AllowsPort(port) {
			continue
		}
		ok := false
		switch r.Kind {
		case config.RulePrefix:
			ok = r.Prefix.Contains(a) && (!special || class.namedBy(r.Prefix))
		default:
			ok = !special && named(r)
		}
		if ok {
			out = append(out, r.Role)
		}
	}
	return out
}

// lookup finds the inventory node a target names: by name, or by address
// when the target is an address literal.
func (p *Policy) lookup(t Target) (Node, bool) {
	for _, n := range p.inventory {
		if n.Name == t.Host {
			return n, true
		}
	}
	if t.IsAddr() {
		for _, n := range p.inventory {
			if a, err := netip.ParseAddr(n.Addr); err == nil && a.Unmap() == t.Addr {
				return n, true
			}
		}
	}
	return Node{}, false
}

// resolve returns the target's addresses, deduplicated, unmapped.
func (p *Policy) resolve(ctx context.Context, t Target, n Node, inInventory bool) ([]netip.Addr, error) {
	if t.IsAddr() {
		return []netip.Addr{t.Addr}, nil
	}
	name := t.Host
	if inInventory {
		if a, err := netip.ParseAddr(n.Addr); err == nil {
			return []netip.Addr{a.Unmap()}, nil
		}
		name = n.Addr
	}
	as, err := p.Resolver.LookupNetIP(ctx, "ip", name)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", name, err)
	}
	var out []netip.Addr
	for _, a := range as {
		a = a.Unmap()
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("resolve %s: no addresses", name)
	}
	return out, nil
}

func globMatch(glob, name string) bool {
	ok, err := path.Match(glob, name)
	return err == nil && ok
}

// sanitize makes an untrusted string safe to show and log.
func sanitize(s string) string {
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	q := fmt.Sprintf("%q", s)
	return q[1 : len(q)-1]
}

// Reach is one inventory node as seen by a person.
type Reach struct {
	Node   Node
	Ports  string // "22", "22,2222", "8000-8999"
	ByRule string // first rule that allows it
}

// Reachable lists the inventory nodes the roles allow, by name or by the
// node's literal address, without resolving anything. Address policy is
// applied at connect time.
func (p *Policy) Reachable(roles []string) []Reach {
	rules, _ := p.Rules(roles)
	var out []Reach
	for _, n := range p.inventory {
		var ports []string
		first := ""
		addr, addrErr := netip.ParseAddr(n.Addr)
		for _, r := range rules {
			ok := false
			switch r.Kind {
			case config.RuleGlob:
				ok = globMatch(r.Glob, n.Name)
			case config.RuleLabel:
				ok = n.Labels[r.LabelKey] == r.LabelValue
			case config.RulePrefix:
				ok = addrErr == nil && r.Prefix.Contains(addr.Unmap())
			}
			if !ok {
				continue
			}
			if first == "" {
				first = r.Role + ": " + r.Raw
			}
			pr := fmt.Sprint(r.PortLow)
			if r.PortHigh != r.PortLow {
				pr += fmt.Sprintf("-%d", r.PortHigh)
			}
			if !slices.Contains(ports, pr) {
				ports = append(ports, pr)
			}
		}
		if first != "" {
			out = append(out, Reach{Node: n, Ports: strings.Join(ports, ","), ByRule: first})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node.Name < out[j].Node.Name })
	return out
}
