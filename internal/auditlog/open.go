package auditlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/storage"
)

// DefaultCloseTimeout bounds how long Close of a serving log waits for the
// last batches to be stored.
const DefaultCloseTimeout = 10 * time.Second

// oneShotTimeout bounds the same for a one-shot command, which an operator
// is waiting for.
const oneShotTimeout = 5 * time.Second

// Part names one part's audit log.
type Part struct {
	// Writer and WriterID name the hash chain ("bastion" and its id,
	// "signer" and its host name, "kube-forwarder" and its id).
	Writer, WriterID string
	// Path is the log file; "-" writes to stdout.
	Path string
	// DataDir is the part's data directory (where its audit key is kept).
	DataDir string
	// Serve is set for the part's long-running process: it mirrors to
	// stdout when [audit] stdout is set and ships to S3 in the background.
	// A one-shot command (postern-signer revoke, host-cert) writes the file
	// only (its stdout is the operator's), and at Close ships what is
	// pending unless a serving process is doing that.
	Serve bool
}

// Options are for tests and wiring; the zero value is what production uses.
type Options struct {
	Logger *slog.Logger
	// Store replaces the [storage] bucket as the S3 sink's destination.
	Store storage.Store
	// Stdout replaces os.Stdout as the stdout sink.
	Stdout io.Writer
	// CloseTimeout bounds Close's last shipping (default
	// DefaultCloseTimeout; 5s for a one-shot command).
	CloseTimeout time.Duration
}

// Log is a part's audit log with the sinks the configuration asks for.
// Emit events through it; Close it at shutdown.
type Log struct {
	*audit.Writer
	ship    *Shipper
	timeout time.Duration
	log     *slog.Logger
	stop    context.CancelFunc
	done    chan struct{}
	once    sync.Once
	err     error
}

// Open opens p's audit log as [audit] says: the key file, checkpoint
// cadence, fsync policy, the stdout mirror, and shipping to S3.
func Open(ctx context.Context, cfg *config.Config, p Part, o Options) (*Log, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := cfg.Audit
	opt := writerOptions(cfg, p, log)
	if p.Path == "-" && a.KeyFile == "" {
		// A stdout log was not signed before [audit]; a part running with
		// a read-only data directory (a container) keeps running, unsigned.
		k, err := audit.LoadOrCreateKey(opt.KeyFile)
		if err != nil {
			log.Warn("the audit log on stdout is not signed: no audit key; set [audit] key_file", "err", err)
		}
		opt.Key, opt.KeyFile = k, ""
	}
	l := &Log{log: log, timeout: o.CloseTimeout}
	if l.timeout <= 0 {
		l.timeout = DefaultCloseTimeout
		if !p.Serve {
			l.timeout = oneShotTimeout
		}
	}
	var mirrors multiMirror
	if a.Stdout && p.Serve && p.Path != "-" {
		out := o.Stdout
		if out == nil {
			out = os.Stdout
		}
		mirrors = append(mirrors, out)
	}
	if a.S3 && p.Path == "-" {
		return nil, fmt.Errorf("audit.s3: the %s's audit log is stdout: shipping needs a file (the file is the spool); set its audit_log to a file", p.Writer)
	}
	if a.S3 {
		// The file must exist before the shipper opens it.
		f, err := os.OpenFile(p.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open audit log: %w", err)
		}
		f.Close()
		store := o.Store
		if store == nil {
			if store, err = storage.NewS3(ctx, storage.S3ConfigFor(cfg.Storage)); err != nil {
				return nil, err
			}
		}
		l.ship, err = NewShipper(p.Path, store, ShipperOptions{
			Prefix: dirPrefix(a.S3Prefix), Writer: p.Writer, WriterID: p.WriterID,
			Dest:          dest(cfg.Storage, a.S3Prefix),
			BatchInterval: a.S3BatchInterval.Duration, BatchBytes: a.S3BatchBytes,
			MinBackoff: cfg.Storage.UploadMinBackoff.Duration, MaxBackoff: cfg.Storage.UploadMaxBackoff.Duration,
			Timeout: cfg.Storage.UploadTimeout.Duration,
			Logger:  log,
		})
		switch {
		case errors.Is(err, ErrBusy) && !p.Serve:
			// The running server ships what this command writes.
		case errors.Is(err, ErrBusy):
			log.Warn("another process ships this audit log to S3; this one does not", "path", p.Path)
		case err != nil:
			return nil, err
		}
		if l.ship != nil && p.Serve {
			mirrors = append(mirrors, l.ship)
		}
	}
	if len(mirrors) > 0 {
		opt.Mirror = mirrors
	}
	w, err := audit.OpenFile(p.Path, opt)
	if err != nil {
		if l.ship != nil {
			l.ship.Close()
		}
		return nil, err
	}
	l.Writer = w
	if l.ship != nil && p.Serve {
		rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		l.stop, l.done = cancel, make(chan struct{})
		go func() { defer close(l.done); l.ship.Run(rctx) }()
	}
	return l, nil
}

