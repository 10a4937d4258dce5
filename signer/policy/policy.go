package policy

import (
	"errors"
	"slices"
	"sort"
	"time"

	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/sshcert"
)

// ErrNoRole means no role grants the person anything.
var ErrNoRole = errors.New("no role matches the person's groups")

// Grant is what a certificate may carry.
type Grant struct {
	Roles           []string
	Logins          []string
	MaxTTL          time.Duration
	Extensions      map[string]string // permit-* and postern's own
	CriticalOptions map[string]string
}

// Decide matches groups against roles. groups come from the IdP's token.
func Decide(roles []config.Role, groups []string) (Grant, error) {
	g := Grant{Extensions: map[string]string{}, CriticalOptions: map[string]string{}}
	var pins []string
	for _, r := range roles {
		if !intersects(r.Groups, groups) {
			continue
		}
		g.Roles = append(g.Roles, r.Name)
		g.Logins = append(g.Logins, r.Logins...)
		if g.MaxTTL == 0 || r.MaxTTL.Duration < g.MaxTTL {
			g.MaxTTL = r.MaxTTL.Duration
		}
		for _, e := range r.Extensions {
			g.Extensions[e] = ""
		}
		pins = append(pins, r.SourceAddresses...)
	}
	g.Logins = uniqSorted(g.Logins)
	if len(g.Roles) == 0 || len(g.Logins) == 0 {
		return Grant{}, ErrNoRole
	}
	g.Extensions[sshcert.ExtRoles] = sshcert.JoinList(g.Roles)
	g.Extensions[sshcert.ExtGroups] = sshcert.JoinList(uniqSorted(slices.Clone(groups)))
	if len(pins) > 0 {
		g.CriticalOptions[sshcert.OptSourceAddress] = sshcert.JoinList(uniqSorted(pins))
	}
	return g, nil
}

// TTL returns the lifetime for a requested TTL: the grant's maximum when
// nothing (or too much) was asked for.
func (g Grant) TTL(requested time.Duration) time.Duration {
	if requested <= 0 || requested > g.MaxTTL {
		return g.MaxTTL
	}
	return requested
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

func uniqSorted(v []string) []string {
	sort.Strings(v)
	return slices.Compact(v)
}
