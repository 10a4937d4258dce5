package spool

import (
	"errors"
	"fmt"
	"strings"

	"github.com/postern-dev/postern/internal/storage"
)

// File name suffixes of the three kinds of spool files.
const (
	partSuffix   = ".part"
	sealedSuffix = ".sealed"
	metaSuffix   = ".meta"
)

// maxNameLen keeps NAME plus the longest suffix within NAME_MAX (255).
const maxNameLen = 255 - len(sealedSuffix)

// ErrNameTooLong: the escaped key does not fit in a file name.
var ErrNameTooLong = errors.New("spool: key too long for a file name")

// FileName escapes an object key into a file name without suffix: ASCII
// letters, digits, '-', '_' and '.' (except a leading '.') stand for
// themselves; every other byte, '/' included, is %XX with uppercase hex.
// The key must pass storage.ValidateKey.
func FileName(key string) (string, error) {
	if err := storage.ValidateKey(key); err != nil {
		return "", err
	}
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		if plain(c, i) {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	if b.Len() > maxNameLen {
		return "", fmt.Errorf("%w: %q escapes to %d bytes, limit %d", ErrNameTooLong, key, b.Len(), maxNameLen)
	}
	return b.String(), nil
}

func plain(c byte, i int) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		return true
	case c == '.':
		return i > 0
	}
	return false
}

// ParseFileName is the inverse of [FileName]. It accepts only names that
// FileName produces (canonical escapes of valid keys), so distinct names
// never map to the same key.
func ParseFileName(name string) (string, error) {
	bad := func(why string) (string, error) { return "", fmt.Errorf("spool: file name %q: %s", name, why) }
	if name == "" || len(name) > maxNameLen {
		return bad("bad length")
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c != '%' {
			if !plain(c, b.Len()) {
				return bad("unescaped byte")
			}
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(name) {
			return bad("truncated escape")
		}
		hi, ok1 := unhex(name[i+1])
		lo, ok2 := unhex(name[i+2])
		if !ok1 || !ok2 {
			return bad("bad escape")
		}
		d := hi<<4 | lo
		if plain(d, b.Len()) {
			return bad("needless escape")
		}
		b.WriteByte(d)
		i += 2
	}
	key := b.String()
	if err := storage.ValidateKey(key); err != nil {
		return bad(err.Error())
	}
	return key, nil
}

// unhex decodes an uppercase hex digit.
func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
