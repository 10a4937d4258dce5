package spool

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/internal/storage"
)

func TestFileName(t *testing.T) {
	tests := []struct {
		name, key, file string
	}{
		{"recording", "recordings/2026/01/02/abc-1_2.cast", "recordings%2F2026%2F01%2F02%2Fabc-1_2.cast"},
		{"audit", "audit/b1/2026-01-02/000001.jsonl", "audit%2Fb1%2F2026-01-02%2F000001.jsonl"},
		{"specials", "a b%c:d", "a%20b%25c%3Ad"},
		{"utf8", "ü", "%C3%BC"},
		{"suffix-like", "x.part", "x.part"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FileName(tt.key)
			if err != nil || got != tt.file {
				t.Fatalf("FileName(%q) = %q, %v; want %q", tt.key, got, err, tt.file)
			}
			back, err := ParseFileName(got)
			if err != nil || back != tt.key {
				t.Fatalf("ParseFileName(%q) = %q, %v; want %q", got, back, err, tt.key)
			}
		})
	}
	for _, bad := range []string{"", "%2e", "%2Fa", "a%2f", "a%2", "a%", "a/b", "%2E%2E", "a%2F%2Fb", ".x", "a%41", "%00"} {
		if k, err := ParseFileName(bad); err == nil {
			t.Errorf("ParseFileName(%q) = %q, want error", bad, k)
		}
	}
	if _, err := FileName(strings.Repeat("/x", 100)[1:]); !errors.Is(err, ErrNameTooLong) {
		t.Errorf("long key: %v, want ErrNameTooLong", err)
	}
	if _, err := FileName("../x"); !errors.Is(err, storage.ErrInvalidKey) {
		t.Errorf("bad key: %v, want ErrInvalidKey", err)
	}
}

// FuzzFileName: every valid key maps to a safe name and back.
func FuzzFileName(f *testing.F) {
	for _, s := range []string{"recordings/2026/01/02/x.cast", "a b", "ü/ß", "x.part", "a%2F", "-_."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		name, err := FileName(key)
		if err != nil {
			return
		}
		if storage.ValidateKey(key) != nil {
			t.Fatalf("FileName accepted invalid key %q", key)
		}
		if strings.ContainsAny(name, "/\x00") || strings.HasPrefix(name, ".") || len(name) > maxNameLen {
			t.Fatalf("FileName(%q) = %q: unsafe file name", key, name)
		}
		back, err := ParseFileName(name)
		if err != nil || back != key {
			t.Fatalf("ParseFileName(FileName(%q)) = %q, %v", key, back, err)
		}
	})
}

// FuzzParseFileName: any name that parses is canonical, so names and keys
// are in one-to-one correspondence.
func FuzzParseFileName(f *testing.F) {
	for _, s := range []string{"a%2Fb", "%C3%BC", "a%2f", "%2E", "x.sealed", "a%%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		key, err := ParseFileName(name)
		if err != nil {
			return
		}
		if err := storage.ValidateKey(key); err != nil {
			t.Fatalf("ParseFileName(%q) = invalid key %q: %v", name, key, err)
		}
		again, err := FileName(key)
		if err != nil || again != name {
			t.Fatalf("FileName(ParseFileName(%q)) = %q, %v", name, again, err)
		}
	})
}

func TestBackoffBounded(t *testing.T) {
	sp, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	u := NewUploader(sp, nil, UploaderOptions{MinBackoff: 100, MaxBackoff: 1000})
	for n := 1; n < 200; n++ {
		step := min(100<<min(n-1, 20), 1000)
		for range 20 {
			d := u.backoff(n)
			if d < 0 || d > 1000 || d < time.Duration(step)/2 || d > time.Duration(step) {
				t.Fatalf("backoff(%d) = %d, want in [%d, %d]", n, d, step/2, step)
			}
		}
	}
}
