package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Local is a [Store] in a directory of the local file system: the object
// "a/b.cast" is the file DIR/a/b.cast, and its checksum and metadata are
// kept beside it in DIR/a/.b.cast.meta (hidden from List; keys cannot
// start a segment with ".").
type Local struct {
	dir string
}

var _ Store = (*Local)(nil)

// NewLocal returns a store rooted at dir, creating it with mode 0700.
func NewLocal(dir string) (*Local, error) {
	if dir == "" {
		return nil, errors.New("local store: empty directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("local store %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("create local store %s: %w", abs, err)
	}
	return &Local{dir: abs}, nil
}

// Dir returns the root directory.
func (l *Local) Dir() string { return l.dir }

// localMeta is the sidecar of each object.
type localMeta struct {
	Size   int64             `json:"size"`
	SHA256 string            `json:"sha256"`
	Meta   map[string]string `json:"meta,omitempty"`
}

func (l *Local) paths(key string) (data, meta string) {
	data = filepath.Join(l.dir, filepath.FromSlash(key))
	return data, filepath.Join(filepath.Dir(data), "."+filepath.Base(data)+".meta")
}

// Put implements [Store]. The bytes go to a temporary file that is fsynced
// and then linked into place, so the object appears whole or not at all;
// link(2) refuses to replace an existing object.
func (l *Local) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, meta map[string]string) (ObjectInfo, error) {
	if err := ValidateKey(key); err != nil {
		return ObjectInfo{}, err
	}
	if err := validateMeta(meta); err != nil {
		return ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, err
	}
	dataPath, metaPath := l.paths(key)
	dir := filepath.Dir(dataPath)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	existed := false
	sum, err := writeTemp(dir, func(w io.Writer) ([]byte, error) {
		return digest(io.TeeReader(body, w), size)
	}, func(tmp string) (err error) {
		existed, err = l.link(key, tmp, dataPath)
		return err
	})
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	// The sidecar is written after the data: a crash in between leaves an
	// object without recorded metadata, which Put repairs on retry and Stat
	// handles by hashing the file. A repeated Put keeps the first metadata.
	if _, err := os.Stat(metaPath); !existed || err != nil {
		mb, _ := json.Marshal(localMeta{Size: size, SHA256: hexSum(sum), Meta: meta})
		if _, err := writeTemp(dir, func(w io.Writer) ([]byte, error) {
			_, err := w.Write(mb)
			return nil, err
		}, func(tmp string) error { return os.Rename(tmp, metaPath) }); err != nil {
			return ObjectInfo{}, fmt.Errorf("put %s: write metadata: %w", key, err)
		}
	}
	if err := syncDir(dir); err != nil {
		return ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	// Confirm by reading back what is now stored.
	info, err := l.Stat(ctx, key)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("put %s: %w: %w", key, ErrNotConfirmed, err)
	}
	if info.Size != size || info.SHA256 != hexSum(sum) {
		return ObjectInfo{}, fmt.Errorf("put %s: %w: stored size %d sha256 %s, sent %d %s",
			key, ErrNotConfirmed, info.Size, info.SHA256, size, hexSum(sum))
	}
	return info, nil
}

// link gives tmp the name dataPath unless an object is there; an existing
// object with the same content is success (existed is then true).
func (l *Local) link(key, tmp, dataPath string) (existed bool, err error) {
	err = os.Link(tmp, dataPath)
	if err == nil || !errors.Is(err, fs.ErrExist) {
		return false, err
	}
	same, err := sameFile(tmp, dataPath)
	if err != nil {
		return true, err
	}
	if !same {
		return true, fmt.Errorf("%w: %s", ErrExists, key)
	}
	return true, nil
}

// writeTemp creates a 0600 temporary file in dir, fills it with fill,
// fsyncs it, calls place with its name and removes the name afterwards.
func writeTemp(dir string, fill func(io.Writer) ([]byte, error), place func(tmp string) error) ([]byte, error) {
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(dir, ".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp) // after link: drops the extra name; after rename: no-op
	out, err := fill(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return out, place(tmp)
}

func sameFile(a, b string) (bool, error) {
	ha, err := hashFile(a)
	if err != nil {
		return false, err
	}
	hb, err := hashFile(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(ha, hb), nil
}

func hashFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return digest(f, fi.Size())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Get implements [Store].
func (l *Local) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	data, _ := l.paths(key)
	f, err := os.Open(data)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	return f, nil
}

// Stat implements [Store]. When the sidecar is missing or disagrees with
// the file's size, the file is hashed.
func (l *Local) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := ValidateKey(key); err != nil {
		return ObjectInfo{}, err
	}
	dataPath, metaPath := l.paths(key)
	fi, err := os.Stat(dataPath)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !fi.Mode().IsRegular()) {
		return ObjectInfo{}, fmt.Errorf("stat %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	info := ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}
	var m localMeta
	if b, err := os.ReadFile(metaPath); err == nil && json.Unmarshal(b, &m) == nil && m.Size == fi.Size() {
		info.SHA256, info.Meta = m.SHA256, m.Meta
		return info, nil
	}
	sum, err := hashFile(dataPath)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	info.SHA256 = hexSum(sum)
	return info, nil
}

// List implements [Store].
func (l *Local) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	// Walk only the deepest directory the prefix names in full.
	start := l.dir
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = filepath.Join(l.dir, filepath.FromSlash(prefix[:i]))
	}
	var out []ObjectInfo
	err := filepath.WalkDir(start, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path == start {
				return fs.SkipAll
			}
			return err
		}
		if path != start && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(l.dir, path)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		info, err := l.Stat(ctx, key)
		if err != nil {
			return err
		}
		info.Meta = nil
		out = append(out, info)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}
