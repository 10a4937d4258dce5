package storage

import (
	"context"

	"github.com/postern-dev/postern/internal/config"
)

// S3ConfigFor is the S3 configuration of a [storage] section: its bucket,
// prefix, region, endpoint, addressing and credential settings.
func S3ConfigFor(st config.Storage) S3Config {
	return S3Config{
		Bucket: st.S3Bucket, Prefix: st.S3Prefix, Region: st.S3Region, Endpoint: st.S3Endpoint, PathStyle: st.S3PathStyle,
		Profile: st.S3Profile, CredentialsFile: st.S3CredentialsFile,
	}
}

// FromConfig returns the store that [storage] in the configuration names:
// the S3 bucket when s3_bucket is set, else the local directory.
func FromConfig(ctx context.Context, st config.Storage) (Store, error) {
	if st.S3Bucket == "" {
		return NewLocal(st.LocalDir)
	}
	return NewS3(ctx, S3ConfigFor(st))
}
