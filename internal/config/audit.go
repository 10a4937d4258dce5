package config

import (
	"path/filepath"
	"strings"
	"time"
)

// Audit configures the audit log of whichever part reads the file: the
// signer, the bastion or the kube forwarder. Where the log itself is written
// stays in the part's own section (signer.audit_log, bastion.audit_log,
// kube.forwarder.audit_log).
type Audit struct {
	// KeyFile is the part's Ed25519 audit key, which signs checkpoints;
	// created (0600, with a .pub beside it) when missing. Default: the file
	// "audit_key" in the part's data directory (signer.data_dir,
	// bastion.data_dir, kube.forwarder.data_dir), beside its other keys
	// rather than beside a log that log shippers may read.
	KeyFile string `toml:"key_file"`
	// CheckpointEvery writes a signed checkpoint after that many events.
	// Default 1000; -1 never (checkpoints are still written by time and at
	// shutdown).
	CheckpointEvery int `toml:"checkpoint_every"`
	// CheckpointInterval writes a signed checkpoint when events were
	// written and this much time passed. Default 60s.
	CheckpointInterval Duration `toml:"checkpoint_interval"`
	// Sync is when the log file is fsync(2)ed: "checkpoint" (default: at
	// every checkpoint and at shutdown) or "event" (after every event;
	// durable against power loss, slower: see docs/benchmarks.md).
	Sync string `toml:"sync"`
	// Stdout also writes every line to standard output (for journald or a
	// log shipper), next to the file.
	Stdout bool `toml:"stdout"`
	// S3 ships the log to the [storage] bucket, under S3Prefix, in batched
	// objects. The local file is the spool: what was not confirmed stored
	// is sent again after an outage or a restart, so nothing is lost.
	// Requires storage.s3_bucket.
	S3 bool `toml:"s3"`
	// S3Prefix is where the batches go inside the bucket (after
	// storage.s3_prefix). Default "audit/".
	S3Prefix string `toml:"s3_prefix"`
	// S3BatchInterval is the longest a written event waits before it is
	// shipped. Default 10s.
	S3BatchInterval Duration `toml:"s3_batch_interval"`
	// S3BatchBytes ships a batch as soon as this many bytes are waiting.
	// Default 4 MiB.
	S3BatchBytes int64 `toml:"s3_batch_bytes"`
}

// Defaults of [audit].
const (
	DefaultAuditCheckpointEvery    = 1000
	DefaultAuditCheckpointInterval = 60 * time.Second
	DefaultAuditS3Prefix           = "audit/"
	DefaultAuditS3BatchInterval    = 10 * time.Second
	DefaultAuditS3BatchBytes       = 4 << 20
)

func (a *Audit) applyDefaults() {
	if a.CheckpointEvery == 0 {
		a.CheckpointEvery = DefaultAuditCheckpointEvery
	}
	setDurDefault(&a.CheckpointInterval, DefaultAuditCheckpointInterval)
	setDefault(&a.Sync, "checkpoint")
	setDefault(&a.S3Prefix, DefaultAuditS3Prefix)
	setDurDefault(&a.S3BatchInterval, DefaultAuditS3BatchInterval)
	if a.S3BatchBytes == 0 {
		a.S3BatchBytes = DefaultAuditS3BatchBytes
	}
}

// AuditKeyFile is the audit key of a part whose data directory is
// dataDir: [audit] key_file when set, else dataDir/audit_key.
func (c *Config) AuditKeyFile(dataDir string) string {
	if c.Audit.KeyFile != "" {
		return c.Audit.KeyFile
	}
	return filepath.Join(dataDir, "audit_key")
}

func (c *Config) validateAudit(add func(error)) {
	a := c.Audit
	if a.KeyFile != "" && !filepath.IsAbs(a.KeyFile) {
		add(c.errAt("audit.key_file", "must be an absolute path, got %q", a.KeyFile))
	}
	if a.CheckpointEvery < -1 {
		add(c.errAt("audit.checkpoint_every", "must be a positive count, or -1 for never, got %d", a.CheckpointEvery))
	}
	if a.CheckpointInterval.Duration < 0 {
		add(c.errAt("audit.checkpoint_interval", "must not be negative"))
	}
	if a.Sync != "checkpoint" && a.Sync != "event" {
		add(c.errAt("audit.sync", "must be \"checkpoint\" or \"event\", got %q", a.Sync))
	}
	if a.S3 && c.Storage.S3Bucket == "" {
		add(c.errAt("audit.s3", "needs storage.s3_bucket: the audit log is shipped to the recordings' bucket"))
	}
	if p := trimSlash(a.S3Prefix); a.S3Prefix != "" {
		// The object key rules of internal/storage.
		for seg := range strings.SplitSeq(p, "/") {
			if seg == "" || strings.HasPrefix(seg, ".") || strings.ContainsAny(seg, "\\\x00\n\r\t") {
				add(c.errAt("audit.s3_prefix", "must be relative, without empty, dot or hidden segments: %q", a.S3Prefix))
				break
			}
		}
	}
	if a.S3BatchInterval.Duration < 0 {
		add(c.errAt("audit.s3_batch_interval", "must not be negative"))
	}
	if a.S3BatchBytes < 0 {
		add(c.errAt("audit.s3_batch_bytes", "must not be negative"))
	}
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}
