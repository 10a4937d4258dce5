package sshcert

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Extensions postern adds to user certificates. Values are comma-separated.
const (
	// ExtRoles names the roles that granted the certificate.
	ExtRoles = "roles@postern"
	// ExtGroups names the person's IdP groups at login.
	ExtGroups = "groups@postern"
	// ExtViaBastion marks a delegated certificate: the bastion that asked
	// for it, so a node's sshd log and the audit can tell it apart.
	ExtViaBastion = "via-bastion@postern"
)

// Critical options.
const (
	OptSourceAddress = "source-address"
	OptForceCommand  = "force-command"
)

// KnownCriticalOptions are the critical options postern's verifiers
// understand and enforce. Anything else is refused.
var KnownCriticalOptions = []string{OptSourceAddress}

// AgentCommentPrefix starts the comment of every key postern puts into
// ssh-agent, so logout and status can find them again.
const AgentCommentPrefix = "postern:"

// AgentComment is the agent comment for a person's key.
func AgentComment(keyID string) string { return AgentCommentPrefix + keyID }

// Errors returned by checks in this package.
var (
	ErrUnknownCriticalOption = errors.New("certificate has an unknown critical option")
	ErrSourceAddress         = errors.New("client address not allowed by source-address")
)

// Identity is what postern knows about the person behind a certificate.
type Identity struct {
	KeyID       string    // the person, e.g. alice@example.com
	Serial      uint64    // certificate serial
	Principals  []string  // Unix logins
	Roles       []string  // from ExtRoles
	Groups      []string  // from ExtGroups
	ValidAfter  time.Time // certificate start
	ValidBefore time.Time // certificate end
}

// IdentityOf reads the identity out of a user certificate.
func IdentityOf(c *ssh.Certificate) Identity {
	return Identity{
		KeyID:       c.KeyId,
		Serial:      c.Serial,
		Principals:  slices.Clone(c.ValidPrincipals),
		Roles:       SplitList(c.Permissions.Extensions[ExtRoles]),
		Groups:      SplitList(c.Permissions.Extensions[ExtGroups]),
		ValidAfter:  unixTime(c.ValidAfter),
		ValidBefore: unixTime(c.ValidBefore),
	}
}

func unixTime(v uint64) time.Time {
	if v == ssh.CertTimeInfinity || v > 1<<62 {
		return time.Unix(1<<62, 0).UTC()
	}
	return time.Unix(int64(v), 0).UTC()
}

// JoinList encodes a list for an extension value.
func JoinList(v []string) string { return strings.Join(v, ",") }

// SplitList decodes an extension value; empty gives nil.
func SplitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// CheckCriticalOptions refuses certificates with critical options this
// package does not know, and enforces source-address against remote.
// remote may be invalid when the caller has no address; then a
// source-address option refuses the certificate.
func CheckCriticalOptions(c *ssh.Certificate, remote netip.Addr) error {
	for name, val := range c.CriticalOptions {
		switch name {
		case OptSourceAddress:
			ok, err := SourceAddressAllows(val, remote)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%w: %s not in %s", ErrSourceAddress, remote, val)
			}
		default:
			return fmt.Errorf("%w: %q", ErrUnknownCriticalOption, name)
		}
	}
	return nil
}

// SourceAddressAllows reports whether addr matches a source-address value
// (comma-separated addresses and CIDRs).
func SourceAddressAllows(list string, addr netip.Addr) (bool, error) {
	addr = addr.Unmap()
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, err2 := netip.ParseAddr(s)
			if err2 != nil {
				return false, fmt.Errorf("parse source-address %q: %w", s, err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if addr.IsValid() && p.Contains(addr) {
			return true, nil
		}
	}
	return false, nil
}

// Fingerprint is the SHA256 fingerprint of a public key as ssh-keygen -l
// prints it.
func Fingerprint(k ssh.PublicKey) string { return ssh.FingerprintSHA256(k) }
