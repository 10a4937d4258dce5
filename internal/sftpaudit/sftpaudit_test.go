package sftpaudit

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/postern-dev/postern/internal/testenv"
)

// sftpServer finds OpenSSH's sftp-server.
func sftpServer(t *testing.T) string {
	for _, p := range []string{"/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server", "/usr/libexec/sftp-server"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return testenv.RequireBinary(t, "sftp-server")
}

// TestMain doubles as the relay the real sftp client spawns with -D: it
// starts the real sftp-server and feeds copies of both directions into a
// Tracker, writing the Ops as JSON lines to $SFTPAUDIT_OPS.
func TestMain(m *testing.M) {
	if server := os.Getenv("SFTPAUDIT_RELAY"); server != "" {
		relay(server, os.Getenv("SFTPAUDIT_OPS"))
		return
	}
	os.Exit(m.Run())
}

func relay(server, opsPath string) {
	out, err := os.Create(opsPath)
	if err != nil {
		os.Exit(2)
	}
	enc := json.NewEncoder(out)
	tr := New(func(op Op) { _ = enc.Encode(op) })
	cmd := exec.Command(server)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		os.Exit(2)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(io.MultiWriter(tr.ClientWriter(), stdin), os.Stdin)
		stdin.Close()
	}()
	_, _ = io.Copy(io.MultiWriter(os.Stdout, tr.ServerWriter()), stdout)
	_ = cmd.Wait()
	wg.Wait()
	tr.Close()
	out.Close()
}

func TestRealSFTPSession(t *testing.T) {
	sftp := testenv.RequireBinary(t, "sftp")
	server := sftpServer(t)
	dir := t.TempDir()
	remote := filepath.Join(dir, "remote")
	local := filepath.Join(dir, "local")
	for _, d := range []string{remote, local} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	payload := strings.Repeat("postern ", 40000) // 320000 bytes: several SFTP packets
	if err := os.WriteFile(filepath.Join(local, "up.txt"), []byte(payload), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(remote, "down.txt"), []byte("hello from the node\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	batch := filepath.Join(dir, "batch")
	cmds := []string{
		"cd " + remote,
		"lcd " + local,
		"put up.txt",
		"get down.txt",
		"mkdir newdir",
		"rename up.txt newdir/moved.txt",
		"ln newdir/moved.txt linked.txt",
		"ls newdir",
		"rm down.txt",
		"-rm does-not-exist",
	}
	if err := os.WriteFile(batch, []byte(strings.Join(cmds, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	opsPath := filepath.Join(dir, "ops.jsonl")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sftp, "-b", batch, "-D", self)
	cmd.Env = append(os.Environ(), "SFTPAUDIT_RELAY="+server, "SFTPAUDIT_OPS="+opsPath)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(remote, "linked.txt")); err != nil {
		t.Errorf("ln did not run: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(remote, "newdir", "moved.txt")); string(b) != payload {
		t.Fatal("the upload did not arrive through the relay")
	}
	var ops []Op
	b, err := os.ReadFile(opsPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var op Op
		if err := json.Unmarshal([]byte(l), &op); err != nil {
			t.Fatal(err)
		}
		ops = append(ops, op)
	}
	find := func(kind, suffix string) *Op {
		for i := range ops {
			if ops[i].Kind == kind && strings.HasSuffix(strings.TrimSuffix(ops[i].Path, "/"), suffix) {
				return &ops[i]
			}
		}
		t.Errorf("no %s op for *%s in %+v", kind, suffix, ops)
		return &Op{}
	}
	if w := find(OpWrite, "/up.txt"); w.BytesWrit != int64(len(payload)) || !w.OK {
		t.Errorf("write op %+v, want %d bytes", w, len(payload))
	}
	if r := find(OpRead, "/down.txt"); r.BytesRead != 20 || !r.OK {
		t.Errorf("read op %+v", r)
	}
	find(OpMkdir, "/newdir")
	if r := find(OpRename, "/up.txt"); !strings.HasSuffix(r.Target, "/newdir/moved.txt") || !r.OK {
		t.Errorf("rename op %+v", r)
	}
	find(OpList, "/newdir")
	if r := find(OpHardlink, "/newdir/moved.txt"); !strings.HasSuffix(r.Target, "/linked.txt") || !r.OK {
		t.Errorf("hardlink op %+v", r)
	}
	if r := find(OpRemove, "/down.txt"); !r.OK {
		t.Errorf("remove op %+v", r)
	}
	if r := find(OpRemove, "/does-not-exist"); r.OK || r.Error == "" {
		t.Errorf("failed remove reported as %+v", r)
	}
	for _, op := range ops {
		if op.Kind == OpParseError {
			t.Errorf("parse error on a real session: %s", op.Error)
		}
	}
}

func TestHostileInput(t *testing.T) {
	var ops []Op
	tr := New(func(op Op) { ops = append(ops, op) })
	// A length far beyond MaxPacket stops parsing with one event.
	_, _ = tr.ClientWriter().Write([]byte{0x7f, 0xff, 0xff, 0xff, 3})
	_, _ = tr.ClientWriter().Write(make([]byte, 1000))
	if len(ops) != 1 || ops[0].Kind != OpParseError {
		t.Fatalf("ops = %+v", ops)
	}
	// A truncated string inside a packet.
	ops = nil
	tr = New(func(op Op) { ops = append(ops, op) })
	_, _ = tr.ClientWriter().Write([]byte{0, 0, 0, 9, fxpOpen, 0, 0, 0, 1, 0, 0, 0xff, 0xff})
	if len(ops) != 1 || ops[0].Kind != OpParseError {
		t.Fatalf("ops = %+v", ops)
	}
}

func FuzzTracker(f *testing.F) {
	f.Add([]byte{0, 0, 0, 5, 1, 0, 0, 0, 3}, []byte{0, 0, 0, 5, 2, 0, 0, 0, 3}, uint8(3))
	f.Fuzz(func(t *testing.T, up, down []byte, split uint8) {
		tr := New(func(Op) {})
		n := int(split)%5 + 1
		for i := 0; i < len(up) || i < len(down); i += n {
			if i < len(up) {
				_, _ = tr.ClientWriter().Write(up[i:min(i+n, len(up))])
			}
			if i < len(down) {
				_, _ = tr.ServerWriter().Write(down[i:min(i+n, len(down))])
			}
		}
		tr.Close()
		if len(tr.pending) > MaxPending || len(tr.handles) > MaxHandles || len(tr.up.buf) > MaxPacket+4 {
			t.Fatal("bounds exceeded")
		}
	})
}
