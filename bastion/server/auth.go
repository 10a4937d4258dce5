package server

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/sshcert"
)

// Authentication refusals, for errors.Is.
var (
	ErrNotCertificate = errors.New("plain public key: only user certificates are accepted")
	ErrHostCert       = errors.New("host certificate offered as a user certificate")
	ErrUnknownCA      = errors.New("certificate not signed by the user CA")
	ErrCertInvalid    = errors.New("certificate invalid")
	ErrNotYetValid    = errors.New("certificate not yet valid")
	ErrExpired        = errors.New("certificate expired")
	ErrNoIdentity     = errors.New("certificate has no key id or no principals")
)

// principal is the verified identity of a connection, kept in the
// connection's Permissions.ExtraData.
type principal struct {
	cert     *ssh.Certificate
	id       sshcert.Identity
	keyFP    string
	verified bool // set only by VerifiedPublicKeyCallback
}

type principalKey struct{}

// principalOf returns the verified identity of an authenticated
// connection, or nil.
func principalOf(perms *ssh.Permissions) *principal {
	if perms == nil || perms.ExtraData == nil {
		return nil
	}
	p, ok := perms.ExtraData[principalKey{}].(*principal)
	if !ok || !p.verified {
		return nil
	}
	return p
}

// authenticator checks user certificates.
type authenticator struct {
	cas  []ssh.PublicKey
	skew time.Duration
	now  func() time.Time
	// revoked checks the KRL in force; nil checks nothing.
	revoked func(ssh.PublicKey) error
	// forwarder checks host certificates of kube forwarders (kube.go);
	// nil refuses every host certificate.
	forwarder func(*ssh.Certificate, netip.Addr) (*ssh.Permissions, *ssh.Certificate, error)
}

// loadUserCAs reads one or more CA public keys in authorized_keys format.
func loadUserCAs(path string) ([]ssh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read user CA: %w", err)
	}
	var cas []ssh.PublicKey
	for rest := data; len(bytes.TrimSpace(rest)) > 0; {
		k, _, _, r, err := ssh.ParseAuthorizedKey(rest)
		if err != nil {
			return nil, fmt.Errorf("parse user CA %s: %w", path, err)
		}
		if _, ok := k.(*ssh.Certificate); ok {
			return nil, fmt.Errorf("parse user CA %s: a certificate is not a CA key", path)
		}
		cas = append(cas, k)
		rest = r
	}
	if len(cas) == 0 {
		return nil, fmt.Errorf("parse user CA %s: no keys", path)
	}
	return cas, nil
}

func (a *authenticator) isCA(k ssh.PublicKey) bool {
	if k == nil {
		return false
	}
	m := k.Marshal()
	for _, ca := range a.cas {
		if bytes.Equal(ca.Marshal(), m) {
			return true
		}
	}
	return false
}

// check decides whether key may authenticate a connection from remote. On
// success it returns fresh Permissions carrying the (not yet verified)
// principal; cert is set whenever key is a certificate, for audit.
func (a *authenticator) check(key ssh.PublicKey, remote netip.Addr) (perms *ssh.Permissions, cert *ssh.Certificate, err error) {
	cert, ok := key.(*ssh.Certificate)
	if !ok {
		return nil, nil, ErrNotCertificate
	}
	if cert.CertType == ssh.HostCert && a.forwarder != nil {
		return a.forwarder(cert, remote)
	}
	if cert.CertType != ssh.UserCert {
		return nil, cert, ErrHostCert
	}
	if !a.isCA(cert.SignatureKey) {
		return nil, cert, fmt.Errorf("%w (signed by %s)", ErrUnknownCA, ssh.FingerprintSHA256(cert.SignatureKey))
	}
	if err := sshcert.CheckCriticalOptions(cert, remote); err != nil {
		return nil, cert, err
	}
	if cert.KeyId == "" || len(cert.ValidPrincipals) == 0 {
		return nil, cert, ErrNoIdentity
	}
	now := a.now()
	after, before := int64(cert.ValidAfter), int64(cert.ValidBefore)
	if cert.ValidAfter > 1<<62 || now.Add(a.skew).Unix() < after {
		return nil, cert, fmt.Errorf("%w: valid after %s", ErrNotYetValid, time.Unix(min(after, 1<<40), 0).UTC().Format(time.RFC3339))
	}
	if cert.ValidBefore != ssh.CertTimeInfinity && (cert.ValidBefore > 1<<62 || now.Add(-a.skew).Unix() >= before) {
		return nil, cert, fmt.Errorf("%w at %s", ErrExpired, time.Unix(min(before, 1<<40), 0).UTC().Format(time.RFC3339))
	}
	// Validity is settled above (with skew); CheckCert verifies the CA's
	// signature and re-checks critical options, at a clock inside the window.
	checker := ssh.CertChecker{
		SupportedCriticalOptions: sshcert.KnownCriticalOptions,
		Clock:                    func() time.Time { return clamp(now, after, before) },
	}
	if err := checker.CheckCert(cert.ValidPrincipals[0], cert); err != nil {
		return nil, cert, fmt.Errorf("%w: %v", ErrCertInvalid, err)
	}
	// Only a certificate that is otherwise good is checked against the
	// KRL, so "revoked" in the audit log always names the real person.
	if a.revoked != nil {
		if err := a.revoked(cert); err != nil {
			return nil, cert, revocationBanner(err)
		}
	}
	p := &principal{cert: cert, id: sshcert.IdentityOf(cert), keyFP: ssh.FingerprintSHA256(cert.Key)}
	return &ssh.Permissions{
		CriticalOptions: copyMap(cert.CriticalOptions),
		Extensions:      copyMap(cert.Extensions),
		ExtraData:       map[any]any{principalKey{}: p},
	}, cert, nil
}

// clamp moves now into [after, before) so CertChecker agrees with the
// skew-tolerant window already checked.
func clamp(now time.Time, after, before int64) time.Time {
	u := now.Unix()
	if u < after {
		return time.Unix(after, 0)
	}
	if uint64(before) != ssh.CertTimeInfinity && u >= before {
		return time.Unix(before-1, 0)
	}
	return now
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// addrOf returns the IP of a TCP address (invalid for other kinds).
func addrOf(a net.Addr) netip.Addr {
	if a == nil {
		return netip.Addr{}
	}
	if t, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(t.IP); ok {
			return ip.Unmap()
		}
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
