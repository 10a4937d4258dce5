package krl

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"
)

func newSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newCert(t testing.TB, ca ssh.Signer, key ssh.PublicKey, keyID string, serial uint64) *ssh.Certificate {
	t.Helper()
	c := &ssh.Certificate{
		Key: key, Serial: serial, CertType: ssh.UserCert, KeyId: keyID,
		ValidPrincipals: []string{"ubuntu"}, ValidAfter: 0, ValidBefore: ssh.CertTimeInfinity,
		Permissions: ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
	}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return c
}

// cmpKRL compares KRLs by their encoding-relevant content.
var cmpKRL = cmp.Options{
	cmp.Comparer(func(a, b ssh.PublicKey) bool { return sameKey(a, b) }),
}

func TestCheck(t *testing.T) {
	ca, otherCA := newSigner(t), newSigner(t)
	alice, bob, carol, dave := newSigner(t).PublicKey(), newSigner(t).PublicKey(), newSigner(t).PublicKey(), newSigner(t).PublicKey()

	k := &KRL{Version: 3}
	k.RevokeSerial(ca.PublicKey(), 42)
	k.Certs = append(k.Certs, CertSection{CA: ca.PublicKey(), Serials: []SerialRange{{100, 200}}})
	k.RevokeKeyID(ca.PublicKey(), "bob@example.com")
	k.RevokeKey(carol)
	k.RevokeKeySHA256(dave)
	k.Certs = append(k.Certs, CertSection{CA: nil, KeyIDs: []string{"wild@example.com"}})

	for _, tc := range []struct {
		name string
		key  ssh.PublicKey
		want string // "" = not revoked, else part of the reason
	}{
		{"serial", newCert(t, ca, alice, "alice@example.com", 42), "serial 42"},
		{"serial in range", newCert(t, ca, alice, "alice@example.com", 150), "serial 150"},
		{"serial range end", newCert(t, ca, alice, "alice@example.com", 200), "serial 200"},
		{"serial past range", newCert(t, ca, alice, "alice@example.com", 201), ""},
		{"other serial", newCert(t, ca, alice, "alice@example.com", 43), ""},
		{"serial of another CA", newCert(t, otherCA, alice, "alice@example.com", 42), ""},
		{"serial 0 never by serial", newCert(t, ca, alice, "alice@example.com", 0), ""},
		{"key id", newCert(t, ca, bob, "bob@example.com", 7), `key ID "bob@example.com"`},
		{"key id of another CA", newCert(t, otherCA, bob, "bob@example.com", 7), ""},
		{"key id prefix only", newCert(t, ca, bob, "bob@example.co", 7), ""},
		{"wildcard key id", newCert(t, otherCA, bob, "wild@example.com", 7), `key ID "wild@example.com"`},
		{"plain key", carol, "by public key"},
		{"cert of revoked key", newCert(t, otherCA, carol, "carol@example.com", 9), "by public key"},
		{"sha256 key", dave, "SHA-256"},
		{"cert of sha256 key", newCert(t, ca, dave, "dave@example.com", 9), "SHA-256"},
		{"plain key not revoked", alice, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := k.Check(tc.key)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Check = %v, want not revoked", err)
				}
				return
			}
			if !errors.Is(err, ErrRevoked) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check = %v, want revoked %s", err, tc.want)
			}
		})
	}

	t.Run("revoked CA key", func(t *testing.T) {
		k := &KRL{}
		k.RevokeKey(otherCA.PublicKey())
		err := k.Check(newCert(t, otherCA, alice, "alice@example.com", 5))
		if !errors.Is(err, ErrRevoked) || !strings.Contains(err.Error(), "certificate authority") {
			t.Fatalf("Check = %v, want revoked through the CA", err)
		}
	})
}

