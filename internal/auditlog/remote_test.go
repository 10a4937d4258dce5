package auditlog

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/storage"
)

func TestParseS3URL(t *testing.T) {
	tests := []struct {
		in      string
		want    S3URL
		wantErr string
	}{
		{"s3://bucket/audit/", S3URL{"bucket", "audit/"}, ""},
		{"s3://bucket/audit", S3URL{"bucket", "audit/"}, ""},
		{"s3://bucket", S3URL{"bucket", ""}, ""},
		{"s3://bucket/", S3URL{"bucket", ""}, ""},
		{"s3://b.example-1/rec/audit/bastion/b1/", S3URL{"b.example-1", "rec/audit/bastion/b1/"}, ""},
		{"https://bucket/x", S3URL{}, "not an s3://"},
		{"bucket/x", S3URL{}, "not an s3://"},
		{"s3:///x", S3URL{}, "names no bucket"},
		{"s3://buck et/x", S3URL{}, "bad bucket"},
		{"s3://bucket//x", S3URL{}, "bad prefix"},
		{"s3://bucket/a/../x", S3URL{}, "bad prefix"},
		{"s3://bucket/a\nb", S3URL{}, "bad prefix"},
	}
	for _, tt := range tests {
		got, err := ParseS3URL(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseS3URL(%q) = %v, %v; want error %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseS3URL(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if again, err := ParseS3URL(got.String()); err != nil || again != got {
			t.Errorf("ParseS3URL(%q) does not round-trip: %+v %v", got.String(), again, err)
		}
	}
}

func TestParseObjectKey(t *testing.T) {
	good := "audit/bastion/b1/20250301T120000Z-0a1b2c3d/00000000000000004096.jsonl"
	dir, off, ok := parseObjectKey(good)
	if !ok || dir != "audit/bastion/b1/20250301T120000Z-0a1b2c3d/" || off != 4096 {
		t.Fatalf("parseObjectKey(%q) = %q %d %v", good, dir, off, ok)
	}
	if objectKey(dir, off) != good {
		t.Errorf("objectKey does not round-trip: %q", objectKey(dir, off))
	}
	for _, bad := range []string{
		"00000000000000004096.jsonl",
		"a/20250301T120000Z-0a1b2c3d/4096.jsonl",
		"a/20250301T120000Z-0a1b2c3d/00000000000000004096.json",
		"a/2025-03-01/00000000000000004096.jsonl",
		"a/20250301T120000Z-0a1b2c3d/99999999999999999999.jsonl", // beyond int64
		"a/20250301T120000Z-0a1b2c3d/-0000000000000004096.jsonl",
		"rec/2025/03/01/session.cast",
	} {
		if _, _, ok := parseObjectKey(bad); ok {
			t.Errorf("parseObjectKey(%q) accepted it", bad)
		}
	}
}

func TestEscapeSegment(t *testing.T) {
	for in, want := range map[string]string{
		"bastion": "bastion", "b1.example.com": "b1.example.com", "": "_", ".hidden": "%2Ehidden",
		"a/b": "a%2Fb", "..": "%2E.", "x y": "x%20y", "é": "%C3%A9",
	} {
		if got := escapeSegment(in); got != want {
			t.Errorf("escapeSegment(%q) = %q, want %q", in, got, want)
		}
		if err := storage.ValidateKey("p/" + escapeSegment(in) + "/k"); err != nil {
			t.Errorf("escapeSegment(%q) is not a valid key segment: %v", in, err)
		}
	}
}

// A batch removed from the store: the gap is reported, and the verifier
// names the events it held as removed.
func TestRemoteLogMissingBatch(t *testing.T) {
	e := newLogEnv(t)
	e.emit(t, 30)
	s := e.shipper(t, 600)
	if err := s.Ship(context.Background()); err != nil {
		t.Fatal(err)
	}
	logs, _ := e.remote(t)
	l := logs[0]
	if len(l.Objects) < 4 {
		t.Fatalf("only %d batches", len(l.Objects))
	}
	gone := l.Objects[2]
	data, _ := os.ReadFile(filepath.Join(e.store.Dir(), filepath.FromSlash(gone.Key)))
	goneEvents, err := audit.Read(strings.NewReader(string(data)))
	if err != nil || len(goneEvents) == 0 {
		t.Fatalf("read the batch to remove: %v", err)
	}
	if err := os.Remove(filepath.Join(e.store.Dir(), filepath.FromSlash(gone.Key))); err != nil {
		t.Fatal(err)
	}
	logs, err = ListLogs(context.Background(), e.store, "audit/")
	if err != nil {
		t.Fatal(err)
	}
	l = logs[0]
	gaps := l.Gaps()
	if len(gaps) != 1 || gaps[0].From != gone.Offset || gaps[0].To != gone.Offset+gone.Size || gaps[0].Overlap {
		t.Fatalf("gaps = %+v, want the removed batch at %d (%d bytes)", gaps, gone.Offset, gone.Size)
	}
	pub := e.key.Public().(ed25519.PublicKey)
	r, err := audit.Verify(func() (io.ReadCloser, error) { return l.Open(context.Background(), e.store), nil },
		audit.VerifyOptions{Keys: audit.KeySet{audit.Fingerprint(pub): pub}})
	if err != nil {
		t.Fatal(err)
	}
	var removed *audit.Finding
	for i, f := range r.Findings {
		if f.Kind == audit.KindRemoved {
			removed = &r.Findings[i]
		}
	}
	first, last := goneEvents[0].Seq, goneEvents[len(goneEvents)-1].Seq
	if removed == nil || removed.Seq != first || removed.SeqTo != last {
		t.Fatalf("findings = %v; want seq %d..%d removed", r.Findings, first, last)
	}
	// The finding's line is the first line after the gap: in the next batch.
	if key, n, ok := l.Locate(removed.Line); !ok || key != l.Objects[2].Key || n != 1 {
		t.Errorf("Locate(%d) = %s line %d %v; want the first line of %s", removed.Line, key, n, ok, l.Objects[2].Key)
	}
}

func TestListLogsEmpty(t *testing.T) {
	st, _ := storage.NewLocal(t.TempDir())
	st.Put(context.Background(), "rec/x.cast", strings.NewReader("x"), 1, nil)
	if _, err := ListLogs(context.Background(), st, ""); !errors.Is(err, ErrNoLogs) {
		t.Fatalf("err = %v, want ErrNoLogs", err)
	}
}
