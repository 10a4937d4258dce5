package auditlog

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/postern-dev/postern/internal/s3test"
	"github.com/postern-dev/postern/internal/storage"
)

// TestS3Shipping: the shipper against a real S3 server (versitygw): batches
// land; a crash of the server (SIGKILL) fails uploads and loses nothing;
// a shipper restarted meanwhile goes on where the last one stopped; the
// bucket ends up holding the file byte for byte.
func TestS3Shipping(t *testing.T) {
	srv := s3test.Start(t)
	st, err := storage.NewS3(context.Background(), srv.S3Config("p"))
	if err != nil {
		t.Fatal(err)
	}
	e := newLogEnv(t)
	opts := ShipperOptions{Prefix: "audit/", Writer: "bastion", WriterID: "b1", Dest: "s3", BatchBytes: 700,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Timeout: 10 * time.Second}
	s, err := NewShipper(e.path, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.emit(t, 20)
	if err := s.Ship(context.Background()); err != nil {
		t.Fatal(err)
	}
	stored := func() []byte {
		t.Helper()
		logs, err := ListLogs(context.Background(), st, "audit/")
		if err != nil {
			t.Fatal(err)
		}
		if len(logs) != 1 || len(logs[0].Gaps()) != 0 {
			t.Fatalf("%d logs, gaps %+v", len(logs), logs[0].Gaps())
		}
		rc := logs[0].Open(context.Background(), st)
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(stored(), e.file(t)) {
		t.Fatal("the bucket does not hold the file")
	}

	srv.Kill()
	e.emit(t, 15)
	if err := s.Ship(context.Background()); err == nil {
		t.Fatal("Ship succeeded with S3 down")
	}
	st1 := s.Stats()
	if st1.UploadErrors == 0 || st1.PendingLines < 15 {
		t.Fatalf("stats during the outage = %+v", st1)
	}
	// The process restarts during the outage.
	s.Close()
	s, err = NewShipper(e.path, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Stats(); got.LogID != st1.LogID || got.Offset != st1.Offset {
		t.Fatalf("after a restart: %+v, was %+v", got, st1)
	}
	e.emit(t, 5)
	srv.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stored(), e.file(t)) {
		t.Fatal("after the outage the bucket does not hold the file")
	}
}
