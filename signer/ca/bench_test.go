package ca

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Signing alone is the ceiling of the signer's certificates per second
// (issue 7: about 20,000/s per core with Ed25519).

func benchAuthority(b *testing.B, kt string) *Authority {
	b.Helper()
	var raw any
	switch kt {
	case KeyEd25519:
		_, raw, _ = ed25519.GenerateKey(rand.Reader)
	case KeyECDSA:
		raw, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	s, err := ssh.NewSignerFromKey(raw)
	if err != nil {
		b.Fatal(err)
	}
	a, err := New(s)
	if err != nil {
		b.Fatal(err)
	}
	return a
}

func benchUserKey(b *testing.B) ssh.PublicKey {
	b.Helper()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		b.Fatal(err)
	}
	return k
}

func BenchmarkSignUser(b *testing.B) {
	for _, kt := range []string{KeyEd25519, KeyECDSA} {
		b.Run(kt, func(b *testing.B) {
			a, key := benchAuthority(b, kt), benchUserKey(b)
			u := UserCert{
				Key: key, KeyID: "alice@example.com", Principals: []string{"alice", "deploy"}, TTL: 8 * time.Hour,
				Extensions: map[string]string{"permit-pty": "", "permit-port-forwarding": "", "roles@postern": "ops,dev", "groups@postern": "infra,dev"},
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := a.SignUser(u); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func BenchmarkSignHost(b *testing.B) {
	a, key := benchAuthority(b, KeyEd25519), benchUserKey(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.SignHost(key, []string{"node1.prod.internal", "10.0.3.5"}, 24*time.Hour); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
