package auditlog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern-dev/postern/internal/storage"
)

// Defaults of [ShipperOptions].
const (
	DefaultBatchInterval = 10 * time.Second
	DefaultBatchBytes    = 4 << 20
	DefaultMinBackoff    = time.Second
	DefaultMaxBackoff    = 5 * time.Minute
	DefaultTimeout       = 10 * time.Minute
)

// ErrBusy is returned by [NewShipper] when another process ships the log.
var ErrBusy = errors.New("another process ships this audit log")

// ShipperOptions configure [NewShipper].
type ShipperOptions struct {
	// Prefix is the key prefix of every batch ([audit] s3_prefix).
	Prefix string
	// Writer and WriterID name the directory the log's batches go to.
	Writer, WriterID string
	// Dest names the store (e.g. "s3://bucket/prefix/"), recorded in the
	// state file: a changed destination starts the log again there.
	Dest string
	// BatchInterval is how often waiting lines are shipped; BatchBytes
	// ships as soon as that many bytes were written (and caps one object,
	// except that a line is never split). Defaults 10s and 4 MiB.
	BatchInterval time.Duration
	BatchBytes    int64
	// MinBackoff and MaxBackoff bound the wait after failed uploads
	// (doubling, drawn from [d/2, d]); Timeout bounds one upload.
	MinBackoff, MaxBackoff, Timeout time.Duration
	Logger                          *slog.Logger
	// Now is the clock (log ids); nil means time.Now.
	Now func() time.Time
}

// Stats are a shipper's counters, for metrics.
type Stats struct {
	// LogID is the log being shipped; Offset how much of it is confirmed
	// stored.
	LogID  string
	Offset int64
	// PendingLines and PendingBytes wait to be shipped: complete lines, and
	// every byte after Offset (an incomplete last line included). Exact as
	// of the last look at the file, plus the lines written since.
	PendingLines int64
	PendingBytes int64
	// Batches and StoredBytes: objects confirmed stored since start.
	Batches     int64
	StoredBytes int64
	// UploadErrors counts failed uploads since start; LastError is the
	// latest ("" after a success).
	UploadErrors int64
	LastError    string
	LastErrorAt  time.Time
}

// Shipper copies an audit log file to a store in batches. The file is the
// spool: the shipper only reads it, keeps how much is confirmed stored in a
// state file beside it, and after an outage, a crash or a restart sends
// what is not confirmed again. See the package documentation.
type Shipper struct {
	path      string
	statePath string
	store     storage.Store
	opt       ShipperOptions
	log       *slog.Logger

	lock *os.File // LOG.s3state.lock, flocked for the shipper's life
	f    *os.File // the log, read-only

	pass sync.Mutex // one shipping pass at a time; guards below
	st   state
	dir  string // key directory of the log being shipped
	// scanEnd: lines in [st.Offset, scanEnd) were counted into lines.
	scanEnd int64
	lines   int64
	buf     []byte

	statsMu  sync.Mutex
	stats    Stats
	failures int       // consecutive failed passes
	gate     time.Time // no background pass before this (backoff)

	written atomic.Int64 // bytes reported by Notify since the last pass
	kick    chan struct{}
	closed  atomic.Bool
}