func TestRoundTrip(t *testing.T) {
	ca, ca2 := newSigner(t), newSigner(t)
	k := &KRL{Version: 7, GeneratedDate: 1700000000, Comment: "postern generation 7"}
	for _, s := range []uint64{5, 3, 4, 9, 1 << 63, ^uint64(0), 11, 12} {
		k.RevokeSerial(ca.PublicKey(), s)
	}
	k.RevokeKeyID(ca.PublicKey(), "zed@example.com")
	k.RevokeKeyID(ca.PublicKey(), "alice@example.com")
	k.RevokeKeyID(ca.PublicKey(), "alice@example.com")
	k.RevokeSerial(ca2.PublicKey(), 1)
	k.RevokeKey(newSigner(t).PublicKey())
	k.RevokeKeySHA256(newSigner(t).PublicKey())
	k.SHA1 = append(k.SHA1, make([]byte, 20))

	b, err := k.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	want := k.Normalize()
	if d := cmp.Diff(want, got, cmpKRL); d != "" {
		t.Fatalf("round trip (-want +got):\n%s", d)
	}
	// 3,4,5 became one range; 11,12 stay list entries.
	var sec CertSection
	for _, s := range got.Certs {
		if sameKey(s.CA, ca.PublicKey()) {
			sec = s
		}
	}
	wantSerials := []SerialRange{{3, 5}, {9, 9}, {11, 12}, {1 << 63, 1 << 63}, {^uint64(0), ^uint64(0)}}
	if d := cmp.Diff(wantSerials, sec.Serials); d != "" {
		t.Fatalf("serials (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"alice@example.com", "zed@example.com"}, sec.KeyIDs); d != "" {
		t.Fatalf("key ids (-want +got):\n%s", d)
	}
	// Canonical: encoding the parsed KRL gives the same bytes.
	b2, err := got.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(b2) {
		t.Fatal("re-encoding a parsed KRL changed its bytes")
	}
}

func TestEmpty(t *testing.T) {
	k := &KRL{Version: 0, GeneratedDate: 1}
	b, err := k.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Empty() || got.Revoked(newSigner(t).PublicKey()) {
		t.Fatal("empty KRL revokes something")
	}
	if !strings.HasPrefix(string(b), "SSHKRL\n\x00") {
		t.Fatal("no magic")
	}
}

func TestValidate(t *testing.T) {
	ca := newSigner(t)
	key := newSigner(t).PublicKey()
	cert := newCert(t, ca, key, "x", 1)
	for _, tc := range []struct {
		name string
		k    *KRL
		want string
	}{
		{"serial 0", &KRL{Certs: []CertSection{{CA: ca.PublicKey(), Serials: []SerialRange{{0, 0}}}}}, "serial 0"},
		{"reversed range", &KRL{Certs: []CertSection{{CA: ca.PublicKey(), Serials: []SerialRange{{9, 3}}}}}, "reversed"},
		{"NUL in key id", &KRL{Certs: []CertSection{{CA: ca.PublicKey(), KeyIDs: []string{"a\x00b"}}}}, "NUL"},
		{"NUL in comment", &KRL{Comment: "a\x00"}, "NUL"},
		{"cert as key", &KRL{Keys: [][]byte{cert.Marshal()}}, "certificate"},
		{"garbage key", &KRL{Keys: [][]byte{[]byte("nope")}}, "revoked key"},
		{"short sha256", &KRL{SHA256: [][]byte{make([]byte, 31)}}, "SHA-256"},
		{"cert as CA", &KRL{Certs: []CertSection{{CA: cert, KeyIDs: []string{"x"}}}}, "CA key is a certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.k.Marshal()
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Marshal = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseRefusals(t *testing.T) {
	ca := newSigner(t)
	good := &KRL{}
	good.RevokeSerial(ca.PublicKey(), 1)
	b, err := good.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	hdr := len(magic) + 4 + 8*3 + 4 + 4 // empty reserved and comment
	section := func(typ byte, data []byte) []byte {
		return append(append([]byte(nil), b[:hdr]...), append([]byte{typ}, appendString(nil, data)...)...)
	}
	certSect := func(sub byte, data []byte) []byte {
		s := appendString(nil, ca.PublicKey().Marshal())
		s = appendString(s, nil)
		s = append(s, sub)
		s = appendString(s, data)
		return section(sectionCertificates, s)
	}
	u64 := func(vs ...uint64) []byte {
		var out []byte
		for _, v := range vs {
			out = append(out, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "magic"},
		{"ssh-keygen text spec", []byte("serial: 1\n"), "magic"},
		{"truncated header", b[:20], "header"},
		{"version 2", append(append([]byte(magic), 0, 0, 0, 2), b[len(magic)+4:]...), "format version"},
		{"truncated section", b[:len(b)-1], "section"},
		{"signature", section(sectionSignature, nil), "signed"},
		{"extension", section(0xff, nil), "unsupported"},
		{"sha1 length", section(sectionFingerprintSHA1, appendString(nil, make([]byte, 19))), "hash of 19"},
		{"serial 0 in list", certSect(certSerialList, u64(0)), "serial 0"},
		{"partial serial", certSect(certSerialList, []byte{1, 2, 3}), "truncated"},
		{"reversed range", certSect(certSerialRange, u64(5, 4)), "range"},
		{"range from 0", certSect(certSerialRange, u64(0, 4)), "range"},
		{"range trailing", certSect(certSerialRange, u64(1, 4, 5)), "trailing"},
		{"bitmap serial 0", certSect(certSerialBitmap, append(u64(0), appendString(nil, []byte{1})...)), "serial 0"},
		{"negative bitmap", certSect(certSerialBitmap, append(u64(1), appendString(nil, []byte{0x80})...)), "negative"},
		{"bitmap wraps", certSect(certSerialBitmap, append(u64(^uint64(0)), appendString(nil, []byte{2})...)), "wraps"},
		{"NUL key id", certSect(certKeyID, appendString(nil, []byte("a\x00"))), "NUL"},
		{"unknown subsection", certSect(0x39, nil), "unsupported"},
		{"bad CA", section(sectionCertificates, append(appendString(nil, []byte("junk")), appendString(nil, nil)...)), "CA key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.in)
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestBitmap(t *testing.T) {
	// Bits 0, 1, 2 and 9 of 0x0207 set: serials off, off+1, off+2, off+9.
	got, err := bitmapRanges(100, []byte{0x00, 0x02, 0x07})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]SerialRange{{100, 102}, {109, 109}}, got); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
}

func TestSHA256MatchesFingerprint(t *testing.T) {
	pub := newSigner(t).PublicKey()
	k := &KRL{}
	k.RevokeKeySHA256(pub)
	h := sha256.Sum256(pub.Marshal())
	if string(k.SHA256[0]) != string(h[:]) {
		t.Fatal("hash is not over the key blob")
	}
}
