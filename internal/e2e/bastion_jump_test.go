package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern-dev/postern/internal/audit"
)

// TestBastionJump: ssh -J, scp -J and sftp -J through the real bastion into
// stock sshd nodes, the role boundary between two people, the bastion's own
// commands, and the identity taken from the key that signed.
func TestBastionJump(t *testing.T) {
	e := startBastionEnv(t)
	alice := e.user(t, "alice@example.com", bstCertOpts{roles: "ops"})
	node1Target := "node1:22"
	if !e.netns {
		node1Target = fmt.Sprintf("node1:%d", e.node1.Port)
	}

	t.Run("ssh runs a command and returns its exit status", func(t *testing.T) {
		out, stderr, code := bstRun(t, "ssh", alice.cfg, "", "node1", "echo hello from $(hostname -s 2>/dev/null || echo node); exit 3")
		if code != 3 || !strings.HasPrefix(out, "hello from ") {
			t.Fatalf("ssh -J node1 = %q, exit %d; want hello, exit 3; stderr: %s", out, code, stderr)
		}
		start := e.waitEvent(t, audit.SessionStart, func(ev audit.Event) bool {
			return ev.Person == "alice@example.com" && ev.Target == node1Target
		})
		end := e.waitEvent(t, audit.SessionEnd, func(ev audit.Event) bool { return ev.SessionID == start.SessionID })
		if start.Node != "node1" || start.Resolved != e.node1.HostPort() || start.Serial == 0 ||
			len(start.Roles) != 1 || start.Roles[0] != "ops" || start.ClientAddr == "" || start.WriterID != "e2e-bastion" || start.ConnID == "" {
			t.Errorf("session.start = %+v", start)
		}
		if end.BytesIn == 0 || end.BytesOut == 0 || end.Reason == "" || end.Person != "alice@example.com" {
			t.Errorf("session.end = %+v", end)
		}
		if !strings.Contains(e.logs.String(), "session_id="+start.SessionID) {
			t.Errorf("the bastion's log does not mention session %s", start.SessionID)
		}
		// The node's own log names the same person: one identity end to end.
		if !strings.Contains(e.node1.Log(), "ID alice@example.com") {
			t.Errorf("node1's sshd log does not name alice:\n%s", e.node1.Log())
		}
	})

	t.Run("scp moves a file both ways", func(t *testing.T) {
		local := bstRandomFile(t, t.TempDir(), "up.bin", 3<<20)
		remote := fmt.Sprintf("/tmp/pe2e-bastion-scp-%d", os.Getpid())
		t.Cleanup(func() { os.Remove(remote) })
		if _, stderr, code := bstRun(t, "scp", alice.cfg, "", "-q", local, "node1:"+remote); code != 0 {
			t.Fatalf("scp up: exit %d: %s", code, stderr)
		}
		back := filepath.Join(t.TempDir(), "down.bin")
		if _, stderr, code := bstRun(t, "scp", alice.cfg, "", "-q", "node1:"+remote, back); code != 0 {
			t.Fatalf("scp down: exit %d: %s", code, stderr)
		}
		bstSameFile(t, local, back)
	})

	t.Run("sftp moves a file both ways", func(t *testing.T) {
		dir := t.TempDir()
		local := bstRandomFile(t, dir, "up.bin", 1<<20)
		remote := fmt.Sprintf("/tmp/pe2e-bastion-sftp-%d", os.Getpid())
		t.Cleanup(func() { os.Remove(remote) })
		back := filepath.Join(dir, "down.bin")
		batch := fmt.Sprintf("put %s %s\nget %s %s\n", local, remote, remote, back)
		if out, stderr, code := bstRun(t, "sftp", alice.cfg, batch, "-b", "-", "node1"); code != 0 {
			t.Fatalf("sftp: exit %d: %s %s", code, out, stderr)
		}
		bstSameFile(t, local, back)
	})

	t.Run("roles: bob reaches node2 only", func(t *testing.T) {
		bob := e.user(t, "bob@example.com", bstCertOpts{roles: "db"})
		if out, stderr, code := bstRun(t, "ssh", bob.cfg, "", "node2", "echo ok"); code != 0 || out != "ok\n" {
			t.Fatalf("bob to node2: %q, exit %d: %s", out, code, stderr)
		}
		_, stderr, code := bstRun(t, "ssh", bob.cfg, "", "node1", "echo should not run")
		if code != 255 || !strings.Contains(stderr, "not allowed by your roles") {
			t.Fatalf("bob to node1: exit %d, stderr %q; want 255 and the bastion's reason", code, stderr)
		}
		ev := e.waitEvent(t, audit.AccessDenied, func(ev audit.Event) bool {
			return ev.Person == "bob@example.com" && ev.Target == node1Target
		})
		if ev.Reason != "not allowed by your roles" || ev.Error == "" || ev.SessionID == "" || len(ev.Roles) != 1 || ev.Roles[0] != "db" {
			t.Errorf("access.denied = %+v", ev)
		}
		e.noEvent(t, audit.SessionStart, func(ev audit.Event) bool {
			return ev.Person == "bob@example.com" && ev.Target == node1Target
		})
	})

	t.Run("a role the bastion does not know grants nothing", func(t *testing.T) {
		eve := e.user(t, "eve@example.com", bstCertOpts{roles: "superuser"})
		if _, stderr, code := bstRun(t, "ssh", eve.cfg, "", "node2", "true"); code != 255 || !strings.Contains(stderr, "not allowed") {
			t.Fatalf("unknown role: exit %d, %s", code, stderr)
		}
	})

	t.Run("bastion commands", func(t *testing.T) {
		out, stderr, code := bstRun(t, "ssh", alice.cfg, "", "bastion", "whoami")
		if code != 0 || !strings.Contains(out, "alice@example.com") || !strings.Contains(out, "ops") || !strings.Contains(out, "valid until") {
			t.Errorf("whoami = %q, exit %d, %s", out, code, stderr)
		}
		out, _, code = bstRun(t, "ssh", alice.cfg, "", "bastion", "nodes")
		if code != 0 || !strings.Contains(out, "node1") || !strings.Contains(out, "node2") {
			t.Errorf("nodes = %q, exit %d", out, code)
		}
		out, _, code = bstRun(t, "ssh", alice.cfg, "", "bastion", "help")
		if code != 0 || !strings.Contains(out, "ssh -J bastion NODE") {
			t.Errorf("help = %q, exit %d", out, code)
		}
		_, stderr, code = bstRun(t, "ssh", alice.cfg, "", "bastion", "cat /etc/passwd")
		if code == 0 || !strings.Contains(stderr, "unknown command cat") {
			t.Errorf("arbitrary command: exit %d, stderr %q", code, stderr)
		}
		e.waitEvent(t, audit.Command, func(ev audit.Event) bool {
			return ev.Person == "alice@example.com" && ev.Command == "cat /etc/passwd" && ev.ExitStatus != nil && *ev.ExitStatus != 0
		})
		// An interactive login gets the help, then the session ends.
		out, _, code = bstRun(t, "ssh", alice.cfg, "", "-tt", "bastion")
		if code != 0 || !strings.Contains(out, "no shell here") {
			t.Errorf("interactive: %q, exit %d", out, code)
		}
		// No subsystems (sftp to the bastion itself), no remote forwarding.
		if _, _, code := bstRun(t, "sftp", alice.cfg, "", "-b", "-", "bastion"); code == 0 {
			t.Error("sftp to the bastion itself succeeded")
		}
		e.waitEvent(t, audit.AccessDenied, func(ev audit.Event) bool {
			return ev.Person == "alice@example.com" && ev.Method == "subsystem"
		})
		if _, _, code := bstRun(t, "ssh", alice.cfg, "", "-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:0:127.0.0.1:22", "bastion", "whoami"); code == 0 {
			t.Error("remote forwarding accepted")
		}
		e.waitEvent(t, audit.AccessDenied, func(ev audit.Event) bool {
			return ev.Person == "alice@example.com" && ev.Method == "tcpip-forward"
		})
	})

	t.Run("identity comes from the key that signed, not one only offered", func(t *testing.T) {
		// Carol's agent offers mallory's certificate first; the bastion would
		// accept it, but the agent refuses to sign with it (confirmation
		// required, no askpass), so ssh signs with carol's key.
		u := e.user(t, "mallory@example.com", bstCertOpts{roles: "ops", confirm: true})
		e.addKey(t, u, "carol@example.com", bstCertOpts{roles: "db"})
		out, stderr, code := bstRun(t, "ssh", u.cfg, "", "-v", "bastion", "whoami")
		if code != 0 || !strings.Contains(out, "carol@example.com") || strings.Contains(out, "mallory") {
			t.Fatalf("whoami = %q, exit %d; want carol\n%s", out, code, stderr)
		}
		if !strings.Contains(stderr, "mallory@example.com") {
			t.Fatalf("ssh did not offer the confirm-constrained key first, so this proves nothing; stderr:\n%s", stderr)
		}
		if _, stderr, code := bstRun(t, "ssh", u.cfg, "", "node1", "true"); code != 255 {
			t.Errorf("carol (db) reached node1 after mallory (ops) was offered: exit %d, %s", code, stderr)
		}
		e.noEvent(t, audit.Command, func(ev audit.Event) bool { return ev.Person == "mallory@example.com" })
		e.noEvent(t, audit.SessionStart, func(ev audit.Event) bool { return ev.Person == "mallory@example.com" })
	})
}

func bstSameFile(t *testing.T, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Fatalf("%s (%d bytes) and %s (%d bytes) differ", a, len(x), b, len(y))
	}
}
