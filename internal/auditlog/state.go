package auditlog

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// stateVersion is the version of the state file format.
const stateVersion = 1

// headMax is how much of the start of a log its state fingerprints: enough
// to hold the first event, whose time makes it unique.
const headMax = 4096

// state is what the shipper keeps beside the log (LOG.s3state): which log
// it ships, where to, and how much of it is confirmed stored.
type state struct {
	Version int `json:"version"`
	// LogID names this log (one file, from its first byte) in object keys;
	// a new id starts when the file is replaced or truncated.
	LogID string `json:"log_id"`
	// Dest is the store and key directory the objects go to; a changed
	// setting starts a new log there.
	Dest string `json:"dest"`
	// Ino is the log file's inode; HeadLen and HeadSHA256 fingerprint its
	// first bytes (an inode can be reused by a new file).
	Ino        uint64 `json:"ino"`
	HeadLen    int64  `json:"head_len"`
	HeadSHA256 string `json:"head_sha256,omitempty"`
	// Offset: the bytes [0, Offset) of the log are confirmed stored, and
	// Offset is at a line boundary.
	Offset int64 `json:"offset"`
	// Batches counts the objects stored for this log.
	Batches int64 `json:"batches"`
	// Updated is when the state was written, for people reading it.
	Updated time.Time `json:"updated"`
}

var (
	reLogID = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$`)
	reHex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// newLogID is a log id that sorts by the time it was made: a log started
// later gets keys after an earlier one of the same writer.
func newLogID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// parseState decodes and checks a state file. It is read back from disk,
// where anything may have happened to it: every field is checked.
func parseState(b []byte) (state, error) {
	var s state
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil {
		return state{}, fmt.Errorf("decode: %w", err)
	}
	if d.More() {
		return state{}, errors.New("decode: data after the state")
	}
	switch {
	case s.Version != stateVersion:
		return state{}, fmt.Errorf("version %d, want %d", s.Version, stateVersion)
	case !reLogID.MatchString(s.LogID):
		return state{}, fmt.Errorf("bad log id %q", s.LogID)
	case s.Dest == "":
		return state{}, errors.New("no dest")
	case s.Offset < 0 || s.Batches < 0:
		return state{}, errors.New("negative offset or batch count")
	case s.HeadLen < 0 || s.HeadLen > headMax || s.HeadLen > s.Offset:
		return state{}, fmt.Errorf("bad head length %d", s.HeadLen)
	case s.HeadLen > 0 && !reHex64.MatchString(s.HeadSHA256), s.HeadLen == 0 && s.HeadSHA256 != "":
		return state{}, errors.New("bad head hash")
	}
	return s, nil
}

// readState reads the state file; a missing file is (state{}, false, nil).
func readState(path string) (state, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return state{}, false, nil
	}
	if err != nil {
		return state{}, false, fmt.Errorf("read audit shipping state: %w", err)
	}
	s, err := parseState(b)
	if err != nil {
		return state{}, false, fmt.Errorf("audit shipping state %s: %w", path, err)
	}
	return s, true, nil
}

// writeState replaces the state file atomically and durably: a temporary
// file, fsync, rename, fsync of the directory. A crash leaves the old state
// or the new one.
func writeState(path string, s state) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode audit shipping state: %w", err)
	}
	b = append(b, '\n')
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write audit shipping state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write audit shipping state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write audit shipping state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write audit shipping state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write audit shipping state: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write audit shipping state: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write audit shipping state: sync %s: %w", dir, err)
	}
	return nil
}
