package revocation

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/storage"
)

// Open returns the store signer.revocation_store names: the file
// signer.revocation_file ("file"), or change objects under revocations/ in
// the [storage] bucket ("s3"), with a local copy next to revocation_file
// (LocalCopySuffix) and that file imported into an empty shared list.
func Open(ctx context.Context, cfg *config.Config, log *slog.Logger) (Store, error) {
	switch cfg.Signer.RevocationStore {
	case "", "file":
		return &FileStore{Path: cfg.Signer.RevocationFile}, nil
	case "s3":
		objs, err := storage.FromConfig(ctx, cfg.Storage)
		if err != nil {
			return nil, fmt.Errorf("revocation store: %w", err)
		}
		st := cfg.Storage
		where := st.S3Prefix
		if where != "" && !strings.HasSuffix(where, "/") {
			where += "/"
		}
		return &ObjectStore{
			Objects:    objs,
			Source:     "s3://" + st.S3Bucket + "/" + where + DefaultObjectPrefix,
			LocalCopy:  cfg.Signer.RevocationFile + LocalCopySuffix,
			ImportFrom: cfg.Signer.RevocationFile,
			Logger:     log,
		}, nil
	}
	return nil, fmt.Errorf("signer.revocation_store: unknown store %q", cfg.Signer.RevocationStore)
}

// LocalCopySuffix is appended to signer.revocation_file to name the local
// copy of a shared list.
const LocalCopySuffix = ".s3-copy"
