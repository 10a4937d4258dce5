package ca

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestGenerateAndSign(t *testing.T) {
	for _, kt := range []string{KeyEd25519, KeyECDSA, KeyRSA} {
		t.Run(kt, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ca")
			if err := Generate(path, kt, "test-ca"); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Fatalf("mode = %v, want 0600", fi.Mode().Perm())
			}
			if err := Generate(path, kt, "again"); !errors.Is(err, ErrExists) {
				t.Fatalf("second Generate: %v, want ErrExists", err)
			}
			a, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			now := time.Unix(1_800_000_000, 0)
			a.Now = func() time.Time { return now }
			pub, _, _ := ed25519.GenerateKey(rand.Reader)
			k, _ := ssh.NewPublicKey(pub)
			c, err := a.SignUser(UserCert{Key: k, KeyID: "alice@example.com", Principals: []string{"ubuntu"}, TTL: time.Hour,
				Extensions: map[string]string{"permit-pty": ""}})
			if err != nil {
				t.Fatal(err)
			}
			if c.ValidAfter != uint64(now.Add(-time.Minute).Unix()) || c.ValidBefore != uint64(now.Add(time.Hour).Unix()) {
				t.Errorf("validity %d..%d", c.ValidAfter, c.ValidBefore)
			}
			if c.Serial == 0 {
				t.Error("zero serial")
			}
			if kt == KeyRSA && c.Signature.Format != ssh.KeyAlgoRSASHA512 {
				t.Errorf("rsa signature format %q", c.Signature.Format)
			}
			checker := ssh.CertChecker{
				IsUserAuthority: func(auth ssh.PublicKey) bool { return string(auth.Marshal()) == string(a.PublicKey().Marshal()) },
				Clock:           func() time.Time { return now },
			}
			if _, err := checker.Authenticate(connMeta("ubuntu"), c); err != nil {
				t.Fatalf("certificate does not verify: %v", err)
			}
			if _, err := checker.Authenticate(connMeta("root"), c); err == nil {
				t.Fatal("certificate verified for a principal it does not name")
			}
		})
	}
}

func TestSignRefusals(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca")
	if err := Generate(path, "", ""); err != nil {
		t.Fatal(err)
	}
	a, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	k, _ := ssh.NewPublicKey(pub)
	cert, _ := a.SignHost(k, []string{"node1"}, time.Hour)
	for name, u := range map[string]UserCert{
		"no key id":     {Key: k, Principals: []string{"a"}, TTL: time.Hour},
		"no principals": {Key: k, KeyID: "a", TTL: time.Hour},
		"zero ttl":      {Key: k, KeyID: "a", Principals: []string{"a"}},
		"cert as key":   {Key: cert, KeyID: "a", Principals: []string{"a"}, TTL: time.Hour},
		"nil key":       {KeyID: "a", Principals: []string{"a"}, TTL: time.Hour},
	} {
		if _, err := a.SignUser(u); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
	if err := Generate(filepath.Join(t.TempDir(), "x"), "dsa", ""); err == nil {
		t.Error("dsa accepted")
	}
}

func TestSerialsUnique(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca")
	if err := Generate(path, "", ""); err != nil {
		t.Fatal(err)
	}
	a, _ := Load(path)
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	k, _ := ssh.NewPublicKey(pub)
	seen := map[uint64]bool{}
	for range 1000 {
		c, err := a.SignHost(k, []string{"h"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if seen[c.Serial] {
			t.Fatalf("serial %d repeated", c.Serial)
		}
		seen[c.Serial] = true
	}
}

type meta string

func (m meta) User() string          { return string(m) }
func (m meta) SessionID() []byte     { return nil }
func (m meta) ClientVersion() []byte { return nil }
func (m meta) ServerVersion() []byte { return nil }
func (m meta) RemoteAddr() net.Addr  { return nil }
func (m meta) LocalAddr() net.Addr   { return nil }

func connMeta(user string) ssh.ConnMetadata { return meta(user) }
