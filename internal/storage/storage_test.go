package storage_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/postern-dev/postern/internal/s3test"
	"github.com/postern-dev/postern/internal/storage"
)

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func newS3(t *testing.T, srv *s3test.Server, prefix string) *storage.S3 {
	t.Helper()
	s, err := storage.NewS3(context.Background(), srv.S3Config(prefix))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// backends returns each Store implementation, S3 against a real versitygw.
func backends(t *testing.T) map[string]storage.Store {
	t.Helper()
	l, err := storage.NewLocal(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]storage.Store{
		"local": l,
		"s3":    newS3(t, s3test.Start(t), "pfx"),
	}
}

func TestStoreRoundTrip(t *testing.T) {
	for name, st := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			body := []byte("{\"version\": 2}\n[0.1, \"o\", \"hello\"]\n")
			meta := map[string]string{"session-id": "abc", "user": "alice@example.com"}
			info, err := st.Put(ctx, "recordings/2026/01/02/abc.cast", bytes.NewReader(body), int64(len(body)), meta)
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			if info.Size != int64(len(body)) || info.SHA256 != sum(body) {
				t.Errorf("Put info = %+v, want size %d sha %s", info, len(body), sum(body))
			}
			// Same bytes again: idempotent.
			if _, err := st.Put(ctx, "recordings/2026/01/02/abc.cast", bytes.NewReader(body), int64(len(body)), nil); err != nil {
				t.Errorf("second identical Put: %v", err)
			}
			// Different bytes: refused, original kept.
			other := []byte("something else")
			if _, err := st.Put(ctx, "recordings/2026/01/02/abc.cast", bytes.NewReader(other), int64(len(other)), nil); !errors.Is(err, storage.ErrExists) {
				t.Errorf("overwriting Put: err = %v, want ErrExists", err)
			}
			rc, err := st.Get(ctx, "recordings/2026/01/02/abc.cast")
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, body) {
				t.Errorf("Get = %q, %v; want %q", got, err, body)
			}
			si, err := st.Stat(ctx, "recordings/2026/01/02/abc.cast")
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			if si.Size != int64(len(body)) || si.SHA256 != sum(body) || si.ModTime.IsZero() {
				t.Errorf("Stat = %+v", si)
			}
			if diff := cmp.Diff(meta, si.Meta); diff != "" {
				t.Errorf("Stat meta (-want +got):\n%s", diff)
			}

			for _, k := range []string{"audit/b1/2026-01-02/000002.jsonl", "audit/b1/2026-01-02/000001.jsonl", "audit/b2/2026-01-02/000001.jsonl"} {
				if _, err := st.Put(ctx, k, strings.NewReader(k), int64(len(k)), nil); err != nil {
					t.Fatalf("Put %s: %v", k, err)
				}
			}
			list, err := st.List(ctx, "audit/b1/")
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			var keys []string
			for _, o := range list {
				keys = append(keys, o.Key)
				if o.Size != int64(len(o.Key)) {
					t.Errorf("List %s size %d", o.Key, o.Size)
				}
			}
			if diff := cmp.Diff([]string{"audit/b1/2026-01-02/000001.jsonl", "audit/b1/2026-01-02/000002.jsonl"}, keys); diff != "" {
				t.Errorf("List audit/b1/ (-want +got):\n%s", diff)
			}
			all, err := st.List(ctx, "")
			if err != nil || len(all) != 4 {
				t.Errorf("List all = %d objects, %v; want 4", len(all), err)
			}
			if l, err := st.List(ctx, "nothing/"); err != nil || len(l) != 0 {
				t.Errorf("List nothing/ = %v, %v", l, err)
			}

			if _, err := st.Stat(ctx, "recordings/missing.cast"); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("Stat missing: %v, want ErrNotFound", err)
			}
			if _, err := st.Get(ctx, "recordings/missing.cast"); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("Get missing: %v, want ErrNotFound", err)
			}
			for _, k := range []string{"../x", "/abs", "a//b", "a/./b", "a/.hidden", "", "a\x00b"} {
				if _, err := st.Put(ctx, k, strings.NewReader("x"), 1, nil); !errors.Is(err, storage.ErrInvalidKey) {
					t.Errorf("Put %q: %v, want ErrInvalidKey", k, err)
				}
			}
			// The declared size must be exact.
			if _, err := st.Put(ctx, "short", strings.NewReader("abc"), 4, nil); err == nil {
				t.Error("Put with size larger than body succeeded")
			}
			if _, err := st.Put(ctx, "long", strings.NewReader("abcde"), 4, nil); err == nil {
				t.Error("Put with size smaller than body succeeded")
			}
			if _, err := st.Stat(ctx, "short"); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("failed Put left an object: %v", err)
			}
		})
	}
}

func TestPutFile(t *testing.T) {
	for name, st := range backends(t) {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f")
			body := bytes.Repeat([]byte("0123456789"), 200_000) // 2 MB
			if err := os.WriteFile(p, body, 0o600); err != nil {
				t.Fatal(err)
			}
			info, err := storage.PutFile(context.Background(), st, "big/file", p, nil)
			if err != nil || info.SHA256 != sum(body) {
				t.Fatalf("PutFile = %+v, %v", info, err)
			}
		})
	}
}