// NewShipper ships the log at path (which must exist) to store. It takes
// the lock beside the log ([ErrBusy] when another process holds it), reads
// the state file, and decides whether the file is the log it shipped
// before (then it goes on from the confirmed offset) or a new one (then a
// new log id starts at offset 0). It makes no request to the store.
func NewShipper(path string, store storage.Store, opt ShipperOptions) (*Shipper, error) {
	if opt.BatchInterval <= 0 {
		opt.BatchInterval = DefaultBatchInterval
	}
	if opt.BatchBytes <= 0 {
		opt.BatchBytes = DefaultBatchBytes
	}
	if opt.MinBackoff <= 0 {
		opt.MinBackoff = DefaultMinBackoff
	}
	if opt.MaxBackoff < opt.MinBackoff {
		opt.MaxBackoff = max(DefaultMaxBackoff, opt.MinBackoff)
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	s := &Shipper{path: path, statePath: path + ".s3state", store: store, opt: opt, log: opt.Logger, kick: make(chan struct{}, 1)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := storage.ValidateKey(objectKey(logDir(opt.Prefix, opt.Writer, opt.WriterID, newLogID(opt.Now())), 0)); err != nil {
		return nil, fmt.Errorf("audit shipping: %w", err)
	}
	lock, err := os.OpenFile(s.statePath+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit shipping: %w", err)
	}
	if busy, err := tryLock(lock); busy || err != nil {
		lock.Close()
		if busy {
			return nil, ErrBusy
		}
		return nil, fmt.Errorf("audit shipping: lock %s: %w", lock.Name(), err)
	}
	s.lock = lock
	if s.f, err = os.Open(path); err != nil {
		s.release()
		return nil, fmt.Errorf("audit shipping: %w", err)
	}
	if err := s.resume(); err != nil {
		s.release()
		return nil, err
	}
	return s, nil
}

func (s *Shipper) release() {
	if s.f != nil {
		s.f.Close()
	}
	unlock(s.lock)
	s.lock.Close()
}

// resume loads the state and checks it describes this file.
func (s *Shipper) resume() error {
	ino, size, err := s.stat()
	if err != nil {
		return err
	}
	st, ok, err := readState(s.statePath)
	if err != nil {
		// A damaged state loses nothing: the log starts again under a new
		// id (its batches are then stored twice).
		s.log.Error("audit shipping: unreadable state; shipping the whole log again as a new log", "err", err)
		return s.newLog("the state file was unreadable")
	}
	switch {
	case !ok:
		return s.newLog("")
	case st.Dest != s.opt.Dest || st.LogID == "":
		return s.newLog(fmt.Sprintf("the destination changed (was %s)", st.Dest))
	case st.Ino != ino:
		s.log.Warn("audit shipping: the log file was replaced since the last run (rotated or restored); lines the earlier file had after the confirmed offset were not shipped by this process",
			"path", s.path, "old_log_id", st.LogID, "old_offset", st.Offset)
		return s.newLog("the file was replaced")
	case size < st.Offset:
		return s.newLog(fmt.Sprintf("the file is shorter (%d bytes) than what was shipped (%d)", size, st.Offset))
	}
	s.st = st
	s.dir = logDir(s.opt.Prefix, s.opt.Writer, s.opt.WriterID, st.LogID)
	if same, err := s.headMatches(); err != nil {
		return err
	} else if !same {
		return s.newLog("its first bytes changed")
	}
	s.scanEnd = st.Offset
	s.setStats(func(x *Stats) { x.LogID, x.Offset = st.LogID, st.Offset })
	return nil
}

func (s *Shipper) stat() (ino uint64, size int64, err error) {
	fi, err := s.f.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("audit shipping: %w", err)
	}
	return inode(fi), fi.Size(), nil
}

// newLog starts shipping the file as a new log from offset 0.
func (s *Shipper) newLog(why string) error {
	ino, _, err := s.stat()
	if err != nil {
		return err
	}
	id := newLogID(s.opt.Now())
	if why != "" {
		s.log.Warn("audit shipping: starting a new log", "path", s.path, "log_id", id, "reason", why)
	}
	s.st = state{Version: stateVersion, LogID: id, Dest: s.opt.Dest, Ino: ino}
	s.dir = logDir(s.opt.Prefix, s.opt.Writer, s.opt.WriterID, id)
	s.scanEnd, s.lines = 0, 0
	s.setStats(func(x *Stats) { x.LogID, x.Offset = id, 0 })
	return s.saveState()
}

func (s *Shipper) saveState() error {
	s.st.Updated = s.opt.Now().UTC()
	return writeState(s.statePath, s.st)
}

// headMatches reports whether the file still starts with the bytes the
// state fingerprinted.
func (s *Shipper) headMatches() (bool, error) {
	if s.st.HeadLen == 0 {
		return true, nil
	}
	sum, err := s.hashRange(0, s.st.HeadLen)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return false, nil
	}
	return sum == s.st.HeadSHA256, err
}

