package auditlog

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/storage"
)

func parseConfig(t *testing.T, toml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("t.toml", []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func countEvents(t *testing.T, b []byte, name string) int {
	t.Helper()
	evs, err := audit.Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return len(audit.Filter(evs, name))
}

func storedLog(t *testing.T, st storage.Store) []byte {
	t.Helper()
	logs, err := ListLogs(context.Background(), st, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) != 1 {
		t.Fatalf("%d logs in the store, want 1", len(logs))
	}
	rc := logs[0].Open(context.Background(), st)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOpenSinks(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	path := filepath.Join(dir, "log", "audit.log")
	os.MkdirAll(filepath.Dir(path), 0o700)
	st, err := storage.NewLocal(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := parseConfig(t, "[storage]\ns3_bucket = \"b\"\ns3_prefix = \"p\"\n[audit]\ncheckpoint_every = 2\nstdout = true\ns3 = true\ns3_prefix = \"a/x\"\n")
	var stdout bytes.Buffer
	l, err := Open(context.Background(), cfg, Part{Writer: "bastion", WriterID: "b/1", Path: path, DataDir: data, Serve: true},
		Options{Store: st, Stdout: &stdout})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := l.Emit(context.Background(), audit.Event{Event: audit.SessionStart}); err != nil {
			t.Fatal(err)
		}
	}
	if s, ok := l.Stats(); !ok || s.PendingLines == 0 {
		t.Errorf("stats before close = %+v %v; want lines pending", s, ok)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	file, _ := os.ReadFile(path)
	if !bytes.Equal(stdout.Bytes(), file) {
		t.Errorf("stdout got:\n%s\nthe file holds:\n%s", stdout.Bytes(), file)
	}
	if got := storedLog(t, st); !bytes.Equal(got, file) {
		t.Errorf("the store holds:\n%s\nthe file:\n%s", got, file)
	}
	logs, _ := ListLogs(context.Background(), st, "")
	if !strings.HasPrefix(logs[0].Dir, "a/x/bastion/b%2F1/") {
		t.Errorf("log dir %q", logs[0].Dir)
	}
	// checkpoint_every = 2: after events 2 and 4, and the close checkpoint.
	if n := countEvents(t, file, audit.CheckpointEvent); n != 3 {
		t.Errorf("%d checkpoints, want 3", n)
	}
	if _, err := os.Stat(filepath.Join(data, "audit_key")); err != nil {
		t.Errorf("the key is not in the data directory: %v", err)
	}
	// The state file says the whole file is stored.
	s, ok, err := readState(path + ".s3state")
	if err != nil || !ok || s.Offset != int64(len(file)) || s.Dest != "s3://b/p/a/x/" {
		t.Errorf("state = %+v %v %v", s, ok, err)
	}
}

func TestOpenCheckpointNever(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	cfg := parseConfig(t, "[audit]\ncheckpoint_every = -1\nstdout = true\n")
	l, err := Open(context.Background(), cfg, Part{Writer: "signer", WriterID: "h", Path: path, DataDir: dir}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1500; i++ {
		if err := l.Emit(context.Background(), audit.Event{Event: audit.CertIssued}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	file, _ := os.ReadFile(path)
	if n := countEvents(t, file, audit.CheckpointEvent); n != 1 {
		t.Errorf("%d checkpoints with checkpoint_every = -1, want only the close one", n)
	}
}

// A one-shot command ships what it wrote at Close when no server ships the
// log, and leaves it to the server when one does; it never writes stdout.
func TestOpenOneShot(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	st, _ := storage.NewLocal(filepath.Join(dir, "store"))
	cfg := parseConfig(t, "[storage]\ns3_bucket = \"b\"\n[audit]\ns3 = true\nstdout = true\n")
	var stdout bytes.Buffer
	oneShot := func() {
		l, err := Open(context.Background(), cfg, Part{Writer: "signer", WriterID: "h", Path: path, DataDir: dir}, Options{Store: st, Stdout: &stdout})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Emit(context.Background(), audit.Event{Event: audit.CertRevoked}); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	oneShot()
	file, _ := os.ReadFile(path)
	if got := storedLog(t, st); !bytes.Equal(got, file) {
		t.Fatalf("a one-shot command with no server did not ship its events")
	}
	if stdout.Len() != 0 {
		t.Errorf("a one-shot command wrote the audit log to stdout: %q", stdout.String())
	}

	srv, err := Open(context.Background(), cfg, Part{Writer: "signer", WriterID: "h", Path: path, DataDir: dir, Serve: true}, Options{Store: st, Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	oneShot()
	if s, _ := srv.Stats(); s.Batches != 0 {
		t.Fatalf("server stats = %+v", s)
	}
	if got := storedLog(t, st); bytes.Equal(got, mustRead(t, path)) {
		t.Fatal("the one-shot command shipped while the server holds the lock")
	}
	srv.Close()
	if got := storedLog(t, st); !bytes.Equal(got, mustRead(t, path)) {
		t.Fatal("the server did not ship the one-shot command's events")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOpenS3NeedsAFile(t *testing.T) {
	cfg := parseConfig(t, "[storage]\ns3_bucket = \"b\"\n[audit]\ns3 = true\n")
	_, err := Open(context.Background(), cfg, Part{Writer: "kube-forwarder", WriterID: "f", Path: "-", DataDir: t.TempDir(), Serve: true}, Options{})
	if err == nil || !strings.Contains(err.Error(), "audit.s3") {
		t.Fatalf("err = %v", err)
	}
}

func TestWriterOptions(t *testing.T) {
	p := Part{Writer: "bastion", WriterID: "b1", Path: "/l/audit.log", DataDir: "/d"}
	tests := []struct {
		toml string
		want audit.Options
	}{
		{"", audit.Options{CheckpointEvery: 1000, CheckpointInterval: time.Minute}},
		{"[audit]\nsync = \"event\"\n", audit.Options{CheckpointEvery: 1000, CheckpointInterval: time.Minute, SyncEvery: true}},
		{"[audit]\ncheckpoint_every = -1\ncheckpoint_interval = \"5s\"\n", audit.Options{CheckpointEvery: -1, CheckpointInterval: 5 * time.Second}},
		{"[audit]\ncheckpoint_every = 10\nkey_file = \"/k\"\n", audit.Options{CheckpointEvery: 10, CheckpointInterval: time.Minute, KeyFile: "/k"}},
	}
	for _, tt := range tests {
		got := writerOptions(parseConfig(t, tt.toml), p, nil)
		want := tt.want
		want.Writer, want.WriterID = "bastion", "b1"
		if want.KeyFile == "" {
			want.KeyFile = "/d/audit_key"
		}
		if got.Writer != want.Writer || got.WriterID != want.WriterID || got.KeyFile != want.KeyFile || got.CheckpointEvery != want.CheckpointEvery ||
			got.CheckpointInterval != want.CheckpointInterval || got.SyncEvery != want.SyncEvery {
			t.Errorf("%q: options = %+v, want %+v", tt.toml, got, want)
		}
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	data, logs := filepath.Join(dir, "data"), filepath.Join(dir, "logs")
	os.MkdirAll(data, 0o700)
	os.MkdirAll(logs, 0o700)
	cfg := parseConfig(t, "")
	signer := Part{Writer: "signer", Path: filepath.Join(logs, "audit.log"), DataDir: data}
	if got := KeyFile(cfg, signer, nil); got != filepath.Join(data, "audit_key") {
		t.Errorf("new signer key = %q", got)
	}
	// A key beside the log from before [audit] key_file keeps being used.
	os.WriteFile(filepath.Join(logs, "audit_key"), []byte("k"), 0o600)
	if got := KeyFile(cfg, signer, nil); got != filepath.Join(logs, "audit_key") {
		t.Errorf("legacy signer key = %q", got)
	}
	// Not for the bastion, whose key always was in its data directory.
	if got := KeyFile(cfg, Part{Writer: "bastion", Path: signer.Path, DataDir: data}, nil); got != filepath.Join(data, "audit_key") {
		t.Errorf("bastion key = %q", got)
	}
	cfg = parseConfig(t, "[audit]\nkey_file = \"/etc/postern/k\"\n")
	if got := KeyFile(cfg, signer, nil); got != "/etc/postern/k" {
		t.Errorf("key_file = %q", got)
	}
}
