package spool_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/postern-dev/postern/internal/s3test"
	"github.com/postern-dev/postern/internal/spool"
	"github.com/postern-dev/postern/internal/storage"
)

func quietLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func openSpool(t *testing.T, dir string) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(dir, spool.Options{SyncInterval: 10 * time.Millisecond, Logger: quietLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp
}

func newLocal(t *testing.T) *storage.Local {
	t.Helper()
	st, err := storage.NewLocal(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func write(t *testing.T, sp *spool.Spool, key, body string, meta map[string]string) {
	t.Helper()
	w, err := sp.Create(key, meta)
	if err != nil {
		t.Fatal(err)
	}
	// Two writes with a pause, so the timed fsync runs in between.
	half := len(body) / 2
	if _, err := io.WriteString(w, body[:half]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(15 * time.Millisecond)
	if _, err := io.WriteString(w, body[half:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, st storage.Store, key string) string {
	t.Helper()
	rc, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return string(b)
}

// spoolFiles lists the data files in dir (not the lock).
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Name() != ".lock" {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// eventually polls cond until it holds or 20s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWriteSealUpload(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	sp := openSpool(t, dir)
	st := newLocal(t)

	w, err := sp.Create("recordings/2026/01/02/s1.cast", map[string]string{"user": "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Create("recordings/2026/01/02/s1.cast", nil); !errors.Is(err, spool.ErrBusy) {
		t.Errorf("second Create of an open key: %v, want ErrBusy", err)
	}
	io.WriteString(w, "line 1\n")
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"recordings%2F2026%2F01%2F02%2Fs1.cast.meta", "recordings%2F2026%2F01%2F02%2Fs1.cast.part"}, spoolFiles(t, dir)); diff != "" {
		t.Errorf("open spool files (-want +got):\n%s", diff)
	}
	io.WriteString(w, "line 2\n")
	if w.Size() != 14 {
		t.Errorf("Size = %d", w.Size())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, spool.ErrClosed) {
		t.Errorf("Write after Close: %v, want ErrClosed", err)
	}
	if diff := cmp.Diff([]string{"recordings%2F2026%2F01%2F02%2Fs1.cast.meta", "recordings%2F2026%2F01%2F02%2Fs1.cast.sealed"}, spoolFiles(t, dir)); diff != "" {
		t.Errorf("sealed spool files (-want +got):\n%s", diff)
	}
	if _, err := sp.Create("recordings/2026/01/02/s1.cast", nil); !errors.Is(err, spool.ErrBusy) {
		t.Errorf("Create of a sealed key: %v, want ErrBusy", err)
	}
	for _, p := range []string{dir, filepath.Join(dir, "recordings%2F2026%2F01%2F02%2Fs1.cast.sealed")} {
		fi, _ := os.Stat(p)
		if want := map[bool]os.FileMode{true: 0o700, false: 0o600}[fi.IsDir()]; fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}

	var confirmed []string
	u := spool.NewUploader(sp, st, spool.UploaderOptions{Uploaded: func(o storage.ObjectInfo) { confirmed = append(confirmed, o.Key) }})
	if err := u.UploadPending(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := get(t, st, "recordings/2026/01/02/s1.cast"); got != "line 1\nline 2\n" {
		t.Errorf("stored %q", got)
	}
	info, _ := st.Stat(context.Background(), "recordings/2026/01/02/s1.cast")
	if info.Meta["user"] != "alice" {
		t.Errorf("metadata not uploaded: %v", info.Meta)
	}
	if got := spoolFiles(t, dir); len(got) != 0 {
		t.Errorf("spool not empty after upload: %v", got)
	}
	if s := u.Stats(); s.Uploaded != 1 || s.UploadedBytes != 14 || s.PendingFiles != 0 || s.UploadErrors != 0 {
		t.Errorf("Stats = %+v", s)
	}
	if diff := cmp.Diff([]string{"recordings/2026/01/02/s1.cast"}, confirmed); diff != "" {
		t.Errorf("Uploaded callback (-want +got):\n%s", diff)
	}
}

func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	openSpool(t, dir)
	if _, err := spool.Open(dir, spool.Options{}); !errors.Is(err, spool.ErrLocked) {
		t.Errorf("second Open: %v, want ErrLocked", err)
	}
}

// flakyStore wraps a store and fails Put in a chosen way.
type flakyStore struct {
	storage.Store
	mode  atomic.Value // string: "ok", "fail-after-write", "fail", "hang"
	calls atomic.Int64
}

func (f *flakyStore) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, meta map[string]string) (storage.ObjectInfo, error) {
	f.calls.Add(1)
	switch f.mode.Load() {
	case "fail":
		return storage.ObjectInfo{}, errors.New("injected failure before writing")
	case "fail-after-write":
		// The object is written, but the confirmation is lost.
		if _, err := f.Store.Put(ctx, key, body, size, meta); err != nil {
			return storage.ObjectInfo{}, err
		}
		return storage.ObjectInfo{}, fmt.Errorf("injected failure after writing: %w", storage.ErrNotConfirmed)
	case "hang":
		<-ctx.Done()
		return storage.ObjectInfo{}, ctx.Err()
	}
	return f.Store.Put(ctx, key, body, size, meta)
}

func TestNoDeleteBeforeConfirmation(t *testing.T) {
	for _, mode := range []string{"fail", "fail-after-write", "hang"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			sp := openSpool(t, dir)
			local := newLocal(t)
			st := &flakyStore{Store: local}
			st.mode.Store(mode)
			write(t, sp, "audit/b1/2026-01-02/000001.jsonl", "{\"seq\":1}\n", nil)
			u := spool.NewUploader(sp, st, spool.UploaderOptions{Timeout: 50 * time.Millisecond, Logger: quietLogger(t)})
			for range 3 {
				if err := u.UploadPending(context.Background()); err == nil {
					t.Fatal("UploadPending succeeded with a failing store")
				}
			}
			if diff := cmp.Diff([]string{"audit%2Fb1%2F2026-01-02%2F000001.jsonl.sealed"}, spoolFiles(t, dir)); diff != "" {
				t.Fatalf("spool after failed uploads (-want +got):\n%s", diff)
			}
			if s := u.Stats(); s.UploadErrors != 3 || s.PendingFiles != 1 || s.LastError == "" {
				t.Errorf("Stats = %+v", s)
			}
			// The store recovers: the retry succeeds (for fail-after-write,
			// by finding the identical object) and only then is the file gone.
			st.mode.Store("ok")
			if err := u.UploadPending(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := spoolFiles(t, dir); len(got) != 0 {
				t.Errorf("spool after recovery: %v", got)
			}
			if got := get(t, local, "audit/b1/2026-01-02/000001.jsonl"); got != "{\"seq\":1}\n" {
				t.Errorf("stored %q", got)
			}
		})
	}
}

// TestConflictKept: an object with different content under the same key is
// never overwritten, and the spool file is kept for an operator.
func TestConflictKept(t *testing.T) {
	dir := t.TempDir()
	sp := openSpool(t, dir)
	st := newLocal(t)
	if _, err := st.Put(context.Background(), "k", strings.NewReader("old"), 3, nil); err != nil {
		t.Fatal(err)
	}
	write(t, sp, "k", "new", nil)
	u := spool.NewUploader(sp, st, spool.UploaderOptions{Logger: quietLogger(t)})
	if err := u.UploadPending(context.Background()); err == nil || !strings.Contains(u.Stats().LastError, "different content") {
		t.Fatalf("UploadPending = %v, stats %+v", err, u.Stats())
	}
	if got := spoolFiles(t, dir); len(got) != 1 || get(t, st, "k") != "old" {
		t.Errorf("spool %v, stored %q", got, get(t, st, "k"))
	}
}

// TestS3Outage stops the real S3 server under a running uploader: files
// stay in the spool and errors are counted; when S3 returns, everything
// lands and the spool empties.
func TestS3Outage(t *testing.T) {
	srv := s3test.Start(t)
	st, err := storage.NewS3(context.Background(), srv.S3Config("postern"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sp := openSpool(t, dir)
	u := spool.NewUploader(sp, st, spool.UploaderOptions{
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Timeout: 5 * time.Second, Rescan: time.Second, Logger: quietLogger(t),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v", err)
		}
	}()

	want := map[string]string{}
	put := func(i int) {
		key := fmt.Sprintf("recordings/2026/01/02/s%d.cast", i)
		body := strings.Repeat(fmt.Sprintf("[%d.0, \"o\", \"output\"]\n", i), 100*i)
		want[key] = body
		write(t, sp, key, body, map[string]string{"session-id": fmt.Sprint(i)})
	}
	for i := 1; i <= 3; i++ {
		put(i)
	}
	eventually(t, "first uploads", func() bool { return u.Stats().Uploaded == 3 })

	srv.Kill() // as abrupt as an outage gets
	for i := 4; i <= 6; i++ {
		put(i)
	}
	eventually(t, "upload errors during the outage", func() bool { return u.Stats().UploadErrors >= 3 })
	if got := len(spoolFiles(t, dir)); got != 6 { // 3 data + 3 meta
		t.Fatalf("spool holds %d files during the outage, want 6: %v", got, spoolFiles(t, dir))
	}
	s := u.Stats()
	t.Logf("during outage: %+v", s)
	if s.Uploaded != 3 || s.LastError == "" {
		t.Errorf("Stats during outage = %+v", s)
	}

	srv.Start(t)
	eventually(t, "uploads after S3 returned", func() bool { return u.Stats().Uploaded == 6 })
	eventually(t, "empty spool", func() bool { return len(spoolFiles(t, dir)) == 0 })
	if s := u.Stats(); s.PendingFiles != 0 || s.PendingBytes != 0 || s.LastError != "" {
		t.Errorf("Stats after = %+v", s)
	}
	for k, v := range want {
		if got := get(t, st, k); got != v {
			t.Errorf("%s: stored %d bytes, want %d", k, len(got), len(v))
		}
	}
	list, err := st.List(context.Background(), "recordings/")
	if err != nil || len(list) != 6 {
		t.Errorf("List = %d objects, %v", len(list), err)
	}
}

// The crash test runs a writer in a child process and kills it with
// SIGKILL mid-write.
const helperEnv = "POSTERN_SPOOL_CRASH_HELPER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		crashHelper(dir)
		return
	}
	os.Exit(m.Run())
}

// crashHelper writes three files and waits to be killed: one sealed, one
// open with whole lines, one open ending in half a line.
func crashHelper(dir string) {
	sp, err := spool.Open(dir, spool.Options{SyncInterval: time.Hour})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	w1, _ := sp.Create("a/sealed.cast", nil)
	io.WriteString(w1, "done 1\ndone 2\n")
	w1.Close()
	w2, _ := sp.Create("a/open.cast", map[string]string{"session-id": "s2"})
	io.WriteString(w2, "line 1\nline 2\n")
	w3, _ := sp.Create("a/torn.cast", nil)
	io.WriteString(w3, "line 1\nhalf a li")
	fmt.Println("ready")
	select {}
}

func TestCrashRecovery(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper said %q", line)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	sp := openSpool(t, dir) // the dead process's lock is gone
	var seen []string
	keys, err := sp.Recover(func(r *spool.Recovered) error {
		seen = append(seen, fmt.Sprintf("%s %d %v", r.Key, r.Size, r.Meta))
		// Complete a torn last line, then write the closing marker.
		last := make([]byte, 1)
		if r.Size > 0 {
			if _, err := r.ReadAt(last, r.Size-1); err != nil {
				return err
			}
			if last[0] != '\n' {
				io.WriteString(r, "\n")
			}
		}
		_, err := io.WriteString(r, "session.end cause=crash\n")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	sort.Strings(seen)
	if diff := cmp.Diff([]string{"a/open.cast", "a/torn.cast"}, keys); diff != "" {
		t.Errorf("recovered keys (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a/open.cast 14 map[session-id:s2]", "a/torn.cast 16 map[]"}, seen); diff != "" {
		t.Errorf("callback saw (-want +got):\n%s", diff)
	}
	// Nothing left to recover; a second Recover is a no-op.
	if keys, err := sp.Recover(nil); err != nil || len(keys) != 0 {
		t.Errorf("second Recover = %v, %v", keys, err)
	}

	st := newLocal(t)
	u := spool.NewUploader(sp, st, spool.UploaderOptions{Logger: quietLogger(t)})
	if err := u.UploadPending(context.Background()); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"a/sealed.cast": "done 1\ndone 2\n",
		"a/open.cast":   "line 1\nline 2\nsession.end cause=crash\n",
		"a/torn.cast":   "line 1\nhalf a li\nsession.end cause=crash\n",
	} {
		if got := get(t, st, key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	info, _ := st.Stat(context.Background(), "a/open.cast")
	if info.Meta["session-id"] != "s2" {
		t.Errorf("metadata lost in recovery: %v", info.Meta)
	}
	if got := spoolFiles(t, dir); len(got) != 0 {
		t.Errorf("spool after recovery: %v", got)
	}
}

// TestRecoverSkipsOpenWriters: Recover never seals a file this process is
// still writing.
func TestRecoverSkipsOpenWriters(t *testing.T) {
	dir := t.TempDir()
	sp := openSpool(t, dir)
	w, err := sp.Create("live", nil)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "x")
	if keys, err := sp.Recover(nil); err != nil || len(keys) != 0 {
		t.Fatalf("Recover = %v, %v", keys, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "live.part")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "live.sealed")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "live.part")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf(".part still there after Close: %v", err)
	}
}
