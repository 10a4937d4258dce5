package config

import (
	"fmt"
	"net/netip"
	"path"
	"strconv"
	"strings"
)

// NodeRuleKind says how a node rule names its targets.
type NodeRuleKind int

const (
	// RuleGlob matches the host name the client asked for ("*.prod.internal").
	RuleGlob NodeRuleKind = iota + 1
	// RulePrefix matches an address or CIDR ("10.20.0.0/16", "10.0.0.5").
	RulePrefix
	// RuleLabel matches inventory nodes carrying a label ("label:env=prod").
	RuleLabel
)

// NodeRule is one parsed entry of a role's nodes list.
type NodeRule struct {
	Raw        string
	Kind       NodeRuleKind
	Glob       string       // RuleGlob
	Prefix     netip.Prefix // RulePrefix
	LabelKey   string       // RuleLabel
	LabelValue string       // RuleLabel
	PortLow    uint16
	PortHigh   uint16
}

// ParseNodeRule parses "HOST[:PORTS]" where HOST is a glob, an address, a
// CIDR, "[IPv6 or IPv6 CIDR]" or "label:KEY=VALUE", and PORTS is "N" or
// "LOW-HIGH". Without PORTS the rule allows port 22 only.
func ParseNodeRule(s string) (NodeRule, error) {
	r := NodeRule{Raw: s, PortLow: 22, PortHigh: 22}
	if s == "" {
		return r, fmt.Errorf("empty node rule")
	}
	host, ports := s, ""
	switch {
	case strings.HasPrefix(s, "label:"):
		rest := strings.TrimPrefix(s, "label:")
		if i := strings.LastIndexByte(rest, ':'); i >= 0 {
			rest, ports = rest[:i], rest[i+1:]
		}
		k, v, ok := strings.Cut(rest, "=")
		if !ok || k == "" || v == "" {
			return r, fmt.Errorf("node rule %q: want label:KEY=VALUE", s)
		}
		r.Kind, r.LabelKey, r.LabelValue = RuleLabel, k, v
		host = ""
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return r, fmt.Errorf("node rule %q: missing ]", s)
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return r, fmt.Errorf("node rule %q: unexpected %q after ]", s, rest)
			}
			ports = rest[1:]
		}
	case strings.Count(s, ":") == 1:
		i := strings.IndexByte(s, ':')
		host, ports = s[:i], s[i+1:]
	}
	if host != "" || r.Kind != RuleLabel {
		if err := r.parseHost(host); err != nil {
			return r, fmt.Errorf("node rule %q: %w", s, err)
		}
	}
	if ports != "" || strings.HasSuffix(s, ":") {
		lo, hi, err := parsePorts(ports)
		if err != nil {
			return r, fmt.Errorf("node rule %q: %w", s, err)
		}
		r.PortLow, r.PortHigh = lo, hi
	}
	return r, nil
}

func (r *NodeRule) parseHost(h string) error {
	if h == "" {
		return fmt.Errorf("empty host")
	}
	if strings.Contains(h, "/") {
		p, err := netip.ParsePrefix(h)
		if err != nil {
			return fmt.Errorf("bad CIDR %q", h)
		}
		r.Kind, r.Prefix = RulePrefix, p.Masked()
		return nil
	}
	if a, err := netip.ParseAddr(h); err == nil {
		r.Kind, r.Prefix = RulePrefix, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		return nil
	}
	if strings.ContainsAny(h, " \t/\\[]") {
		return fmt.Errorf("bad host glob %q", h)
	}
	if _, err := path.Match(h, "x"); err != nil {
		return fmt.Errorf("bad host glob %q", h)
	}
	r.Kind, r.Glob = RuleGlob, strings.ToLower(h)
	return nil
}

func parsePorts(s string) (uint16, uint16, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	l, err := strconv.ParseUint(lo, 10, 16)
	if err != nil || l == 0 {
		return 0, 0, fmt.Errorf("bad port %q", s)
	}
	if !isRange {
		return uint16(l), uint16(l), nil
	}
	h, err := strconv.ParseUint(hi, 10, 16)
	if err != nil || h < l {
		return 0, 0, fmt.Errorf("bad port range %q", s)
	}
	return uint16(l), uint16(h), nil
}

// AllowsPort reports whether port is within the rule's range.
func (r NodeRule) AllowsPort(port uint16) bool { return port >= r.PortLow && port <= r.PortHigh }
