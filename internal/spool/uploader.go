package spool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/postern-dev/postern/internal/storage"
)

// Defaults of [UploaderOptions].
const (
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = 5 * time.Minute
	DefaultTimeout    = 10 * time.Minute
	DefaultRescan     = time.Minute
)

// UploaderOptions configure [NewUploader]. The zero value is usable.
type UploaderOptions struct {
	// MinBackoff is the wait after the first failure; each further
	// consecutive failure doubles it up to MaxBackoff. The actual wait is
	// drawn uniformly from [d/2, d] (jitter). Defaults 1s and 5m.
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds one upload attempt. Default 10m.
	Timeout time.Duration
	// Rescan is how often the directory is looked at when nothing was
	// sealed meanwhile. Default 1m.
	Rescan time.Duration
	// Uploaded, if set, is called after each confirmed upload (after the
	// spool file was removed), e.g. to write an audit event.
	Uploaded func(storage.ObjectInfo)
	// Logger; default the spool's.
	Logger *slog.Logger
}

// Stats are the uploader's counters, for metrics.
type Stats struct {
	// PendingFiles and PendingBytes: sealed files waiting for upload, as
	// of the last scan.
	PendingFiles int
	PendingBytes int64
	// Uploaded and UploadedBytes: confirmed uploads since start.
	Uploaded      int64
	UploadedBytes int64
	// UploadErrors counts failed attempts since start.
	UploadErrors int64
	// LastError is the latest failure ("" after a success), at LastErrorAt.
	LastError   string
	LastErrorAt time.Time
}

// Uploader moves sealed spool files to a store. Run it in one goroutine
// per spool.
type Uploader struct {
	spool *Spool
	store storage.Store
	opts  UploaderOptions

	mu          sync.Mutex
	stats       Stats
	failures    int                  // consecutive failed attempts
	gate        time.Time            // no attempt before this (global backoff)
	fileBackoff map[string]time.Time // per key: no attempt before this
	fileFails   map[string]int
}

// NewUploader returns an uploader from sp to st.
func NewUploader(sp *Spool, st storage.Store, opts UploaderOptions) *Uploader {
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Rescan <= 0 {
		opts.Rescan = DefaultRescan
	}
	if opts.Logger == nil {
		opts.Logger = sp.opts.Logger
	}
	return &Uploader{spool: sp, store: st, opts: opts, fileBackoff: map[string]time.Time{}, fileFails: map[string]int{}}
}

// Stats returns a snapshot of the counters.
func (u *Uploader) Stats() Stats {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.stats
}

// backoff returns the wait after n consecutive failures (n >= 1): the
// exponential step capped at MaxBackoff, with jitter in its upper half.
func (u *Uploader) backoff(n int) time.Duration {
	d := u.opts.MinBackoff
	for i := 1; i < n && d < u.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, u.opts.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// Run uploads until ctx is done, waking when a file is sealed, when a
// backoff ends and every Rescan. It returns ctx's error. After a failure
// it stops the pass and waits (the store is probably down) before trying
// again; a file that keeps failing on its own also gets its own backoff,
// so it does not hold up the others.
func (u *Uploader) Run(ctx context.Context) error {
	for {
		wake := u.pass(ctx, false)
		if err := ctx.Err(); err != nil {
			return err
		}
		t := time.NewTimer(time.Until(wake))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-u.spool.notify:
		case <-t.C:
		}
		t.Stop()
	}
}

// UploadPending tries every sealed file once, ignoring backoff, and
// returns the failures. Use it at shutdown or in tests.
func (u *Uploader) UploadPending(ctx context.Context) error {
	u.pass(ctx, true)
	files, err := u.spool.Sealed()
	if err != nil {
		return err
	}
	if len(files) > 0 {
		u.mu.Lock()
		last := u.stats.LastError
		u.mu.Unlock()
		return fmt.Errorf("spool: %d files not uploaded; last error: %s", len(files), last)
	}
	return nil
}

// pass uploads due files and returns when the next pass should start.
func (u *Uploader) pass(ctx context.Context, all bool) time.Time {
	now := time.Now()
	wake := now.Add(u.opts.Rescan)
	files, err := u.spool.Sealed()
	if err != nil {
		u.fail(err, "")
		return now.Add(u.backoff(1))
	}
	u.setPending(files)
	u.mu.Lock()
	gate := u.gate
	live := map[string]bool{}
	for _, f := range files {
		live[f.Key] = true
	}
	for k := range u.fileBackoff {
		if !live[k] {
			delete(u.fileBackoff, k)
			delete(u.fileFails, k)
		}
	}
	u.mu.Unlock()
	if !all && now.Before(gate) {
		return gate
	}
	// Files that never failed first, then by age.
	var due, later []File
	for _, f := range files {
		u.mu.Lock()
		next := u.fileBackoff[f.Key]
		u.mu.Unlock()
		if !all && now.Before(next) {
			if next.Before(wake) {
				wake = next
			}
			continue
		}
		if next.IsZero() {
			due = append(due, f)
		} else {
			later = append(later, f)
		}
	}
	for _, f := range append(due, later...) {
		if ctx.Err() != nil {
			return wake
		}
		if err := u.uploadOne(ctx, f); err != nil {
			if all {
				continue
			}
			u.mu.Lock()
			g := u.gate
			u.mu.Unlock()
			return g
		}
	}
	if files, err := u.spool.Sealed(); err == nil {
		u.setPending(files)
	}
	return wake
}

func (u *Uploader) uploadOne(ctx context.Context, f File) error {
	actx, cancel := context.WithTimeout(ctx, u.opts.Timeout)
	info, err := u.spool.upload(actx, u.store, f)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return err // shutting down: not a store failure
		}
		u.fail(err, f.Key)
		return err
	}
	u.mu.Lock()
	u.failures = 0
	u.gate = time.Time{}
	delete(u.fileBackoff, f.Key)
	delete(u.fileFails, f.Key)
	u.stats.Uploaded++
	u.stats.UploadedBytes += info.Size
	u.stats.LastError = ""
	u.mu.Unlock()
	u.opts.Logger.Info("spool: uploaded", "key", f.Key, "bytes", info.Size, "sha256", info.SHA256)
	if u.opts.Uploaded != nil {
		u.opts.Uploaded(info)
	}
	return nil
}

// fail records a failed attempt for key ("" for a spool error) and sets
// the global and per-file backoff.
func (u *Uploader) fail(err error, key string) {
	now := time.Now()
	u.mu.Lock()
	u.failures++
	d := u.backoff(u.failures)
	u.gate = now.Add(d)
	if key != "" {
		u.fileFails[key]++
		u.fileBackoff[key] = now.Add(u.backoff(u.fileFails[key]))
	}
	u.stats.UploadErrors++
	u.stats.LastError = err.Error()
	u.stats.LastErrorAt = now
	u.mu.Unlock()
	level := slog.LevelWarn
	if errors.Is(err, storage.ErrExists) || errors.Is(err, storage.ErrAccessDenied) {
		level = slog.LevelError // will not fix itself
	}
	u.opts.Logger.Log(context.Background(), level, "spool: upload failed; keeping the file and retrying",
		"key", key, "retry_in", d.Round(time.Millisecond), "err", err)
}

func (u *Uploader) setPending(files []File) {
	var n int64
	for _, f := range files {
		n += f.Size
	}
	u.mu.Lock()
	u.stats.PendingFiles = len(files)
	u.stats.PendingBytes = n
	u.mu.Unlock()
}
