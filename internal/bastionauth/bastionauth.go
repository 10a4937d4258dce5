package bastionauth

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/sshcert"
)

// Header carries the base64 SSH signature of the body.
const Header = "X-Postern-Signature"

// MaxSkew is how far a request's timestamp may be from the signer's clock.
const MaxSkew = time.Minute

// Errors.
var (
	ErrNotBastion = errors.New("not an authenticated bastion")
	ErrReplay     = errors.New("request replayed or out of date")
)

// Envelope is embedded in every bastion request.
type Envelope struct {
	// BastionCert is the bastion's host certificate (authorized_keys line).
	BastionCert string `json:"bastion_cert"`
	Timestamp   int64  `json:"timestamp"`
	Nonce       string `json:"nonce"`
}

// NewEnvelope stamps a request with the certificate, now and a nonce.
func NewEnvelope(cert *ssh.Certificate, now time.Time) Envelope {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return Envelope{
		BastionCert: string(bytes.TrimSpace(ssh.MarshalAuthorizedKey(cert))),
		Timestamp:   now.Unix(),
		Nonce:       base64.RawURLEncoding.EncodeToString(b),
	}
}

// Sign returns the header value for body.
func Sign(s ssh.Signer, body []byte) (string, error) {
	sig, err := s.Sign(rand.Reader, body)
	if err != nil {
		return "", fmt.Errorf("sign request: %w", err)
	}
	return base64.StdEncoding.EncodeToString(ssh.Marshal(sig)), nil
}

// Verifier checks bastion requests.
type Verifier struct {
	HostCA     func() []ssh.PublicKey
	Principals func() []string
	Now        func() time.Time
	// Sigs, when set, remembers host certificate signatures that verified
	// (a bastion sends the same certificate with every request); every
	// other check of the certificate still runs on every request, and the
	// request's own signature is always verified.
	Sigs *sshcert.SigCache

	// Nonces seen in the current and the previous window of 2*MaxSkew: a
	// request older than that is refused by its timestamp, so two windows
	// cover every nonce that could still be replayed, and rotating them
	// keeps the check O(1) whatever the load.
	mu        sync.Mutex
	cur, prev map[string]struct{}
	rotated   time.Time
}

// Verify checks env and the signature header over body and returns the
// bastion's principal (its host certificate's first matching name).
func (v *Verifier) Verify(env Envelope, body []byte, header string) (string, error) {
	now := v.Now()
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(env.BastionCert))
	if err != nil {
		return "", fmt.Errorf("%w: bad certificate: %v", ErrNotBastion, err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok || cert.CertType != ssh.HostCert {
		return "", fmt.Errorf("%w: not a host certificate", ErrNotBastion)
	}
	trusted := false
	for _, ca := range v.HostCA() {
		if bytes.Equal(ca.Marshal(), cert.SignatureKey.Marshal()) {
			trusted = true
		}
	}
	if !trusted {
		return "", fmt.Errorf("%w: certificate not from the host CA", ErrNotBastion)
	}
	name := ""
	for _, p := range cert.ValidPrincipals {
		if slices.Contains(v.Principals(), p) {
			name = p
			break
		}
	}
	if name == "" {
		return "", fmt.Errorf("%w: certificate names no configured bastion (%v)", ErrNotBastion, cert.ValidPrincipals)
	}
	checker := ssh.CertChecker{Clock: func() time.Time { return now }}
	if err := v.Sigs.CheckCert(&checker, name, cert); err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotBastion, err)
	}
	raw, err := base64.StdEncoding.DecodeString(header)
	if err != nil {
		return "", fmt.Errorf("%w: bad signature encoding", ErrNotBastion)
	}
	var sig ssh.Signature
	if err := ssh.Unmarshal(raw, &sig); err != nil {
		return "", fmt.Errorf("%w: bad signature", ErrNotBastion)
	}
	if err := cert.Key.Verify(body, &sig); err != nil {
		return "", fmt.Errorf("%w: signature does not verify", ErrNotBastion)
	}
	ts := time.Unix(env.Timestamp, 0)
	if ts.Before(now.Add(-MaxSkew)) || ts.After(now.Add(MaxSkew)) || len(env.Nonce) < 16 {
		return "", ErrReplay
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cur == nil || now.Sub(v.rotated) >= 2*MaxSkew {
		v.prev, v.cur, v.rotated = v.cur, map[string]struct{}{}, now
	}
	if _, dup := v.cur[env.Nonce]; dup {
		return "", ErrReplay
	}
	if _, dup := v.prev[env.Nonce]; dup {
		return "", ErrReplay
	}
	v.cur[env.Nonce] = struct{}{}
	return name, nil
}
