package config

import (
	"net/netip"
	"strings"
)

// validateOps checks the operating keys: metrics listeners and the PROXY
// protocol.
func (c *Config) validateOps(add func(error)) {
	if a := c.Signer.MetricsListen; a != "" {
		if err := checkHostPort(a); err != nil {
			add(c.errAt("signer.metrics_listen", "%v", err))
		}
	}
	if a := c.Kube.Forwarder.MetricsListen; a != "" {
		if err := checkHostPort(a); err != nil {
			add(c.errAt("kube.forwarder.metrics_listen", "%v", err))
		}
	}
	switch c.Signer.RevocationStore {
	case "file":
	case "s3":
		if c.Storage.S3Bucket == "" {
			add(c.errAt("signer.revocation_store", "\"s3\" needs storage.s3_bucket"))
		}
	default:
		add(c.errAt("signer.revocation_store", "must be \"file\" or \"s3\", got %q", c.Signer.RevocationStore))
	}
	b := c.Bastion
	if a := b.MetricsListen; a != "" {
		if err := checkHostPort(a); err != nil {
			add(c.errAt("bastion.metrics_listen", "%v", err))
		}
	}
	if b.ProxyProtocol && len(b.ProxyFrom) == 0 {
		add(c.errAt("bastion.proxy_from", "required when proxy_protocol is true: list the load balancers' addresses"))
	}
	if !b.ProxyProtocol && len(b.ProxyFrom) > 0 {
		add(c.errAt("bastion.proxy_from", "set but proxy_protocol is false"))
	}
	if _, err := ParsePrefixes(b.ProxyFrom); err != nil {
		add(c.errAt("bastion.proxy_from", "%v", err))
	}
	if !b.ProxyProtocol && len(b.DirectFrom) > 0 {
		add(c.errAt("bastion.direct_from", "set but proxy_protocol is false (without it every address connects directly)"))
	}
	if _, err := ParsePrefixes(b.DirectFrom); err != nil {
		add(c.errAt("bastion.direct_from", "%v", err))
	}
}

// ParsePrefixes parses addresses and CIDRs ("10.0.0.0/8", "192.0.2.7",
// "::1"); a bare address is a single-address prefix.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var bad []string
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		bad = append(bad, s)
	}
	if len(bad) > 0 {
		return nil, &prefixError{bad}
	}
	return out, nil
}

type prefixError struct{ bad []string }

func (e *prefixError) Error() string {
	return "not an address or CIDR: " + strings.Join(e.bad, ", ")
}
