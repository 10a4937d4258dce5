package config

import (
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// Defaults of the [storage] upload settings.
const (
	DefaultUploadMinBackoff  = time.Second
	DefaultUploadMaxBackoff  = 5 * time.Minute
	DefaultUploadTimeout     = 10 * time.Minute
	DefaultSpoolSyncInterval = time.Second
)

func (s *Storage) applyDefaults() {
	setDurDefault(&s.UploadMinBackoff, DefaultUploadMinBackoff)
	setDurDefault(&s.UploadMaxBackoff, DefaultUploadMaxBackoff)
	setDurDefault(&s.UploadTimeout, DefaultUploadTimeout)
	setDurDefault(&s.SpoolSyncInterval, DefaultSpoolSyncInterval)
}

// validateStorage checks [storage]. The prefix rules match the object key
// rules of internal/storage (which this package does not import, to keep
// the AWS SDK out of binaries that only read configuration).
func (c *Config) validateStorage(add func(error)) {
	s := c.Storage
	if s.S3Bucket == "" {
		for key, set := range map[string]bool{
			"storage.s3_prefix":           s.S3Prefix != "",
			"storage.s3_region":           s.S3Region != "",
			"storage.s3_endpoint":         s.S3Endpoint != "",
			"storage.s3_path_style":       s.S3PathStyle,
			"storage.s3_profile":          s.S3Profile != "",
			"storage.s3_credentials_file": s.S3CredentialsFile != "",
		} {
			if set {
				add(c.errAt(key, "has no effect without storage.s3_bucket"))
			}
		}
		if !filepath.IsAbs(s.LocalDir) {
			add(c.errAt("storage.local_dir", "must be an absolute path, got %q", s.LocalDir))
		}
	} else if strings.ContainsAny(s.S3Bucket, "/ \t") {
		add(c.errAt("storage.s3_bucket", "is a bucket name, not a path or URL: %q", s.S3Bucket))
	}
	if p := strings.TrimSuffix(s.S3Prefix, "/"); s.S3Prefix != "" {
		for seg := range strings.SplitSeq(p, "/") {
			if seg == "" || strings.HasPrefix(seg, ".") || strings.ContainsAny(seg, "\\\x00\n\r\t") {
				add(c.errAt("storage.s3_prefix", "must be relative, without empty, dot or hidden segments: %q", s.S3Prefix))
				break
			}
		}
	}
	if s.S3Endpoint != "" {
		if u, err := url.Parse(s.S3Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			add(c.errAt("storage.s3_endpoint", "must be an absolute http(s) URL, got %q", s.S3Endpoint))
		}
	}
	if s.S3CredentialsFile != "" && !filepath.IsAbs(s.S3CredentialsFile) {
		add(c.errAt("storage.s3_credentials_file", "must be an absolute path, got %q", s.S3CredentialsFile))
	}
	if s.UploadMaxBackoff.Duration < s.UploadMinBackoff.Duration {
		add(c.errAt("storage.upload_max_backoff", "must not be below upload_min_backoff (%v)", s.UploadMinBackoff.Duration))
	}
}
