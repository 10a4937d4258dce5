package sshcert

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Verification is what the bastion (and the signer, for delegated
// certificates) does for every connection: parse the certificate off the
// wire, check the CA's signature, validity and critical options.

func benchCert(b *testing.B) (ssh.PublicKey, []byte) {
	b.Helper()
	_, caPriv, _ := ed25519.GenerateKey(rand.Reader)
	ca, err := ssh.NewSignerFromKey(caPriv)
	if err != nil {
		b.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	k, _ := ssh.NewPublicKey(pub)
	now := time.Now()
	c := &ssh.Certificate{
		Key: k, Serial: 42, CertType: ssh.UserCert, KeyId: "alice@example.com", ValidPrincipals: []string{"alice"},
		ValidAfter: uint64(now.Add(-time.Minute).Unix()), ValidBefore: uint64(now.Add(8 * time.Hour).Unix()),
		Permissions: ssh.Permissions{
			CriticalOptions: map[string]string{OptSourceAddress: "10.0.0.0/8"},
			Extensions:      map[string]string{"permit-pty": "", ExtRoles: "ops,dev", ExtGroups: "infra"},
		},
	}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		b.Fatal(err)
	}
	return ca.PublicKey(), c.Marshal()
}

func BenchmarkVerifyUserCert(b *testing.B) {
	caKey, wire := benchCert(b)
	caWire := caKey.Marshal()
	remote := netip.MustParseAddr("10.1.2.3")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		checker := ssh.CertChecker{SupportedCriticalOptions: KnownCriticalOptions}
		for pb.Next() {
			k, err := ssh.ParsePublicKey(wire)
			if err != nil {
				b.Error(err)
				return
			}
			c := k.(*ssh.Certificate)
			if !bytes.Equal(c.SignatureKey.Marshal(), caWire) {
				b.Error("wrong CA")
				return
			}
			if err := CheckCriticalOptions(c, remote); err != nil {
				b.Error(err)
				return
			}
			if err := checker.CheckCert("alice", c); err != nil {
				b.Error(err)
				return
			}
			_ = IdentityOf(c)
		}
	})
}

func BenchmarkIdentityOf(b *testing.B) {
	_, wire := benchCert(b)
	k, _ := ssh.ParsePublicKey(wire)
	c := k.(*ssh.Certificate)
	b.ReportAllocs()
	for b.Loop() {
		_ = IdentityOf(c)
	}
}
