package auditlog

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/storage"
)

// logEnv is an audit log written by a real audit.Writer and shipped to a
// local store.
type logEnv struct {
	dir   string
	path  string
	store *storage.Local
	key   ed25519.PrivateKey
	w     *audit.Writer
	// clock is the shippers' clock (log ids sort by it).
	clock time.Time
}

func newLogEnv(t *testing.T) *logEnv {
	t.Helper()
	dir := t.TempDir()
	st, err := storage.NewLocal(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	e := &logEnv{dir: dir, path: filepath.Join(dir, "audit.log"), store: st, key: key, clock: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	e.open(t)
	return e
}

func (e *logEnv) open(t *testing.T) {
	t.Helper()
	w, err := audit.OpenFile(e.path, audit.Options{Writer: "bastion", WriterID: "b1", Key: e.key, CheckpointEvery: 7, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	e.w = w
	t.Cleanup(func() { w.Close() })
}

func (e *logEnv) emit(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := e.w.Emit(context.Background(), audit.Event{Event: audit.AuthFailed, Person: fmt.Sprintf("p%d@example.com", i), Reason: strings.Repeat("x", i%50)}); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *logEnv) shipper(t *testing.T, batch int64) *Shipper {
	t.Helper()
	s, err := NewShipper(e.path, e.store, ShipperOptions{Prefix: "audit/", Writer: "bastion", WriterID: "b1", Dest: "local:" + e.store.Dir(), BatchBytes: batch, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		Now: func() time.Time { return e.clock }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func (e *logEnv) file(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// remote reads every log under audit/ back from the store.
func (e *logEnv) remote(t *testing.T) ([]*RemoteLog, [][]byte) {
	t.Helper()
	logs, err := ListLogs(context.Background(), e.store, "audit/")
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, l := range logs {
		rc := l.Open(context.Background(), e.store)
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if g := l.Gaps(); len(g) > 0 {
			t.Errorf("log %s has gaps: %+v", l.Dir, g)
		}
		out = append(out, b)
	}
	return logs, out
}

func TestShipBatches(t *testing.T) {
	e := newLogEnv(t)
	e.emit(t, 40)
	s := e.shipper(t, 1000)
	if st := s.Stats(); st.Batches != 0 {
		t.Fatalf("stats before shipping = %+v", st)
	}
	if err := s.Ship(context.Background()); err != nil {
		t.Fatal(err)
	}
	file := e.file(t)
	logs, data := e.remote(t)
	if len(logs) != 1 || !bytes.Equal(data[0], file) {
		t.Fatalf("%d logs; stored %d bytes, file %d", len(logs), len(data[0]), len(file))
	}
	if !strings.HasPrefix(logs[0].Dir, "audit/bastion/b1/") {
		t.Errorf("log dir %q", logs[0].Dir)
	}
	if len(logs[0].Objects) < 5 {
		t.Errorf("%d objects for %d bytes in batches of 1000", len(logs[0].Objects), len(file))
	}
	for _, o := range logs[0].Objects {
		if o.Size > 1000 {
			t.Errorf("object %s is %d bytes, over the batch size", o.Key, o.Size)
		}
	}
	st := s.Stats()
	if st.Offset != int64(len(file)) || st.PendingLines != 0 || st.PendingBytes != 0 || st.Batches != int64(len(logs[0].Objects)) || st.UploadErrors != 0 {
		t.Errorf("stats = %+v", st)
	}
	r, err := audit.Verify(func() (io.ReadCloser, error) { return logs[0].Open(context.Background(), e.store), nil },
		audit.VerifyOptions{Keys: audit.KeySet{audit.Fingerprint(e.key.Public().(ed25519.PublicKey)): e.key.Public().(ed25519.PublicKey)}})
	if err != nil || !r.OK(false) {
		t.Fatalf("verify the stored log: %v %+v", err, r)
	}

	// Nothing new: nothing stored. New events: stored after the others.
	if err := s.Ship(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, d := e.remote(t); !bytes.Equal(d[0], file) {
		t.Fatal("a pass with nothing pending changed the store")
	}
	e.emit(t, 3)
	if err := s.Ship(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, d := e.remote(t); !bytes.Equal(d[0], e.file(t)) {
		t.Fatal("new events not shipped")
	}
}

func TestShipLongLine(t *testing.T) {
	e := newLogEnv(t)
	if err := e.w.Emit(context.Background(), audit.Event{Event: audit.Command, Command: strings.Repeat("y", 5000)}); err != nil {
		t.Fatal(err)
	}
	e.emit(t, 2)
	s := e.shipper(t, 1000)
	if err := s.Ship(context.Background()); err != nil {
		t.Fatal(err)
	}
	logs, data := e.remote(t)
	if !bytes.Equal(data[0], e.file(t)) {
		t.Fatal("stored log differs")
	}
	if o := logs[0].Objects[0]; o.Size < 5000 || bytes.Count(data[0][:o.Size], []byte{'\n'}) != 1 {
		t.Errorf("the long line was not shipped alone and whole: first object %d bytes", o.Size)
	}
}

func TestShipTornLineWaits(t *testing.T) {
	e := newLogEnv(t)
	e.emit(t, 3)
	complete := int64(len(e.file(t)))
	f, _ := os.OpenFile(e.path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"time":"2025-01-01T00:00:00Z","event":"auth.fa`)
	f.Close()
	s := e.shipper(t, 1<<20)
	if err := s.Ship(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, data := e.remote(t)
	if int64(len(data[0])) != complete {
		t.Fatalf("stored %d bytes, want the %d of complete lines", len(data[0]), complete)
	}
	if st := s.Stats(); st.PendingLines != 0 || st.PendingBytes == 0 {
		t.Errorf("stats with a torn line = %+v", st)
	}
	// The writer ends the torn line and accounts for it; then it ships.
	e.w.Close()
	e.open(t)
	e.emit(t, 1)
	if err := s.Ship(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, data = e.remote(t)
	if !bytes.Equal(data[0], e.file(t)) {
		t.Fatal("the completed torn line and the recovery were not shipped")
	}
	if !bytes.Contains(data[0], []byte(audit.Recovered)) {
		t.Fatal("no audit.recovered event in the stored log")
	}
}

func TestShipResumesAfterRestart(t *testing.T) {
	e := newLogEnv(t)
	e.emit(t, 10)
	s := e.shipper(t, 500)
	if err := s.Ship(context.Background()); err != nil {
		t.Fatal(err)
	}
	id := s.Stats().LogID
	s.Close()
	e.emit(t, 10)
	s2 := e.shipper(t, 500)
	if st := s2.Stats(); st.LogID != id || st.Offset == 0 {
		t.Fatalf("after a restart: %+v, want log %s at its offset", st, id)
	}
	if err := s2.Ship(context.Background()); err != nil {
		t.Fatal(err)
	}
	logs, data := e.remote(t)
	if len(logs) != 1 || !bytes.Equal(data[0], e.file(t)) {
		t.Fatalf("%d logs after a restart; stored log equal to the file: %v", len(logs), bytes.Equal(data[0], e.file(t)))
	}
}

// A crash after a batch was stored and before the state recorded it: the
// next run finds the batch at its key (cut elsewhere, as the batch size
// changed) and goes on after it.
func TestShipCrashBeforeStateSaved(t *testing.T) {
	e := newLogEnv(t)
	e.emit(t, 10)
	s := e.shipper(t, 300)
	before, err := os.ReadFile(e.path + ".s3state")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ship(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.WriteFile(e.path+".s3state", before, 0o600); err != nil {
		t.Fatal(err)
	}
	e.emit(t, 5)
	s2 := e.shipper(t, 1<<20)
	if st := s2.Stats(); st.Offset != 0 {
		t.Fatalf("state not rolled back: %+v", st)
	}
	if err := s2.Ship(context.Background()); err != nil {
		t.Fatal(err)
	}
	logs, data := e.remote(t)
	if len(logs) != 1 || !bytes.Equal(data[0], e.file(t)) {
		t.Fatalf("%d logs; stored log equal to the file: %v", len(logs), len(data) > 0 && bytes.Equal(data[0], e.file(t)))
	}
}

func TestShipNewLog(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, e *logEnv)
	}{
		{"rotated (renamed, a new file)", func(t *testing.T, e *logEnv) {
			e.w.Close()
			if err := os.Rename(e.path, e.path+".1"); err != nil {
				t.Fatal(err)
			}
			e.open(t)
		}},
		{"truncated", func(t *testing.T, e *logEnv) {
			e.w.Close()
			if err := os.Truncate(e.path, 0); err != nil {
				t.Fatal(err)
			}
			e.open(t)
		}},
		{"state unreadable", func(t *testing.T, e *logEnv) {
			os.WriteFile(e.path+".s3state", []byte("{not json"), 0o600)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newLogEnv(t)
			e.emit(t, 5)
			s := e.shipper(t, 1<<20)
			if err := s.Ship(context.Background()); err != nil {
				t.Fatal(err)
			}
			first := s.Stats().LogID
			s.Close()
			_, old := e.remote(t)
			e.clock = e.clock.Add(time.Hour)
			tt.change(t, e)
			e.emit(t, 4)
			s2 := e.shipper(t, 1<<20)
			if err := s2.Ship(context.Background()); err != nil {
				t.Fatal(err)
			}
			logs, data := e.remote(t)
			if len(logs) != 2 || s2.Stats().LogID == first {
				t.Fatalf("%d logs, log id %s (first %s); want a new log", len(logs), s2.Stats().LogID, first)
			}
			if !bytes.Equal(data[0], old[0]) || !bytes.Equal(data[1], e.file(t)) {
				t.Fatal("the first log changed, or the new one is not the file")
			}
		})
	}
}

func TestShipTruncatedWhileRunning(t *testing.T) {
	e := newLogEnv(t)
	e.emit(t, 5)
	s := e.shipper(t, 1<<20)
	if err := s.Ship(context.Background()); err != nil {
		t.Fatal(err)
	}
	first := s.Stats().LogID
	e.clock = e.clock.Add(time.Hour)
	if err := os.Truncate(e.path, 0); err != nil { // logrotate copytruncate
		t.Fatal(err)
	}
	e.emit(t, 2)
	if err := s.Ship(context.Background()); err != nil {
		t.Fatal(err)
	}
	logs, data := e.remote(t)
	if len(logs) != 2 || s.Stats().LogID == first || !bytes.Equal(data[1], e.file(t)) {
		t.Fatalf("%d logs after a truncation; want the new content as a second log", len(logs))
	}
}

// failingStore fails every Put while down is set (a unit-test stand-in; the
// S3 outage with a real server is TestS3Outage).
type failingStore struct {
	storage.Store
	down bool
}

func (f *failingStore) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, meta map[string]string) (storage.ObjectInfo, error) {
	if f.down {
		return storage.ObjectInfo{}, errors.New("connection refused")
	}
	return f.Store.Put(ctx, key, body, size, meta)
}

func TestShipOutageKeepsLinesPending(t *testing.T) {
	e := newLogEnv(t)
	fs := &failingStore{Store: e.store, down: true}
	s, err := NewShipper(e.path, fs, ShipperOptions{Prefix: "audit/", Writer: "bastion", WriterID: "b1", Dest: "x", BatchBytes: 400})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e.emit(t, 12)
	for i := 0; i < 3; i++ {
		if err := s.Ship(context.Background()); err == nil {
			t.Fatal("Ship succeeded with the store down")
		}
	}
	st := s.Stats()
	if st.UploadErrors != 3 || st.PendingLines != int64(bytes.Count(e.file(t), []byte{'\n'})) || st.Offset != 0 || st.LastError == "" {
		t.Fatalf("stats during the outage = %+v", st)
	}
	fs.down = false
	if err := s.Ship(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, data := e.remote(t); !bytes.Equal(data[0], e.file(t)) {
		t.Fatal("the log was not shipped whole after the outage")
	}
	if st := s.Stats(); st.PendingLines != 0 || st.LastError != "" {
		t.Errorf("stats after the outage = %+v", st)
	}
}

func TestShipKeyConflictStartsNewLog(t *testing.T) {
	e := newLogEnv(t)
	e.emit(t, 3)
	s := e.shipper(t, 1<<20)
	key := objectKey(s.dir, 0)
	if _, err := e.store.Put(context.Background(), key, strings.NewReader("something else\n"), 15, nil); err != nil {
		t.Fatal(err)
	}
	first := s.Stats().LogID
	if err := s.Ship(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.Stats().LogID == first || s.Stats().Offset != int64(len(e.file(t))) {
		t.Fatalf("after a conflict: %+v", s.Stats())
	}
}

func TestShipOneProcessAtATime(t *testing.T) {
	e := newLogEnv(t)
	e.shipper(t, 0)
	if _, err := NewShipper(e.path, e.store, ShipperOptions{Dest: "x"}); !errors.Is(err, ErrBusy) {
		t.Fatalf("second shipper: %v, want ErrBusy", err)
	}
}

// Run ships on the interval and as soon as a batch's worth was written.
func TestShipRun(t *testing.T) {
	e := newLogEnv(t)
	s, err := NewShipper(e.path, e.store, ShipperOptions{Prefix: "audit/", Writer: "bastion", WriterID: "b1", Dest: "x", BatchBytes: 2000, BatchInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	e.w.Close()
	w, err := audit.OpenFile(e.path, audit.Options{Writer: "bastion", WriterID: "b1", Mirror: s, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := 0; i < 40; i++ {
		if err := w.Emit(context.Background(), audit.Event{Event: audit.AuthFailed, Reason: strings.Repeat("z", 40)}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Batches == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("nothing shipped after a full batch was written (interval 1h): %+v", s.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
