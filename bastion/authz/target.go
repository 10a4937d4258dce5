package authz

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// MaxHostLen is the longest host name a target may carry.
const MaxHostLen = 253

// Target is a parsed, normalised direct-tcpip destination.
type Target struct {
	// Host is the name asked for: lower case, without a trailing dot or
	// brackets. For an address it is the address's canonical form.
	Host string
	// Addr is set when Host is an IP address literal.
	Addr netip.Addr
	// Port is 1..65535.
	Port uint16
}

// String is host:port, with brackets around IPv6 addresses.
func (t Target) String() string {
	return net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port)))
}

// IsAddr reports whether the target names an address rather than a name.
func (t Target) IsAddr() bool { return t.Addr.IsValid() }

// ParseTarget validates the host and port of a direct-tcpip request. Host
// is an IP address (IPv6 optionally in brackets, no zone) or a DNS name of
// letters, digits, '-', '_' and '.'.
func ParseTarget(host string, port uint32) (Target, error) {
	if port == 0 || port > 65535 {
		return Target{}, fmt.Errorf("%w: port %d out of range", ErrBadTarget, port)
	}
	h := host
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Zone() != "" {
			return Target{}, fmt.Errorf("%w: address %q has a zone", ErrBadTarget, host)
		}
		a = a.Unmap()
		return Target{Host: a.String(), Addr: a, Port: uint16(port)}, nil
	}
	if h != host {
		return Target{}, fmt.Errorf("%w: bad address %q", ErrBadTarget, host)
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if err := checkHostName(h); err != nil {
		return Target{}, fmt.Errorf("%w: %v", ErrBadTarget, err)
	}
	return Target{Host: h, Port: uint16(port)}, nil
}

// checkHostName accepts lower-case DNS names: labels of [a-z0-9_-], 1..63
// long, not starting or ending with '-'.
func checkHostName(h string) error {
	if h == "" {
		return fmt.Errorf("empty host")
	}
	if len(h) > MaxHostLen {
		return fmt.Errorf("host name longer than %d bytes", MaxHostLen)
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("bad host name %q", h)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("bad host name %q", h)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("bad host name %q", h)
			}
		}
	}
	// All-numeric names such as "2130706433" or "127.1" are read as
	// addresses by some resolvers; refuse them rather than guess.
	if strings.Trim(h, "0123456789.") == "" {
		return fmt.Errorf("numeric host name %q is not an IP address", h)
	}
	return nil
}
