package config

import (
	"strings"
	"testing"
	"time"
)

func TestStorageDefaults(t *testing.T) {
	c := Default()
	s := c.Storage
	if s.UploadMinBackoff.Duration != time.Second || s.UploadMaxBackoff.Duration != 5*time.Minute ||
		s.UploadTimeout.Duration != 10*time.Minute || s.SpoolSyncInterval.Duration != time.Second {
		t.Errorf("storage defaults = %+v", s)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("default config invalid: %v", err)
	}
	c, err := Parse("s.toml", []byte("[storage]\ns3_bucket = \"rec\"\ns3_prefix = \"prod/postern/\"\ns3_endpoint = \"http://127.0.0.1:7070\"\ns3_path_style = true\ns3_credentials_file = \"/etc/postern/aws-credentials\"\nupload_max_backoff = \"1m\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.UploadMaxBackoff.Duration != time.Minute || c.Storage.UploadMinBackoff.Duration != time.Second {
		t.Errorf("storage = %+v", c.Storage)
	}
}

func TestStorageErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"s3 settings without bucket", "[storage]\ns3_region = \"eu-west-1\"\ns3_path_style = true\n", []string{"s.toml:2: storage.s3_region: has no effect without storage.s3_bucket", "s.toml:3: storage.s3_path_style"}},
		{"relative local dir", "[storage]\nlocal_dir = \"rec\"\n", []string{"s.toml:2: storage.local_dir: must be an absolute path"}},
		{"bucket url", "[storage]\ns3_bucket = \"s3://rec\"\n", []string{"storage.s3_bucket: is a bucket name"}},
		{"prefix dotdot", "[storage]\ns3_bucket = \"rec\"\ns3_prefix = \"a/../b\"\n", []string{"s.toml:3: storage.s3_prefix"}},
		{"prefix absolute", "[storage]\ns3_bucket = \"rec\"\ns3_prefix = \"/a\"\n", []string{"storage.s3_prefix"}},
		{"endpoint", "[storage]\ns3_bucket = \"rec\"\ns3_endpoint = \"127.0.0.1:7070\"\n", []string{"s.toml:3: storage.s3_endpoint: must be an absolute http(s) URL"}},
		{"credentials file", "[storage]\ns3_bucket = \"rec\"\ns3_credentials_file = \"creds\"\n", []string{"storage.s3_credentials_file: must be an absolute path"}},
		{"backoff order", "[storage]\nupload_min_backoff = \"10m\"\nupload_max_backoff = \"1m\"\n", []string{"s.toml:3: storage.upload_max_backoff: must not be below"}},
		{"bad duration", "[storage]\nupload_timeout = \"soon\"\n", []string{"s.toml:2", "upload_timeout", "invalid duration"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("s.toml", []byte(tt.in))
			if err == nil {
				t.Fatal("Parse succeeded, want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}