// flipReader returns the true content on its first pass and corrupted
// content after it is rewound: what Put hashes differs from what it sends,
// as if the disk returned different bytes on the second read.
type flipReader struct {
	data   []byte
	off    int64
	passes int
}

func (f *flipReader) Read(p []byte) (int, error) {
	if f.off >= int64(len(f.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.data[f.off:])
	if f.passes > 0 {
		for i := range n {
			if f.off+int64(i) == 3 {
				p[i] ^= 0x20
			}
		}
	}
	f.off += int64(n)
	return n, nil
}

func (f *flipReader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += f.off
	case io.SeekEnd:
		off += int64(len(f.data))
	}
	if off == 0 && f.off > 0 {
		f.passes++ // rewound after reading: the next pass is corrupted
	}
	f.off = off
	return off, nil
}

func TestS3ChecksumMismatchRefused(t *testing.T) {
	srv := s3test.Start(t)
	st := newS3(t, srv, "")
	ctx := context.Background()
	data := []byte("session output that must arrive intact")
	_, err := st.Put(ctx, "corrupt.cast", &flipReader{data: data}, int64(len(data)), nil)
	if !errors.Is(err, storage.ErrChecksum) {
		t.Fatalf("Put of bytes that change after hashing: err = %v, want ErrChecksum", err)
	}
	t.Logf("refused as: %v", err)
	if _, err := st.Stat(ctx, "corrupt.cast"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("corrupted object was stored: %v", err)
	}
}

func TestS3WrongCredentials(t *testing.T) {
	srv := s3test.Start(t)
	cfg := srv.S3Config("")
	cfg.SecretAccessKey = "not-the-secret"
	st, err := storage.NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Put(context.Background(), "x", strings.NewReader("x"), 1, nil)
	if !errors.Is(err, storage.ErrAccessDenied) {
		t.Fatalf("Put with wrong secret: err = %v, want ErrAccessDenied", err)
	}
	if !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
		t.Errorf("error does not name the S3 error code: %v", err)
	}
	t.Logf("refused as: %v", err)
	if _, err := st.List(context.Background(), ""); !errors.Is(err, storage.ErrAccessDenied) {
		t.Errorf("List with wrong secret: %v", err)
	}
	cfg.AccessKeyID = "nobody"
	st, _ = storage.NewS3(context.Background(), cfg)
	if _, err := st.Put(context.Background(), "x", strings.NewReader("x"), 1, nil); !errors.Is(err, storage.ErrAccessDenied) {
		t.Errorf("Put with unknown key id: %v", err)
	}
}

func TestS3PrefixConfinesKeys(t *testing.T) {
	srv := s3test.Start(t)
	a, b := newS3(t, srv, "tenant-a"), newS3(t, srv, "tenant-b/")
	ctx := context.Background()
	if _, err := a.Put(ctx, "k", strings.NewReader("a"), 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx, "k"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("object of prefix a visible under prefix b: %v", err)
	}
	// On disk the object is under the prefix inside the bucket directory.
	if _, err := os.Stat(filepath.Join(srv.Dir, srv.Bucket, "tenant-a", "k")); err != nil {
		t.Errorf("object not at bucket/prefix/key: %v", err)
	}
	if _, err := storage.NewS3(ctx, storage.S3Config{Bucket: "b", Prefix: "../x"}); err == nil {
		t.Error("NewS3 accepted prefix ../x")
	}
}

func TestLocalFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	st, err := storage.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(context.Background(), "a/b/c", strings.NewReader("x"), 1, nil); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, dir + "/a": 0o700, dir + "/a/b": 0o700, dir + "/a/b/c": 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
	// No temporary files are left behind.
	ents, _ := os.ReadDir(dir + "/a/b")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

func TestValidateKey(t *testing.T) {
	tests := []struct {
		name string
		key  string
		ok   bool
	}{
		{"recording", "recordings/2026/01/02/0f3c.cast", true},
		{"audit", "audit/bastion-1/2026-01-02/000001.jsonl", true},
		{"unicode", "r/üñí.cast", true},
		{"empty", "", false},
		{"leading slash", "/a", false},
		{"trailing slash", "a/", false},
		{"double slash", "a//b", false},
		{"dotdot", "a/../b", false},
		{"dot", "./a", false},
		{"hidden", "a/.b", false},
		{"backslash", `a\b`, false},
		{"newline", "a\nb", false},
		{"nul", "a\x00", false},
		{"bad utf8", "a\xff", false},
		{"too long", strings.Repeat("a", storage.MaxKeyLen+1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := storage.ValidateKey(tt.key)
			if (err == nil) != tt.ok {
				t.Errorf("ValidateKey(%q) = %v, want ok=%v", tt.key, err, tt.ok)
			}
			if err != nil && !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("error %v does not wrap ErrInvalidKey", err)
			}
		})
	}
}