func (s *Shipper) hashRange(off, n int64) (string, error) {
	h := sha256.New()
	got, err := io.Copy(h, io.NewSectionReader(s.f, off, n))
	if err != nil {
		return "", fmt.Errorf("audit shipping: read log: %w", err)
	}
	if got != n {
		return "", io.ErrUnexpectedEOF
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Notify tells the shipper n bytes were written (the writer's mirror), so
// that a full batch ships before the interval ends.
func (s *Shipper) Notify(n int) {
	s.setStats(func(x *Stats) { x.PendingLines++; x.PendingBytes += int64(n) })
	if s.written.Add(int64(n)) >= s.opt.BatchBytes {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// Write implements io.Writer for the audit writer's mirror: p is one line.
func (s *Shipper) Write(p []byte) (int, error) {
	s.Notify(len(p))
	return len(p), nil
}

// Stats returns the counters.
func (s *Shipper) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.stats
}

func (s *Shipper) setStats(fn func(*Stats)) {
	s.statsMu.Lock()
	fn(&s.stats)
	s.statsMu.Unlock()
}

// Run ships every BatchInterval, or sooner when BatchBytes were written,
// until ctx is done; after a failure it waits (backoff) and tries again.
func (s *Shipper) Run(ctx context.Context) {
	t := time.NewTimer(s.opt.BatchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
			s.statsMu.Lock()
			wait := time.Until(s.gate)
			s.statsMu.Unlock()
			if wait > 0 {
				continue // backing off: the timer brings the next attempt
			}
		}
		next := s.opt.BatchInterval
		if err := s.Ship(ctx); err != nil && ctx.Err() == nil {
			next = s.backoff()
			s.log.Warn("audit shipping failed; the lines stay in the log and are sent again", "err", err, "retry_in", next.Round(time.Millisecond))
		}
		t.Reset(next)
	}
}

// backoff records a failed pass and returns the wait before the next one.
func (s *Shipper) backoff() time.Duration {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	d := s.opt.MinBackoff
	for i := 0; i < s.failures && d < s.opt.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.opt.MaxBackoff)
	s.failures++
	d = d/2 + rand.N(d/2+1)
	s.gate = time.Now().Add(d)
	return d
}

// Ship sends every complete line not yet confirmed stored, in objects of
// at most BatchBytes (a longer line goes alone), each confirmed before the
// state moves past it. It returns the first error; what was not sent stays
// pending.
func (s *Shipper) Ship(ctx context.Context) error {
	s.pass.Lock()
	defer s.pass.Unlock()
	if s.closed.Load() {
		return errors.New("audit shipping: closed")
	}
	s.written.Store(0)
	end, err := s.look()
	if err != nil {
		return err
	}
	for s.st.Offset < end {
		if err := s.shipOne(ctx, end); err != nil {
			s.setStats(func(x *Stats) {
				x.UploadErrors++
				x.LastError, x.LastErrorAt = err.Error(), time.Now()
			})
			return err
		}
	}
	s.statsMu.Lock()
	s.failures, s.gate = 0, time.Time{}
	s.stats.LastError = ""
	s.statsMu.Unlock()
	return nil
}

// look checks the file is still the log being shipped (else starts a new
// log), counts the new complete lines and returns where they end.
func (s *Shipper) look() (int64, error) {
	_, size, err := s.stat()
	if err != nil {
		return 0, err
	}
	if size < s.st.Offset {
		if err := s.newLog(fmt.Sprintf("the file was truncated to %d bytes, below the %d shipped", size, s.st.Offset)); err != nil {
			return 0, err
		}
	} else if same, err := s.headMatches(); err != nil {
		return 0, err
	} else if !same {
		if err := s.newLog("its first bytes changed (rewritten in place)"); err != nil {
			return 0, err
		}
	}
	end, n, err := s.countLines(max(s.scanEnd, s.st.Offset), size)
	if err != nil {
		return 0, err
	}
	s.lines += n
	s.scanEnd = end
	s.setStats(func(x *Stats) {
		x.PendingLines, x.PendingBytes = s.lines, size-s.st.Offset
	})
	return end, nil
}

// countLines counts the newlines in [from, size) and returns the offset
// just after the last one (from when there is none).
func (s *Shipper) countLines(from, size int64) (end, n int64, err error) {
	end = from
	if cap(s.buf) < 64<<10 {
		s.buf = make([]byte, 64<<10)
	}
	buf := s.buf[:64<<10]
	for pos := from; pos < size; {
		m, err := s.f.ReadAt(buf[:min(int64(len(buf)), size-pos)], pos)
		if err != nil && !(errors.Is(err, io.EOF) && m > 0) {
			return 0, 0, fmt.Errorf("audit shipping: read log: %w", err)
		}
		chunk := buf[:m]
		if c := bytes.Count(chunk, []byte{'\n'}); c > 0 {
			n += int64(c)
			end = pos + int64(bytes.LastIndexByte(chunk, '\n')) + 1
		}
		pos += int64(m)
	}
	return end, n, nil
}

// shipOne stores the next batch: complete lines from the confirmed offset,
// up to BatchBytes (at least one line), ending at or before end.
func (s *Shipper) shipOne(ctx context.Context, end int64) error {
	off := s.st.Offset
	want := min(end-off, s.opt.BatchBytes)
	batch, err := s.read(off, want)
	if err != nil {
		return err
	}
	cut := bytes.LastIndexByte(batch, '\n') + 1
	for cut == 0 {
		// One line longer than a batch: it goes alone, whole.
		more := min(end-off-int64(len(batch)), s.opt.BatchBytes)
		next, err := s.read(off+int64(len(batch)), more)
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(next, '\n'); i >= 0 {
			cut = len(batch) + i + 1
		}
		batch = append(batch, next...)
	}
	batch = batch[:cut]
	key := objectKey(s.dir, off)
	pctx, cancel := context.WithTimeout(ctx, s.opt.Timeout)
	defer cancel()
	info, err := s.store.Put(pctx, key, bytes.NewReader(batch), int64(len(batch)), nil)
	switch {
	case errors.Is(err, storage.ErrExists):
		return s.adopt(ctx, key, off, end)
	case err != nil:
		return err
	}
	return s.advance(info, bytes.Count(batch, []byte{'\n'}))
}

func (s *Shipper) read(off, n int64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := s.f.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("audit shipping: read log: %w", err)
	}
	return b, nil
}

// advance moves the confirmed offset past a stored batch and saves it.
func (s *Shipper) advance(info storage.ObjectInfo, lines int) error {
	s.st.Offset += info.Size
	s.st.Batches++
	s.lines -= int64(lines)
	if s.st.HeadLen < headMax && s.st.HeadLen < s.st.Offset {
		n := min(headMax, s.st.Offset)
		sum, err := s.hashRange(0, n)
		if err != nil {
			return err
		}
		s.st.HeadLen, s.st.HeadSHA256 = n, sum
	}
	s.setStats(func(x *Stats) {
		x.Offset = s.st.Offset
		x.Batches++
		x.StoredBytes += info.Size
		x.PendingLines = s.lines
		x.PendingBytes = max(0, x.PendingBytes-info.Size)
	})
	if err := s.saveState(); err != nil {
		// The batch is stored; a restart from the older state finds it
		// there (adopt) and goes on.
		s.log.Error("audit shipping: state not saved", "err", err)
	}
	return nil
}

// adopt handles a batch key that holds an object already: a batch this
// log stored before a crash cut the state update short (possibly cut at
// another line). When the object is the file's bytes from off, the offset
// moves past it; anything else is a conflict, and the log starts again
// under a new id so that nothing is lost or mixed.
func (s *Shipper) adopt(ctx context.Context, key string, off, end int64) error {
	sctx, cancel := context.WithTimeout(ctx, s.opt.Timeout)
	defer cancel()
	info, err := s.store.Stat(sctx, key)
	if err != nil {
		return err
	}
	if info.Size > 0 && off+info.Size <= end && info.SHA256 != "" {
		sum, err := s.hashRange(off, info.Size)
		if err != nil {
			return err
		}
		if sum == info.SHA256 {
			b, err := s.read(off, info.Size)
			if err != nil {
				return err
			}
			if b[len(b)-1] == '\n' {
				s.log.Info("audit shipping: batch already stored (an earlier run stored it)", "key", key)
				return s.advance(info, bytes.Count(b, []byte{'\n'}))
			}
		}
	}
	s.log.Error("audit shipping: an object with other content holds this batch's key; shipping the whole log again as a new log",
		"key", key, "size", info.Size, "sha256", info.SHA256)
	return s.newLog("key conflict at " + key)
}

// Flush ships everything pending, retrying (with backoff) until it is all
// confirmed or ctx is done.
func (s *Shipper) Flush(ctx context.Context) error {
	d := s.opt.MinBackoff
	for {
		err := s.Ship(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(d):
		}
		d = min(2*d, s.opt.MaxBackoff)
	}
}

// Close releases the file and the lock. Call it after Run returned.
func (s *Shipper) Close() error {
	s.pass.Lock()
	defer s.pass.Unlock()
	if s.closed.Swap(true) {
		return nil
	}
	s.release()
	return nil
}
