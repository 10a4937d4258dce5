package auditlog

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/postern-dev/postern/internal/storage"
)

// FuzzParseState: the state file is read back from disk; whatever is there,
// parseState returns an error or a state within bounds that encodes back to
// an equal state.
func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"version":1,"log_id":"20250301T120000Z-0a1b2c3d","dest":"s3://b/audit/","ino":42,"head_len":10,"head_sha256":"` + strings.Repeat("ab", 32) + `","offset":100,"batches":2,"updated":"2025-03-01T12:00:00Z"}`))
	f.Add([]byte(`{"version":1,"log_id":"20250301T120000Z-0a1b2c3d","dest":"x","ino":0,"head_len":0,"offset":0,"batches":0,"updated":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"offset":-1}`))
	f.Add([]byte("{not json"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseState(b)
		if err != nil {
			return
		}
		if s.Offset < 0 || s.HeadLen < 0 || s.HeadLen > headMax || s.HeadLen > s.Offset || !reLogID.MatchString(s.LogID) || s.Dest == "" {
			t.Fatalf("accepted an out-of-bounds state: %+v", s)
		}
		enc, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseState(enc)
		if err != nil || again.LogID != s.LogID || again.Offset != s.Offset || again.Ino != s.Ino || again.HeadSHA256 != s.HeadSHA256 {
			t.Fatalf("state does not round-trip: %+v -> %s -> %+v %v", s, enc, again, err)
		}
	})
}

// FuzzParseS3URL: a URL from the command line parses to a bucket and a
// prefix the store accepts, and round-trips.
func FuzzParseS3URL(f *testing.F) {
	for _, s := range []string{"s3://bucket/audit/", "s3://b", "s3:///x", "s3://b//x", "s3://b/../x", "s3://b/a\x00b", "s3://b/.x/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseS3URL(s)
		if err != nil {
			return
		}
		if u.Bucket == "" || strings.ContainsAny(u.Bucket, "/ ") {
			t.Fatalf("bad bucket %q from %q", u.Bucket, s)
		}
		if u.Prefix != "" {
			if !strings.HasSuffix(u.Prefix, "/") {
				t.Fatalf("prefix %q does not end in /", u.Prefix)
			}
			if err := storage.ValidateKey(u.Prefix + "x"); err != nil {
				t.Fatalf("prefix %q from %q: %v", u.Prefix, s, err)
			}
		}
		if again, err := ParseS3URL(u.String()); err != nil || again != u {
			t.Fatalf("%q: %+v does not round-trip: %+v %v", s, u, again, err)
		}
	})
}

// FuzzParseObjectKey: keys come from a bucket listing; an accepted key
// names a log directory and an offset that give the same key back.
func FuzzParseObjectKey(f *testing.F) {
	for _, s := range []string{
		"audit/bastion/b1/20250301T120000Z-0a1b2c3d/00000000000000004096.jsonl",
		"20250301T120000Z-0a1b2c3d/00000000000000000000.jsonl",
		"a/20250301T120000Z-0a1b2c3d/99999999999999999999.jsonl",
		"rec/x.cast",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		dir, off, ok := parseObjectKey(key)
		if !ok {
			return
		}
		if off < 0 || objectKey(dir, off) != key {
			t.Fatalf("%q -> %q %d does not round-trip", key, dir, off)
		}
	})
}
