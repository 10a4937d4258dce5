package krl

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"
)

// FuzzParse: Parse never panics, refuses with ErrFormat, and whatever it
// accepts and can re-encode round-trips to the same canonical bytes.
func FuzzParse(f *testing.F) {
	ca := newSigner(f)
	k := &KRL{Version: 1, Comment: "seed"}
	k.RevokeSerial(ca.PublicKey(), 5)
	k.Certs = append(k.Certs, CertSection{CA: ca.PublicKey(), Serials: []SerialRange{{10, 20}}, KeyIDs: []string{"a", "b"}})
	k.RevokeKey(newSigner(f).PublicKey())
	k.RevokeKeySHA256(newSigner(f).PublicKey())
	seed, err := k.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	empty, _ := (&KRL{}).Marshal()
	f.Add(empty)
	// A bitmap section, as ssh-keygen writes them.
	sub := binary.BigEndian.AppendUint64(nil, 100)
	sub = appendString(sub, []byte{0x05, 0xff})
	cs := appendString(nil, ca.PublicKey().Marshal())
	cs = appendString(cs, nil)
	cs = append(cs, certSerialBitmap)
	cs = appendString(cs, sub)
	f.Add(append(append([]byte(nil), empty...), append([]byte{sectionCertificates}, appendString(nil, cs)...)...))

	probe := newCert(f, ca, newSigner(f).PublicKey(), "a", 15)
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error does not wrap ErrFormat: %v", err)
			}
			return
		}
		_ = k.Check(probe)
		b, err := k.Marshal()
		if err != nil {
			return // e.g. explicit key blobs OpenSSH stores without parsing
		}
		k2, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse(Marshal(k)): %v", err)
		}
		b2, err := k2.Marshal()
		if err != nil {
			t.Fatalf("Marshal(Parse(Marshal(k))): %v", err)
		}
		if !bytes.Equal(b, b2) {
			t.Fatal("encoding is not canonical")
		}
	})
}

// FuzzMarshal builds KRLs from fuzzed serials, key IDs and a comment:
// Marshal refuses only what Validate names, Parse returns the normalized
// input, and Check agrees with a direct lookup.
func FuzzMarshal(f *testing.F) {
	f.Add(uint64(1), []byte{0, 0, 0, 0, 0, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0, 43}, "alice@example.com\nbob@example.com", "c", uint64(42))
	f.Add(uint64(0), []byte{}, "", "", uint64(0))
	f.Add(uint64(9), []byte{0, 0, 0, 0, 0, 0, 0, 0}, "x\x00y", "n\x00", uint64(7))
	f.Add(^uint64(0), bytes.Repeat([]byte{0xff}, 24), "\n\n", "", ^uint64(0))

	ca := ssh.Signer(nil)
	{
		priv := ed25519.NewKeyFromSeed(make([]byte, 32))
		s, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			f.Fatal(err)
		}
		ca = s
	}
	key := newSigner(f).PublicKey()
	f.Fuzz(func(t *testing.T, version uint64, serialBytes []byte, keyIDs, comment string, probe uint64) {
		k := &KRL{Version: version, GeneratedDate: version / 3, Comment: comment}
		for len(serialBytes) >= 8 {
			s := binary.BigEndian.Uint64(serialBytes)
			serialBytes = serialBytes[8:]
			if s%5 == 0 && s < ^uint64(0)-10 && s != 0 {
				k.Certs = append(k.Certs, CertSection{CA: ca.PublicKey(), Serials: []SerialRange{{s, s + s%7}}})
			} else {
				k.RevokeSerial(ca.PublicKey(), s)
			}
		}
		var ids []string
		if keyIDs != "" {
			ids = strings.Split(keyIDs, "\n")
			for _, id := range ids {
				k.RevokeKeyID(ca.PublicKey(), id)
			}
		}
		b, err := k.Marshal()
		if verr := k.Validate(); (err == nil) != (verr == nil) {
			t.Fatalf("Marshal error %v but Validate %v", err, verr)
		}
		if err != nil {
			return
		}
		got, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse(Marshal(k)): %v", err)
		}
		if d := cmp.Diff(k.Normalize(), got, cmpKRL); d != "" {
			t.Fatalf("round trip (-want +got):\n%s", d)
		}
		// Check against a direct lookup over the input.
		want := false
		for _, s := range k.Certs {
			for _, r := range s.Serials {
				want = want || (probe != 0 && r.Lo <= probe && probe <= r.Hi)
			}
		}
		id := "probe"
		if len(ids) > 0 {
			id = ids[int(probe%uint64(len(ids)))]
			want = true
		}
		cert := &ssh.Certificate{Key: key, Serial: probe, KeyId: id, SignatureKey: ca.PublicKey()}
		if got.Revoked(cert) != want {
			t.Fatalf("Revoked(serial %d, key id %q) = %v, want %v", probe, id, !want, want)
		}
	})
}
