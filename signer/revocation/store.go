package revocation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Store keeps the revocation list. Implementations must be safe for
// concurrent use, also by several processes (the revoke command next to a
// running signer) or, for a shared backend, several signers.
type Store interface {
	// Load returns the current list; a list that does not exist yet is
	// empty (generation 0).
	Load(ctx context.Context) (*List, error)
	// Update runs change on the current list (under an exclusive lock for
	// FileStore; ObjectStore has none and keeps concurrent changes).
	// When change reports a change, the list's generation grows, Updated
	// is set, and the change is stored before Update returns.
	Update(ctx context.Context, now time.Time, change func(*List) (bool, error)) (*List, error)
	// Stamp is a cheap token that differs whenever the stored list may
	// have changed (for a file: inode, size and modification time).
	Stamp(ctx context.Context) (string, error)
}

// FileStore keeps the list in a JSON file, next to a lock file
// (Path + ".lock") taken with flock(2).
type FileStore struct {
	Path string
}

var _ Store = (*FileStore)(nil)

// Load reads the list.
func (s *FileStore) Load(_ context.Context) (*List, error) {
	return s.read()
}

func (s *FileStore) read() (*List, error) {
	b, err := os.ReadFile(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return &List{Format: FormatVersion}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read revocation list: %w", err)
	}
	var l List
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("parse revocation list %s: %w", s.Path, err)
	}
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("revocation list %s: %w", s.Path, err)
	}
	return &l, nil
}

// Stamp returns inode, size and modification time of the file.
func (s *FileStore) Stamp(_ context.Context) (string, error) {
	fi, err := os.Stat(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return "none", nil
	}
	if err != nil {
		return "", fmt.Errorf("stat revocation list: %w", err)
	}
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf("%d-%d-%d", ino, fi.Size(), fi.ModTime().UnixNano()), nil
}

// Update locks, reads, changes and atomically replaces the file.
func (s *FileStore) Update(ctx context.Context, now time.Time, change func(*List) (bool, error)) (*List, error) {
	unlock, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	l, err := s.read()
	if err != nil {
		return nil, err
	}
	changed, err := change(l)
	if err != nil || !changed {
		return l, err
	}
	l.Format = FormatVersion
	l.Generation++
	l.Updated = now.UTC().Truncate(time.Second)
	if err := l.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode revocation list: %w", err)
	}
	if err := WriteFileAtomic(s.Path, append(b, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("write revocation list: %w", err)
	}
	return l, nil
}

// lock takes the exclusive flock on Path.lock, waiting until ctx is done.
func (s *FileStore) lock(ctx context.Context) (func(), error) {
	f, err := os.OpenFile(s.Path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open revocation lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock revocation list: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock revocation list: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// WriteFileAtomic replaces path with data: a temporary file in the same
// directory is written, synced and renamed over path, then the directory is
// synced. Readers see the old content or the new, never a mix.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