// writerOptions maps [audit] to the writer's options.
func writerOptions(cfg *config.Config, p Part, log *slog.Logger) audit.Options {
	a := cfg.Audit
	return audit.Options{
		Writer: p.Writer, WriterID: p.WriterID,
		KeyFile: KeyFile(cfg, p, log),
		// Both say 0 for the default; config's -1 (never) is negative,
		// which the writer reads as never.
		CheckpointEvery:    a.CheckpointEvery,
		CheckpointInterval: a.CheckpointInterval.Duration,
		SyncEvery:          a.Sync == "event",
		Logger:             log,
	}
}

// KeyFile is where p's audit key is: [audit] key_file, else
// data_dir/audit_key. A signer or forwarder whose log is outside its data
// directory kept its key beside the log before [audit] existed; when that
// key exists and data_dir/audit_key does not, it is used (with a warning),
// so that the key auditors trust does not change under them.
func KeyFile(cfg *config.Config, p Part, log *slog.Logger) string {
	key := cfg.AuditKeyFile(p.DataDir)
	if cfg.Audit.KeyFile != "" || p.Path == "-" || p.Path == "" || p.Writer == "bastion" {
		return key
	}
	old := filepath.Join(filepath.Dir(p.Path), "audit_key")
	if old == key {
		return key
	}
	if _, err := os.Stat(key); err == nil {
		return key
	}
	if _, err := os.Stat(old); err == nil {
		if log != nil {
			log.Warn("using the audit key beside the audit log (its location before [audit] key_file); set [audit] key_file to keep it there", "key_file", old)
		}
		return old
	}
	return key
}

// dirPrefix makes a prefix end in "/" (or stay empty).
func dirPrefix(p string) string {
	if p != "" && p[len(p)-1] != '/' {
		p += "/"
	}
	return p
}

// dest names where batches go, for the state file.
func dest(st config.Storage, prefix string) string {
	return "s3://" + st.S3Bucket + "/" + dirPrefix(st.S3Prefix) + dirPrefix(prefix)
}

// Stats returns the S3 sink's counters; ok is false when nothing ships
// from this process.
func (l *Log) Stats() (s Stats, ok bool) {
	if l == nil || l.ship == nil {
		return Stats{}, false
	}
	return l.ship.Stats(), true
}

// Close closes the writer (a final signed checkpoint, fsync) and then
// ships what is pending, for at most the close timeout: what does not make
// it stays in the file and is shipped at the next start.
func (l *Log) Close() error {
	l.once.Do(func() {
		errs := []error{l.Writer.Close()}
		if l.ship != nil {
			if l.stop != nil {
				l.stop()
				<-l.done
			}
			ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
			if err := l.ship.Flush(ctx); err != nil {
				l.log.Warn("audit lines not shipped yet; they are sent at the next start", "err", err, "pending_lines", l.ship.Stats().PendingLines)
			}
			cancel()
			errs = append(errs, l.ship.Close())
		}
		l.err = errors.Join(errs...)
	})
	return l.err
}

// multiMirror hands each line to every mirror; one failing does not stop
// the others (the writer logs the error).
type multiMirror []io.Writer

func (m multiMirror) Write(p []byte) (int, error) {
	var errs []error
	for _, w := range m {
		if _, err := w.Write(p); err != nil {
			errs = append(errs, err)
		}
	}
	return len(p), errors.Join(errs...)
}
