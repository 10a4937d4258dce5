package e2e

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/testenv"
)

// TestBastionGracefulShutdown: on SIGTERM the bastion stops accepting, lets
// an open session run until shutdown_grace (3s) is over, then cuts it and
// writes its session.end; the process exits 0.
func TestBastionGracefulShutdown(t *testing.T) {
	e := startBastionEnv(t)
	alice := e.user(t, "alice@example.com", bstCertOpts{roles: "ops"})

	// A session that would last a minute.
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	long := exec.CommandContext(c, testenv.RequireBinary(t, "ssh"), "-F", alice.cfg, "node1", "echo started; sleep 60")
	long.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
	var out bytes.Buffer
	long.Stdout, long.Stderr = &out, &out
	if err := long.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- long.Wait() }()
	start := e.waitEvent(t, audit.SessionStart, func(ev audit.Event) bool { return ev.Person == "alice@example.com" })

	stopped := make(chan int, 1)
	sent := time.Now()
	go func() { stopped <- e.stop(t) }()

	// New connections are refused while the session finishes.
	deadline := time.Now().Add(2 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", e.addr, time.Second)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("the bastion still accepts connections after SIGTERM")
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case err := <-waited:
		if time.Since(sent) < 2*time.Second {
			t.Errorf("the session ended %v after SIGTERM, before the 3s grace: %v\n%s", time.Since(sent), err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the session outlived the shutdown grace")
	}
	if code := <-stopped; code != 0 {
		t.Errorf("postern-bastion exited %d after SIGTERM, want 0", code)
	}
	end := e.waitEvent(t, audit.SessionEnd, func(ev audit.Event) bool { return ev.SessionID == start.SessionID })
	if end.Reason != "shutdown" || end.BytesOut == 0 || end.DurationMS < 2000 {
		t.Errorf("session.end = %+v; want reason shutdown", end)
	}
	if !strings.Contains(e.logs.String(), "bastion stopped") {
		t.Errorf("no stop line in the bastion's log")
	}
}

// TestBastionCommandLine: --version, --help, check-config, and the error
// format with a hint.
func TestBastionCommandLine(t *testing.T) {
	bin := testenv.GoBuild(t, "./bastion")
	dir := t.TempDir()
	runBin := func(args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		_ = cmd.Run()
		return o.String(), e.String(), cmd.ProcessState.ExitCode()
	}
	if out, _, code := runBin("--version"); code != 0 || !strings.HasPrefix(out, "postern-bastion ") {
		t.Errorf("--version: %q, exit %d", out, code)
	}
	if out, _, code := runBin("--help"); code != 0 || !strings.Contains(out, "check-config") {
		t.Errorf("--help: %q, exit %d", out, code)
	}
	if _, stderr, code := runBin(); code != 1 || !strings.HasPrefix(stderr, "postern-bastion: error: ") || !strings.Contains(stderr, "\npostern-bastion: hint: ") {
		t.Errorf("no config: exit %d, stderr %q", code, stderr)
	}

	cfg := filepath.Join(dir, "postern.toml")
	bstWrite(t, cfg, []byte(`
[bastion]
data_dir = "`+dir+`"
[[role]]
name = "ops"
groups = ["ops"]
nodes = ["10.0.0.0/8", "label:env=prod:2200-2299"]
`), 0o600)
	// No user CA yet: check-config names the file.
	if _, stderr, code := runBin("check-config", "--config", cfg); code != 1 || !strings.Contains(stderr, "user_ca.pub") {
		t.Errorf("check-config without user CA: exit %d, %q", code, stderr)
	}
	pub := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE5fH1tSyUh5YfQxbuwqoOeCsowCUi3iHlVtPAuLiBe9 ca\n"
	bstWrite(t, filepath.Join(dir, "user_ca.pub"), []byte(pub), 0o644)
	out, stderr, code := runBin("check-config", "--config", cfg)
	if code != 0 || !strings.Contains(out, "ok") || !strings.Contains(out, "generated on first start") {
		t.Errorf("check-config: %q %q, exit %d", out, stderr, code)
	}
	if _, err := os.Stat(filepath.Join(dir, "host_key")); err == nil {
		t.Error("check-config created the host key")
	}
	bstWrite(t, cfg, []byte("[bastion]\nnode_rules = 1\n[[role]]\nname = \"x\"\ngroups = [\"g\"]\nnodes = [\"10.0.0.0/33\"]\n"), 0o600)
	if _, stderr, code := runBin("check-config", "--config", cfg); code != 1 || !strings.Contains(stderr, "unknown key") {
		t.Errorf("bad config: exit %d, %q", code, stderr)
	}
}
