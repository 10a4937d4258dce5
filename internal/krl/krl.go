package krl

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Wire constants from PROTOCOL.krl.
const (
	magic         = "SSHKRL\n\x00"
	formatVersion = 1

	sectionCertificates      = 0x01
	sectionExplicitKey       = 0x02
	sectionFingerprintSHA1   = 0x03
	sectionSignature         = 0x04
	sectionFingerprintSHA256 = 0x05

	certSerialList   = 0x20
	certSerialRange  = 0x21
	certSerialBitmap = 0x22
	certKeyID        = 0x23
)

// Errors.
var (
	// ErrRevoked is wrapped by [KRL.Check] when a key is revoked.
	ErrRevoked = errors.New("key is revoked")
	// ErrFormat is wrapped by [Parse] for input that is not a KRL OpenSSH
	// would load, and by [KRL.Marshal] for content OpenSSH could not load.
	ErrFormat = errors.New("invalid KRL")
)

// KRL is a key revocation list.
type KRL struct {
	// Version is krl_version, which grows with every change. postern uses
	// the revocation list's generation.
	Version uint64
	// GeneratedDate is the creation time in seconds since the Unix epoch.
	GeneratedDate uint64
	// Flags are reserved (none are defined).
	Flags uint64
	// Comment is free text without NUL bytes.
	Comment string

	// Certs revoke certificates, per CA.
	Certs []CertSection
	// Keys are plain public keys in SSH wire format (never certificates).
	Keys [][]byte
	// SHA1 and SHA256 are hashes of plain public key blobs (20 and 32 bytes).
	SHA1   [][]byte
	SHA256 [][]byte
}

// CertSection revokes certificates signed by one CA.
type CertSection struct {
	// CA is the signing key; nil means certificates of any CA.
	CA ssh.PublicKey
	// Serials are revoked serial numbers, as inclusive ranges. Serial 0
	// cannot be revoked by serial.
	Serials []SerialRange
	// KeyIDs are revoked certificate key IDs.
	KeyIDs []string
}

// SerialRange is the inclusive range Lo..Hi.
type SerialRange struct{ Lo, Hi uint64 }

// Generated returns GeneratedDate as a time.
func (k *KRL) Generated() time.Time {
	if k.GeneratedDate > 1<<62 {
		return time.Unix(1<<62, 0).UTC()
	}
	return time.Unix(int64(k.GeneratedDate), 0).UTC()
}

// section returns the certificate section for ca, creating it.
func (k *KRL) section(ca ssh.PublicKey) *CertSection {
	for i := range k.Certs {
		if sameKey(k.Certs[i].CA, ca) {
			return &k.Certs[i]
		}
	}
	k.Certs = append(k.Certs, CertSection{CA: ca})
	return &k.Certs[len(k.Certs)-1]
}

// RevokeSerial revokes the certificate of ca with the given serial.
func (k *KRL) RevokeSerial(ca ssh.PublicKey, serial uint64) {
	s := k.section(ca)
	s.Serials = append(s.Serials, SerialRange{serial, serial})
}

// RevokeKeyID revokes every certificate of ca with the given key ID.
func (k *KRL) RevokeKeyID(ca ssh.PublicKey, keyID string) {
	s := k.section(ca)
	s.KeyIDs = append(s.KeyIDs, keyID)
}

// RevokeKey revokes a plain key (and so every certificate for it) by its
// blob. For a certificate, its plain key is revoked.
func (k *KRL) RevokeKey(pub ssh.PublicKey) {
	k.Keys = append(k.Keys, plain(pub).Marshal())
}

// RevokeKeySHA256 revokes a plain key by the SHA-256 hash of its blob
// (needs OpenSSH 7.9 or later on the reading side).
func (k *KRL) RevokeKeySHA256(pub ssh.PublicKey) {
	h := sha256.Sum256(plain(pub).Marshal())
	k.SHA256 = append(k.SHA256, h[:])
}

// Empty reports whether the KRL revokes nothing.
func (k *KRL) Empty() bool {
	for _, s := range k.Certs {
		if len(s.Serials) > 0 || len(s.KeyIDs) > 0 {
			return false
		}
	}
	return len(k.Keys) == 0 && len(k.SHA1) == 0 && len(k.SHA256) == 0
}

// Revoked reports whether pub is revoked; see [KRL.Check].
func (k *KRL) Revoked(pub ssh.PublicKey) bool { return k.Check(pub) != nil }

// Check returns an error wrapping [ErrRevoked] that says why, if pub (a
// plain key or a certificate) is revoked, and nil otherwise. Like OpenSSH
// it checks the key, and for a certificate also its CA key. It does not
// check signatures or validity.
func (k *KRL) Check(pub ssh.PublicKey) error {
	if pub == nil {
		return fmt.Errorf("%w: no key", ErrRevoked)
	}
	if err := k.checkKey(pub); err != nil {
		return err
	}
	if c, ok := pub.(*ssh.Certificate); ok && c.SignatureKey != nil {
		if err := k.checkKey(c.SignatureKey); err != nil {
			return fmt.Errorf("certificate authority: %w", err)
		}
	}
	return nil
}

