package config

import (
	"strings"
	"testing"
	"time"
)

func TestAuditDefaults(t *testing.T) {
	c := Default()
	a := c.Audit
	if a.CheckpointEvery != 1000 || a.CheckpointInterval.Duration != time.Minute || a.Sync != "checkpoint" ||
		a.S3 || a.S3Prefix != "audit/" || a.S3BatchInterval.Duration != 10*time.Second || a.S3BatchBytes != 4<<20 {
		t.Errorf("audit defaults = %+v", a)
	}
	// The bastion's key stays where it always was: data_dir/audit_key,
	// wherever its log is.
	if got := c.AuditKeyFile(c.Bastion.DataDir); got != "/var/lib/postern/bastion/audit_key" {
		t.Errorf("bastion key = %q", got)
	}
	if got := c.AuditKeyFile("/var/lib/postern/kube-forwarder"); got != "/var/lib/postern/kube-forwarder/audit_key" {
		t.Errorf("forwarder key = %q", got)
	}
	if c.Signer.RevocationStore != "file" {
		t.Errorf("revocation_store default = %q", c.Signer.RevocationStore)
	}
	c, err := Parse("a.toml", []byte("[storage]\ns3_bucket = \"rec\"\n[audit]\nkey_file = \"/etc/postern/audit_key\"\ncheckpoint_every = -1\nsync = \"event\"\nstdout = true\ns3 = true\ns3_prefix = \"logs/audit/\"\n[signer]\nrevocation_store = \"s3\"\n[kube.forwarder]\nmetrics_listen = \"127.0.0.1:9102\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.AuditKeyFile("/b") != "/etc/postern/audit_key" || c.Audit.CheckpointEvery != -1 || !c.Audit.Stdout || !c.Audit.S3 {
		t.Errorf("audit = %+v", c.Audit)
	}
}

func TestAuditErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"s3 without bucket", "[audit]\ns3 = true\n", "a.toml:2: audit.s3: needs storage.s3_bucket"},
		{"sync", "[audit]\nsync = \"always\"\n", "a.toml:2: audit.sync: must be \"checkpoint\" or \"event\""},
		{"relative key", "[audit]\nkey_file = \"audit_key\"\n", "a.toml:2: audit.key_file: must be an absolute path"},
		{"checkpoint count", "[audit]\ncheckpoint_every = -5\n", "audit.checkpoint_every"},
		{"prefix", "[storage]\ns3_bucket = \"b\"\n[audit]\ns3_prefix = \"../x\"\n", "a.toml:4: audit.s3_prefix"},
		{"hidden prefix", "[storage]\ns3_bucket = \"b\"\n[audit]\ns3_prefix = \"audit/.x/\"\n", "a.toml:4: audit.s3_prefix: must be relative, without empty, dot or hidden segments"},
		{"absolute prefix", "[storage]\ns3_bucket = \"b\"\n[audit]\ns3_prefix = \"/audit/\"\n", "a.toml:4: audit.s3_prefix"},
		{"unknown key", "[audit]\nfsync = true\n", "a.toml:2: audit.fsync: unknown key"},
		{"revocation store", "[signer]\nrevocation_store = \"dynamo\"\n", "a.toml:2: signer.revocation_store: must be \"file\" or \"s3\""},
		{"revocation store s3", "[signer]\nrevocation_store = \"s3\"\n", "signer.revocation_store: \"s3\" needs storage.s3_bucket"},
		{"forwarder metrics", "[kube.forwarder]\nmetrics_listen = \"9102\"\n", "a.toml:2: kube.forwarder.metrics_listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("a.toml", []byte(tt.in))
			if err == nil {
				t.Fatal("Parse succeeded, want error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\ndoes not contain %q", err, tt.want)
			}
		})
	}
}
