package krl

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/ssh"
)

// maxBitmapBytes is OpenSSH's limit on a bignum (SSHBUF_MAX_BIGNUM) plus
// one leading zero byte.
const maxBitmapBytes = 16384/8 + 1

// Parse decodes a binary KRL and returns it normalized (see
// [KRL.Normalize]). Errors wrap [ErrFormat].
func Parse(data []byte) (*KRL, error) {
	if !bytes.HasPrefix(data, []byte(magic)) {
		return nil, fmt.Errorf("%w: bad magic (not a binary KRL)", ErrFormat)
	}
	r := &reader{b: data[len(magic):]}
	k := &KRL{}
	if v := r.u32(); r.err == nil && v != formatVersion {
		return nil, fmt.Errorf("%w: format version %d, want %d", ErrFormat, v, formatVersion)
	}
	k.Version = r.u64()
	k.GeneratedDate = r.u64()
	k.Flags = r.u64()
	r.str() // reserved
	k.Comment = r.cstr()
	if r.err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrFormat, r.err)
	}
	for len(r.b) > 0 {
		typ := r.u8()
		sect := &reader{b: r.str()}
		if r.err != nil {
			return nil, fmt.Errorf("%w: section: %v", ErrFormat, r.err)
		}
		var err error
		switch typ {
		case sectionCertificates:
			err = k.parseCerts(sect)
		case sectionExplicitKey:
			k.Keys, err = blobs(sect, k.Keys, 0)
		case sectionFingerprintSHA1:
			k.SHA1, err = blobs(sect, k.SHA1, 20)
		case sectionFingerprintSHA256:
			k.SHA256, err = blobs(sect, k.SHA256, 32)
		case sectionSignature:
			err = fmt.Errorf("signed KRLs are not supported")
		default:
			err = fmt.Errorf("unsupported section type %#x", typ)
		}
		if err == nil && len(sect.b) > 0 {
			err = fmt.Errorf("section %#x has trailing data", typ)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrFormat, err)
		}
	}
	return k.Normalize(), nil
}

func blobs(r *reader, list [][]byte, size int) ([][]byte, error) {
	for len(r.b) > 0 {
		b := r.str()
		if r.err != nil {
			return nil, r.err
		}
		if size != 0 && len(b) != size {
			return nil, fmt.Errorf("hash of %d bytes, want %d", len(b), size)
		}
		list = append(list, bytes.Clone(b))
	}
	return list, nil
}

func (k *KRL) parseCerts(r *reader) error {
	caBytes := r.str()
	r.str() // reserved
	if r.err != nil {
		return fmt.Errorf("certificate section header: %v", r.err)
	}
	var ca ssh.PublicKey
	if len(caBytes) > 0 {
		var err error
		if ca, err = ssh.ParsePublicKey(caBytes); err != nil {
			return fmt.Errorf("certificate section CA key: %v", err)
		}
	}
	s := CertSection{CA: ca}
	for len(r.b) > 0 {
		typ := r.u8()
		sub := &reader{b: r.str()}
		if r.err != nil {
			return fmt.Errorf("certificate subsection: %v", r.err)
		}
		switch typ {
		case certSerialList:
			for len(sub.b) > 0 {
				v := sub.u64()
				if sub.err == nil && v == 0 {
					return fmt.Errorf("serial 0 revoked")
				}
				s.Serials = append(s.Serials, SerialRange{v, v})
			}
		case certSerialRange:
			lo, hi := sub.u64(), sub.u64()
			if sub.err == nil && (lo == 0 || lo > hi) {
				return fmt.Errorf("bad serial range %d-%d", lo, hi)
			}
			s.Serials = append(s.Serials, SerialRange{lo, hi})
		case certSerialBitmap:
			off := sub.u64()
			bm := sub.str()
			if sub.err != nil {
				break
			}
			rs, err := bitmapRanges(off, bm)
			if err != nil {
				return err
			}
			s.Serials = append(s.Serials, rs...)
		case certKeyID:
			for len(sub.b) > 0 {
				id := sub.cstr()
				if sub.err == nil {
					s.KeyIDs = append(s.KeyIDs, id)
				}
			}
		default:
			return fmt.Errorf("unsupported certificate subsection type %#x", typ)
		}
		if sub.err != nil {
			return fmt.Errorf("certificate subsection %#x: %v", typ, sub.err)
		}
		if len(sub.b) > 0 {
			return fmt.Errorf("certificate subsection %#x has trailing data", typ)
		}
	}
	k.Certs = append(k.Certs, s)
	return nil
}

// bitmapRanges decodes a serial bitmap (an mpint whose bit N revokes
// serial off+N) as OpenSSH does, into runs of serials.
func bitmapRanges(off uint64, mp []byte) ([]SerialRange, error) {
	if len(mp) > 0 && mp[0]&0x80 != 0 {
		return nil, fmt.Errorf("negative serial bitmap")
	}
	if len(mp) > maxBitmapBytes || (len(mp) == maxBitmapBytes && mp[0] != 0) {
		return nil, fmt.Errorf("serial bitmap too large")
	}
	mp = bytes.TrimLeft(mp, "\x00")
	nbits := uint64(len(mp)) * 8
	if len(mp) > 0 {
		for v := mp[0]; v&0x80 == 0; v <<= 1 {
			nbits--
		}
	}
	bit := func(i uint64) bool { return mp[len(mp)-1-int(i/8)]&(1<<(i%8)) != 0 }
	var out []SerialRange
	for i := uint64(0); i < nbits; i++ {
		if i > 0 && off+i == 0 {
			return nil, fmt.Errorf("serial bitmap wraps")
		}
		if !bit(i) {
			continue
		}
		v := off + i
		if v == 0 {
			return nil, fmt.Errorf("serial 0 revoked")
		}
		if n := len(out); n > 0 && out[n-1].Hi+1 == v {
			out[n-1].Hi = v
		} else {
			out = append(out, SerialRange{v, v})
		}
	}
	return out, nil
}

// reader decodes SSH wire types. The first error sticks and empties the
// buffer, so loops over "while data is left" always end.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(msg string) {
	r.err = errors.New(msg)
	r.b = nil
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.fail("truncated")
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() byte {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *reader) str() []byte {
	n := r.u32()
	if r.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(r.b)) {
		r.fail(fmt.Sprintf("string of %d bytes with %d left", n, len(r.b)))
		return nil
	}
	return r.take(int(n))
}

// cstr reads a string that must not contain NUL (sshbuf_get_cstring).
func (r *reader) cstr() string {
	b := r.str()
	if r.err == nil && bytes.IndexByte(b, 0) >= 0 {
		r.fail("string contains a NUL byte")
		return ""
	}
	return string(b)
}
