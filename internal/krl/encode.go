package krl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// rangeMin is the shortest run of serials written as a range section
// (17 bytes) rather than as list entries (8 bytes each).
const rangeMin = 3

// Validate reports every reason OpenSSH would refuse to load k.
func (k *KRL) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrFormat}, args...)...))
	}
	if strings.IndexByte(k.Comment, 0) >= 0 {
		bad("comment contains a NUL byte")
	}
	for _, s := range k.Certs {
		if _, ok := s.CA.(*ssh.Certificate); ok {
			bad("CA key is a certificate")
		}
		for _, r := range s.Serials {
			if r.Lo == 0 {
				bad("serial 0 cannot be revoked")
			} else if r.Lo > r.Hi {
				bad("serial range %d-%d is reversed", r.Lo, r.Hi)
			}
		}
		for _, id := range s.KeyIDs {
			if strings.IndexByte(id, 0) >= 0 {
				bad("key ID %q contains a NUL byte", id)
			}
		}
	}
	for _, b := range k.Keys {
		pub, err := ssh.ParsePublicKey(b)
		switch {
		case err != nil:
			bad("revoked key: %v", err)
		case isCert(pub):
			bad("revoked key is a certificate (revoke its serial or its plain key)")
		}
	}
	for _, h := range k.SHA1 {
		if len(h) != 20 {
			bad("SHA-1 hash of %d bytes", len(h))
		}
	}
	for _, h := range k.SHA256 {
		if len(h) != 32 {
			bad("SHA-256 hash of %d bytes", len(h))
		}
	}
	return errors.Join(errs...)
}

func isCert(pub ssh.PublicKey) bool {
	_, ok := pub.(*ssh.Certificate)
	return ok
}

// Marshal validates k and encodes it in canonical form (see [KRL.Normalize]).
func (k *KRL) Marshal() ([]byte, error) {
	if err := k.Validate(); err != nil {
		return nil, err
	}
	n := k.Normalize()
	var b []byte
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint32(b, formatVersion)
	b = binary.BigEndian.AppendUint64(b, n.Version)
	b = binary.BigEndian.AppendUint64(b, n.GeneratedDate)
	b = binary.BigEndian.AppendUint64(b, n.Flags)
	b = appendString(b, nil) // reserved
	b = appendString(b, []byte(n.Comment))

	for _, s := range n.Certs {
		b = append(b, sectionCertificates)
		b = appendString(b, certSection(s))
	}
	for _, blobs := range []struct {
		typ  byte
		list [][]byte
	}{{sectionExplicitKey, n.Keys}, {sectionFingerprintSHA1, n.SHA1}, {sectionFingerprintSHA256, n.SHA256}} {
		if len(blobs.list) == 0 {
			continue
		}
		var sect []byte
		for _, x := range blobs.list {
			sect = appendString(sect, x)
		}
		b = append(b, blobs.typ)
		b = appendString(b, sect)
	}
	return b, nil
}

// certSection encodes a normalized, validated certificate section.
func certSection(s CertSection) []byte {
	var b []byte
	b = appendString(b, caBlob(s.CA))
	b = appendString(b, nil) // reserved
	var list []byte
	for _, r := range s.Serials {
		if r.Hi-r.Lo+1 >= rangeMin { // Lo >= 1: no overflow
			continue
		}
		for v := r.Lo; ; v++ {
			list = binary.BigEndian.AppendUint64(list, v)
			if v == r.Hi {
				break
			}
		}
	}
	if len(list) > 0 {
		b = append(b, certSerialList)
		b = appendString(b, list)
	}
	for _, r := range s.Serials {
		if r.Hi-r.Lo+1 < rangeMin {
			continue
		}
		var rb []byte
		rb = binary.BigEndian.AppendUint64(rb, r.Lo)
		rb = binary.BigEndian.AppendUint64(rb, r.Hi)
		b = append(b, certSerialRange)
		b = appendString(b, rb)
	}
	if len(s.KeyIDs) > 0 {
		var ids []byte
		for _, id := range s.KeyIDs {
			ids = appendString(ids, []byte(id))
		}
		b = append(b, certKeyID)
		b = appendString(b, ids)
	}
	return b
}

func appendString(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
