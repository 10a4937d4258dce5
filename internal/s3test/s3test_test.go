package s3test_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/postern-dev/postern/internal/s3test"
	"github.com/postern-dev/postern/internal/storage"
)

// TestRestartKeepsData: objects survive Stop/Start and Kill/Start, and the
// server is unreachable while stopped.
func TestRestartKeepsData(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	st, err := storage.NewS3(ctx, srv.S3Config("p"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, "k", strings.NewReader("v"), 1, nil); err != nil {
		t.Fatal(err)
	}
	for _, stop := range []func(){srv.Stop, srv.Kill} {
		stop()
		if _, err := st.Stat(ctx, "k"); err == nil || errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Stat while stopped: %v, want a connection error", err)
		}
		srv.Start(t)
		if info, err := st.Stat(ctx, "k"); err != nil || info.Size != 1 {
			t.Fatalf("Stat after restart = %+v, %v", info, err)
		}
	}
}
