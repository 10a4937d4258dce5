package spool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/postern-dev/postern/internal/storage"
)

// Errors for policy decisions; test with errors.Is.
var (
	// ErrLocked: another process has the spool directory open.
	ErrLocked = errors.New("spool: directory in use by another process")
	// ErrBusy: the key is already open or sealed in this spool.
	ErrBusy = errors.New("spool: key already spooled")
	// ErrClosed: the writer was closed.
	ErrClosed = errors.New("spool: writer closed")
)

// DefaultSyncInterval is how long written bytes may wait for an fsync.
const DefaultSyncInterval = time.Second

// Options configure [Open]. The zero value is usable.
type Options struct {
	// SyncInterval bounds how long after a Write the file is fsynced.
	// Default [DefaultSyncInterval].
	SyncInterval time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Spool is a spool directory. It is safe for concurrent use.
type Spool struct {
	dir  string
	opts Options
	lock *os.File

	mu     sync.Mutex
	open   map[string]bool // keys with a Writer open in this process
	notify chan struct{}   // signalled when a file is sealed
}

// Open opens (creating with mode 0700) the spool directory dir and locks
// it against other processes. Call [Spool.Recover] before creating writers
// to seal what an earlier process left.
func Open(dir string, opts Options) (*Spool, error) {
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create spool %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("lock spool %s: %w", dir, err)
	}
	return &Spool{dir: dir, opts: opts, lock: lock, open: map[string]bool{}, notify: make(chan struct{}, 1)}, nil
}

// Dir returns the spool directory.
func (s *Spool) Dir() string { return s.dir }

// Close releases the directory lock. Open writers stay usable; their files
// are recovered by the next process if not closed.
func (s *Spool) Close() error { return s.lock.Close() }

func (s *Spool) path(name, suffix string) string { return filepath.Join(s.dir, name+suffix) }

func (s *Spool) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Create starts a spool file for key with object metadata meta (stored
// beside it and given to Put on upload). It fails with [ErrBusy] if the key
// is open or waiting for upload.
func (s *Spool) Create(key string, meta map[string]string) (*Writer, error) {
	name, err := FileName(key)
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[key] {
		return nil, fmt.Errorf("%w: %s", ErrBusy, key)
	}
	if _, err := os.Lstat(s.path(name, sealedSuffix)); err == nil {
		return nil, fmt.Errorf("%w: %s (sealed, not yet uploaded)", ErrBusy, key)
	}
	if _, err := os.Lstat(s.path(name, partSuffix)); err == nil {
		return nil, fmt.Errorf("%w: %s (left by an earlier process; run Recover)", ErrBusy, key)
	}
	if len(meta) == 0 {
		if err := os.Remove(s.path(name, metaSuffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("spool %s: %w", key, err)
		}
	} else {
		b, err := json.Marshal(meta)
		if err != nil {
			return nil, fmt.Errorf("spool %s: %w", key, err)
		}
		if err := writeFileSync(s.path(name, metaSuffix), b); err != nil {
			return nil, fmt.Errorf("spool %s: write metadata: %w", key, err)
		}
	}
	f, err := os.OpenFile(s.path(name, partSuffix), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("%w: %s (left by an earlier process; run Recover)", ErrBusy, key)
	}
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", key, err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool %s: %w", key, err)
	}
	s.open[key] = true
	return &Writer{s: s, key: key, name: name, f: f}, nil
}

// writeFileSync writes data to path through a temporary file and rename.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// seal turns NAME.part into NAME.sealed without ever replacing a file.
func (s *Spool) seal(name string) error {
	part, sealed := s.path(name, partSuffix), s.path(name, sealedSuffix)
	if err := os.Link(part, sealed); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
		// A crash between link and unlink leaves both names of one file.
		a, errA := os.Stat(part)
		b, errB := os.Stat(sealed)
		if errA != nil || errB != nil || !os.SameFile(a, b) {
			return fmt.Errorf("seal %s: a different sealed file exists; keeping both", name)
		}
	}
	if err := os.Remove(part); err != nil {
		return err
	}
	return syncDir(s.dir)
}

// Writer appends to one spool file. It is safe for concurrent use.
type Writer struct {
	s    *Spool
	key  string
	name string

	mu     sync.Mutex
	f      *os.File
	size   int64
	dirty  bool
	timer  *time.Timer
	err    error // first fsync error, reported by Write, Sync and Close
	closed bool
}

// Key returns the object key.
func (w *Writer) Key() string { return w.key }

// Size returns the number of bytes written so far.
func (w *Writer) Size() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.size
}

// Write appends p. Accepted bytes are in the file (they survive the
// process being killed) and are fsynced within the sync interval.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, ErrClosed
	}
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.f.Write(p)
	w.size += int64(n)
	if n > 0 && !w.dirty {
		w.dirty = true
		w.timer = time.AfterFunc(w.s.opts.SyncInterval, w.timedSync)
	}
	if err != nil {
		return n, fmt.Errorf("spool %s: %w", w.key, err)
	}
	return n, nil
}

func (w *Writer) timedSync() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.syncLocked()
	}
}

func (w *Writer) syncLocked() error {
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	if w.dirty {
		w.dirty = false
		if err := w.f.Sync(); err != nil && w.err == nil {
			w.err = fmt.Errorf("spool %s: fsync: %w", w.key, err)
		}
	}
	return w.err
}

// Sync fsyncs what was written (e.g. at an audit checkpoint).
func (w *Writer) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	return w.syncLocked()
}

