package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"
)

// Errors returned by every backend; test them with errors.Is. Backend
// errors wrap one of these where they match, and keep the backend's own
// error (with its code and message) in the chain.
var (
	// ErrInvalidKey: the key fails [ValidateKey].
	ErrInvalidKey = errors.New("invalid object key")
	// ErrNotFound: no object has this key.
	ErrNotFound = errors.New("object not found")
	// ErrExists: an object with this key and different content exists.
	ErrExists = errors.New("object exists with different content")
	// ErrNotConfirmed: the backend accepted the write but reading it back
	// did not show the size and checksum that were sent.
	ErrNotConfirmed = errors.New("object not confirmed stored")
	// ErrChecksum: the backend refused the bytes because they did not match
	// the SHA-256 computed before sending (corruption on the way).
	ErrChecksum = errors.New("checksum mismatch")
	// ErrAccessDenied: the backend refused the credentials or the
	// permission (wrong keys, bad signature, missing IAM grant).
	ErrAccessDenied = errors.New("access denied")
)

// MaxKeyLen is the longest key accepted, in bytes (S3 allows 1024 including
// the prefix).
const MaxKeyLen = 900

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	// Key is relative to the store (without the S3 prefix).
	Key  string
	Size int64
	// SHA256 is the lowercase hex digest of the content, "" when the
	// backend did not report it (List on S3 does not).
	SHA256 string
	// ModTime is when the object was stored.
	ModTime time.Time
	// Meta is the user metadata given to Put (Stat only; keys lowercase).
	Meta map[string]string
}

// Store keeps objects. Implementations are safe for concurrent use.
type Store interface {
	// Put stores exactly size bytes read from body under key, with the
	// given metadata (keys: lowercase letters, digits and '-'; values:
	// printable ASCII). body is read from its current position and may be
	// read more than once (it is seeked back). Put returns nil only when
	// the object is confirmed stored with that content (see the package
	// invariants); the returned ObjectInfo is the confirmed state.
	Put(ctx context.Context, key string, body io.ReadSeeker, size int64, meta map[string]string) (ObjectInfo, error)
	// Get opens the object for reading. For S3 the SHA-256 is checked as
	// the body is read: a corrupted object fails at the end of the read.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat describes one object, [ErrNotFound] if there is none.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List returns the objects whose keys start with prefix (a plain
	// string prefix, "" for all), sorted by key. Meta is not filled in.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
}

// PutFile stores the file at path under key (see [Store.Put]).
func PutFile(ctx context.Context, s Store, key, path string, meta map[string]string) (ObjectInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("stat %s: %w", path, err)
	}
	return s.Put(ctx, key, f, fi.Size(), meta)
}

// ValidateKey reports whether key is an acceptable object key, wrapping
// [ErrInvalidKey] if not.
func ValidateKey(key string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, why) }
	switch {
	case key == "":
		return bad("empty")
	case len(key) > MaxKeyLen:
		return bad(fmt.Sprintf("longer than %d bytes", MaxKeyLen))
	case !utf8.ValidString(key):
		return bad("not UTF-8")
	case strings.HasPrefix(key, "/"):
		return bad("starts with /")
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f || r == '\\' || (r >= 0x80 && r < 0xa0) {
			return bad("control character or backslash")
		}
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch {
		case seg == "":
			return bad("empty segment")
		case seg == "." || seg == "..":
			return bad("dot segment")
		case strings.HasPrefix(seg, "."):
			return bad("segment starts with .")
		}
	}
	return nil
}

// validatePrefix accepts "" or anything a key could start with.
func validatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	// A prefix may end in "/" or in the middle of a segment.
	return ValidateKey(strings.TrimSuffix(prefix, "/") + "/x")
}

// validateMeta checks metadata keys and values so that both backends store
// them alike (S3 lowercases keys and sends values as HTTP headers).
func validateMeta(meta map[string]string) error {
	for k, v := range meta {
		if k == "" || len(k) > 64 {
			return fmt.Errorf("invalid metadata key %q", k)
		}
		for _, r := range k {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("invalid metadata key %q: use lowercase letters, digits and -", k)
			}
		}
		if k == metaSHA256 {
			return fmt.Errorf("metadata key %q is reserved", k)
		}
		if len(v) > 1024 {
			return fmt.Errorf("metadata %q: value longer than 1024 bytes", k)
		}
		for i := 0; i < len(v); i++ {
			if v[i] < 0x20 || v[i] > 0x7e {
				return fmt.Errorf("metadata %q: value must be printable ASCII", k)
			}
		}
	}
	return nil
}

// metaSHA256 is the metadata key under which Put records the hex SHA-256,
// for backends that do not report checksums themselves.
const metaSHA256 = "postern-sha256"

// digest reads exactly size bytes from r and returns their SHA-256. It
// fails if r holds fewer bytes, or more.
func digest(r io.Reader, size int64) ([]byte, error) {
	if size < 0 {
		return nil, fmt.Errorf("negative size %d", size)
	}
	h := sha256.New()
	n, err := io.CopyN(h, r, size)
	if err != nil {
		return nil, fmt.Errorf("read body: got %d of %d bytes: %w", n, size, err)
	}
	var one [1]byte
	if m, _ := io.ReadFull(r, one[:]); m != 0 {
		return nil, fmt.Errorf("read body: longer than size %d", size)
	}
	return h.Sum(nil), nil
}

// section presents n bytes of r from offset base as an io.ReadSeeker, so
// the SDK neither reads past size nor depends on r's length.
type section struct {
	r         io.ReadSeeker
	base, n   int64
	off       int64
	seekDirty bool
}

func newSection(r io.ReadSeeker, n int64) (*section, error) {
	base, err := r.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, fmt.Errorf("seek body: %w", err)
	}
	return &section{r: r, base: base, n: n}, nil
}

func (s *section) Read(p []byte) (int, error) {
	if s.off >= s.n {
		return 0, io.EOF
	}
	if s.seekDirty {
		if _, err := s.r.Seek(s.base+s.off, io.SeekStart); err != nil {
			return 0, err
		}
		s.seekDirty = false
	}
	if rem := s.n - s.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	m, err := s.r.Read(p)
	s.off += int64(m)
	if err == io.EOF && s.off < s.n {
		err = io.ErrUnexpectedEOF
	}
	return m, err
}

func (s *section) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += s.off
	case io.SeekEnd:
		offset += s.n
	default:
		return 0, errors.New("seek: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("seek: negative position")
	}
	s.off = offset
	s.seekDirty = true
	return offset, nil
}

func hexSum(b []byte) string { return hex.EncodeToString(b) }