func (k *KRL) checkKey(pub ssh.PublicKey) error {
	blob := plain(pub).Marshal()
	h1 := sha1.Sum(blob)
	if containsBlob(k.SHA1, h1[:]) {
		return fmt.Errorf("%w by SHA-1 key hash", ErrRevoked)
	}
	h256 := sha256.Sum256(blob)
	if containsBlob(k.SHA256, h256[:]) {
		return fmt.Errorf("%w by SHA-256 key hash", ErrRevoked)
	}
	if containsBlob(k.Keys, blob) {
		return fmt.Errorf("%w by public key", ErrRevoked)
	}
	c, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil
	}
	for _, s := range k.Certs {
		if s.CA != nil && !sameKey(s.CA, c.SignatureKey) {
			continue
		}
		if slices.Contains(s.KeyIDs, c.KeyId) {
			return fmt.Errorf("%w by key ID %q", ErrRevoked, c.KeyId)
		}
		if c.Serial == 0 {
			continue
		}
		for _, r := range s.Serials {
			if r.Lo <= c.Serial && c.Serial <= r.Hi {
				return fmt.Errorf("%w by serial %d", ErrRevoked, c.Serial)
			}
		}
	}
	return nil
}

// plain strips the certificate from a key.
func plain(pub ssh.PublicKey) ssh.PublicKey {
	if c, ok := pub.(*ssh.Certificate); ok {
		return c.Key
	}
	return pub
}

func sameKey(a, b ssh.PublicKey) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return bytes.Equal(a.Marshal(), b.Marshal())
}

func containsBlob(list [][]byte, b []byte) bool {
	for _, x := range list {
		if bytes.Equal(x, b) {
			return true
		}
	}
	return false
}

// Normalize returns a copy of k in canonical form: one section per CA
// (wildcard first, then by CA blob), serial ranges sorted and merged (also
// when adjacent), key IDs and blobs sorted and de-duplicated, empty
// sections dropped. It does not validate; see [KRL.Marshal].
func (k *KRL) Normalize() *KRL {
	out := &KRL{Version: k.Version, GeneratedDate: k.GeneratedDate, Flags: k.Flags, Comment: k.Comment}
	for _, s := range k.Certs {
		d := out.section(s.CA)
		d.Serials = append(d.Serials, s.Serials...)
		d.KeyIDs = append(d.KeyIDs, s.KeyIDs...)
	}
	certs := out.Certs[:0]
	for _, s := range out.Certs {
		s.Serials = mergeRanges(s.Serials)
		s.KeyIDs = sortedUnique(s.KeyIDs, strings.Compare)
		if len(s.Serials) > 0 || len(s.KeyIDs) > 0 {
			certs = append(certs, s)
		}
	}
	slices.SortFunc(certs, func(a, b CertSection) int { return bytes.Compare(caBlob(a.CA), caBlob(b.CA)) })
	out.Certs = certs
	if len(out.Certs) == 0 {
		out.Certs = nil
	}
	out.Keys = sortedUnique(cloneBlobs(k.Keys), bytes.Compare)
	out.SHA1 = sortedUnique(cloneBlobs(k.SHA1), bytes.Compare)
	out.SHA256 = sortedUnique(cloneBlobs(k.SHA256), bytes.Compare)
	return out
}

func caBlob(k ssh.PublicKey) []byte {
	if k == nil {
		return nil
	}
	return k.Marshal()
}

func cloneBlobs(in [][]byte) [][]byte {
	out := make([][]byte, len(in))
	for i, b := range in {
		out[i] = bytes.Clone(b)
	}
	return out
}

func sortedUnique[T any](in []T, cmp func(a, b T) int) []T {
	if len(in) == 0 {
		return nil
	}
	out := slices.Clone(in)
	slices.SortFunc(out, cmp)
	return slices.CompactFunc(out, func(a, b T) bool { return cmp(a, b) == 0 })
}

// mergeRanges sorts ranges and merges overlapping and adjacent ones.
func mergeRanges(in []SerialRange) []SerialRange {
	if len(in) == 0 {
		return nil
	}
	rs := slices.Clone(in)
	slices.SortFunc(rs, func(a, b SerialRange) int {
		if a.Lo != b.Lo {
			if a.Lo < b.Lo {
				return -1
			}
			return 1
		}
		if a.Hi < b.Hi {
			return -1
		} else if a.Hi > b.Hi {
			return 1
		}
		return 0
	})
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if last.Hi == ^uint64(0) || r.Lo <= last.Hi+1 {
			if r.Hi > last.Hi {
				last.Hi = r.Hi
			}
			continue
		}
		out = append(out, r)
	}
	return out
}