// Close fsyncs the file and seals it for upload. After an error the file
// stays in the spool as .part and is sealed by the next Recover.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	w.closed = true
	w.dirty = true // always fsync on close
	err := w.syncLocked()
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("spool %s: %w", w.key, cerr)
	}
	if err == nil {
		if serr := w.s.seal(w.name); serr != nil {
			err = fmt.Errorf("spool %s: seal: %w", w.key, serr)
		}
	}
	w.s.mu.Lock()
	delete(w.s.open, w.key)
	w.s.mu.Unlock()
	if err == nil {
		w.s.signal()
	}
	return err
}

// Recovered is a spool file that an earlier process left open, handed to
// the [Spool.Recover] callback before it is sealed.
type Recovered struct {
	// Key is the object key; Meta its metadata (nil if none).
	Key  string
	Meta map[string]string
	// Size is the length found. The last write may be incomplete (a
	// partial line): check with ReadAt before appending.
	Size int64

	f *os.File
}

// ReadAt reads the content as found.
func (r *Recovered) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }

// Write appends to the file, e.g. a closing event naming the crash.
func (r *Recovered) Write(p []byte) (int, error) { return r.f.Write(p) }

// RecoverFunc may append a marker to a recovered file. An error is
// reported but the file is sealed and uploaded all the same.
type RecoverFunc func(r *Recovered) error

// Recover seals the .part files that no Writer of this process has open,
// calling fn (if not nil) on each first, and removes leftovers (metadata
// without data, temporary files). It returns the keys it sealed. Files it
// cannot seal stay as they are and are reported in the error.
func (s *Spool) Recover(fn RecoverFunc) ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("recover spool %s: %w", s.dir, err)
	}
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name()] = true
	}
	var keys []string
	var errs []error
	for _, e := range ents {
		n := e.Name()
		switch {
		case strings.HasSuffix(n, metaSuffix+".tmp"):
			os.Remove(s.path(n, ""))
		case strings.HasSuffix(n, metaSuffix):
			base := strings.TrimSuffix(n, metaSuffix)
			if !names[base+partSuffix] && !names[base+sealedSuffix] {
				s.opts.Logger.Info("spool: removing metadata without data", "file", n)
				os.Remove(s.path(n, ""))
			}
		case strings.HasSuffix(n, partSuffix):
			base := strings.TrimSuffix(n, partSuffix)
			key, err := ParseFileName(base)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			s.mu.Lock()
			busy := s.open[key]
			s.mu.Unlock()
			if busy {
				continue
			}
			if err := s.recoverOne(key, base, fn); err != nil {
				errs = append(errs, err)
			}
			keys = append(keys, key)
		}
	}
	if len(keys) > 0 {
		s.signal()
	}
	return keys, errors.Join(errs...)
}

func (s *Spool) recoverOne(key, name string, fn RecoverFunc) error {
	var cbErr error
	if fn != nil {
		f, err := os.OpenFile(s.path(name, partSuffix), os.O_RDWR|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("recover %s: %w", key, err)
		}
		r := &Recovered{Key: key, f: f}
		if fi, err := f.Stat(); err == nil {
			r.Size = fi.Size()
		}
		r.Meta, _ = s.readMeta(name)
		if err := fn(r); err != nil {
			cbErr = fmt.Errorf("recover %s: callback: %w", key, err)
		}
		if err := f.Sync(); err != nil && cbErr == nil {
			cbErr = fmt.Errorf("recover %s: fsync: %w", key, err)
		}
		f.Close()
	}
	if err := s.seal(name); err != nil {
		return errors.Join(cbErr, fmt.Errorf("recover %s: %w", key, err))
	}
	s.opts.Logger.Info("spool: sealed file left by an earlier process", "key", key)
	return cbErr
}

func (s *Spool) readMeta(name string) (map[string]string, error) {
	b, err := os.ReadFile(s.path(name, metaSuffix))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("metadata %s: %w", name, err)
	}
	return m, nil
}

// File is a sealed spool file waiting for upload.
type File struct {
	Key     string
	Size    int64
	ModTime time.Time
	name    string
}

// Sealed lists the files waiting for upload, oldest first.
func (s *Spool) Sealed() ([]File, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("read spool %s: %w", s.dir, err)
	}
	var out []File
	for _, e := range ents {
		n := e.Name()
		if !strings.HasSuffix(n, sealedSuffix) || !e.Type().IsRegular() {
			continue
		}
		base := strings.TrimSuffix(n, sealedSuffix)
		key, err := ParseFileName(base)
		if err != nil {
			s.opts.Logger.Warn("spool: ignoring file with unexpected name", "file", n)
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, File{Key: key, Size: fi.Size(), ModTime: fi.ModTime(), name: base})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].ModTime.Equal(out[j].ModTime) {
			return out[i].ModTime.Before(out[j].ModTime)
		}
		return out[i].Key < out[j].Key
	})
	return out, nil
}

// upload puts one sealed file and removes it once the store confirmed it.
func (s *Spool) upload(ctx context.Context, st storage.Store, f File) (storage.ObjectInfo, error) {
	fh, err := os.Open(s.path(f.name, sealedSuffix))
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	meta, err := s.readMeta(f.name)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	info, err := st.Put(ctx, f.Key, fh, fi.Size(), meta)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	// Confirmed: only now may the spool copy go.
	if err := os.Remove(s.path(f.name, sealedSuffix)); err != nil {
		return info, fmt.Errorf("remove uploaded %s: %w", f.Key, err)
	}
	if err := os.Remove(s.path(f.name, metaSuffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return info, fmt.Errorf("remove metadata of %s: %w", f.Key, err)
	}
	return info, syncDir(s.dir)
}
