package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/testenv"
)

// revocationMessage is what the bastion tells a revoked person
// (bastion/revocation.Message; e2e tests only see binaries' output).
const revocationMessage = "postern: your access was revoked"

// bastionSigner is a postern-signer using the bastion env's user CA, so
// that its KRL revokes the certificates the env mints.
type bastionSigner struct {
	bin, cfgPath, dir, url string
}

func startBastionSigner(t *testing.T, e *bastionEnv) *bastionSigner {
	t.Helper()
	s := &bastionSigner{dir: t.TempDir(), bin: testenv.GoBuild(t, "./signer")}
	addr := freeAddr(t)
	s.url = "https://" + addr
	s.cfgPath = filepath.Join(s.dir, "postern.toml")
	writeFile(t, s.cfgPath, fmt.Sprintf(`
[signer]
listen = %q
data_dir = %q
user_ca_key = %q
host_ca_key = %q
`, addr, s.dir, filepath.Join(e.dir, "user_ca"), filepath.Join(e.dir, "host_ca")))
	startProc(t, "postern-signer", func(out string) bool { return strings.Contains(out, "signer listening") },
		s.bin, "--config", s.cfgPath)
	return s
}

// pollSigner restarts the bastion with [bastion] signer_url and signer_ca
// pointing at s (revocation_poll stays at its default).
func (e *bastionEnv) pollSigner(t *testing.T, s *bastionSigner) {
	t.Helper()
	cfg := string(readFile(t, e.cfgPath))
	anchor := "shutdown_grace = \"3s\"\n"
	if !strings.Contains(cfg, anchor) {
		t.Fatalf("bastion config changed shape:\n%s", cfg)
	}
	cfg = strings.Replace(cfg, anchor, anchor+fmt.Sprintf("signer_url = %q\nsigner_ca = %q\n", s.url, filepath.Join(s.dir, "tls.crt")), 1)
	bstWrite(t, e.cfgPath, []byte(cfg), 0o600)
	if code := e.stop(t); code != 0 {
		t.Fatalf("bastion exited %d on restart", code)
	}
	e.start(t)
}

// longSession is an ssh -J session through the bastion, running.
type longSession struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser // open until the test ends
	stdout *syncBuf
	stderr *syncBuf
	done   chan struct{}
	ended  time.Time
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startLongSession is `ssh -J bastion node1 'echo started; exec sleep 60'`.
func startLongSession(t *testing.T, u *bstUser) *longSession {
	t.Helper()
	return startSSHSession(t, u, "node1", "echo started; exec sleep 60")
}

// startSSHSession runs ssh -F u.cfg args..., a remote command that prints
// "started" first, and returns once it has.
func startSSHSession(t *testing.T, u *bstUser, args ...string) *longSession {
	t.Helper()
	c, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(c, testenv.RequireBinary(t, "ssh"), append([]string{"-F", u.cfg}, args...)...)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=", "DISPLAY=", "SSH_ASKPASS=/bin/false")
	ls := &longSession{cmd: cmd, stdout: &syncBuf{}, stderr: &syncBuf{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = ls.stdout, ls.stderr
	var err error
	if ls.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); ls.ended = time.Now(); close(ls.done) }()
	t.Cleanup(func() { ls.stdin.Close(); cancel(); <-ls.done })
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(ls.stdout.String(), "started") {
		select {
		case <-ls.done:
			t.Fatalf("%s's session ended before it started: %s", u.keyID, ls.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's session did not start: %s", u.keyID, ls.stderr.String())
		}
	}
	return ls
}

// TestBastionRevocation: the real signer publishes its KRL, the real
// bastion polls it. alice and bob each hold a session through the bastion
// to a stock sshd node; `postern-signer revoke --key-id alice` (the CLI,
// next to the running signer) ends alice's session within 5 s with a
// session.end naming the revocation, refuses her next ssh -J at
// authentication with a message, and leaves bob alone.
func TestBastionRevocation(t *testing.T) {
	e := startBastionEnv(t)
	s := startBastionSigner(t, e)
	e.pollSigner(t, s)

	alice := e.user(t, "alice@example.com", bstCertOpts{roles: "ops"})
	bob := e.user(t, "bob@example.com", bstCertOpts{roles: "ops"})
	aliceSess := startLongSession(t, alice)
	bobSess := startLongSession(t, bob)
	// The bastion has a list from the signer before anyone is revoked.
	if !strings.Contains(e.logs.String(), "revocation list in force") {
		t.Fatalf("the bastion did not fetch the signer's KRL:\n%s", e.logs)
	}

	issued := time.Now()
	out := run(t, s.bin, "revoke", "--config", s.cfgPath, "--key-id", "alice@example.com", "--reason", "left the company")
	revoked := time.Now()
	if !strings.Contains(out, `revoked key id "alice@example.com" (generation 1)`) {
		t.Fatalf("revoke output:\n%s", out)
	}
	select {
	case <-aliceSess.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("alice's session still runs 5s after the revocation; bastion log:\n%s", e.logs)
	}
	t.Logf("revoke -> disconnect: %s after the revoke command returned (%s after it started; revoke command took %s; revocation_poll 2s)",
		aliceSess.ended.Sub(revoked).Round(time.Millisecond), aliceSess.ended.Sub(issued).Round(time.Millisecond),
		revoked.Sub(issued).Round(time.Millisecond))
	if code := aliceSess.cmd.ProcessState.ExitCode(); code == 0 {
		t.Errorf("alice's ssh exited 0 after the revocation")
	}
	t.Logf("alice's ssh exited %d, stderr:\n%s", aliceSess.cmd.ProcessState.ExitCode(), aliceSess.stderr.String())

	end := e.waitEvent(t, audit.SessionEnd, func(ev audit.Event) bool { return ev.Person == "alice@example.com" })
	if end.Reason != "revoked" || !strings.Contains(end.Error, `key ID "alice@example.com"`) || !strings.Contains(end.Error, "generation 1") {
		t.Errorf("alice's session.end = %+v; want reason \"revoked\" naming the key ID and generation", end)
	}

	// Her next ssh -J is refused at authentication, with the message.
	_, stderr, code := bstRun(t, "ssh", alice.cfg, "", "node1", "echo", "should-not-run")
	if code != 255 || !strings.Contains(stderr, revocationMessage) {
		t.Errorf("alice's next ssh -J: exit %d, stderr:\n%s\nwant 255 and %q", code, stderr, revocationMessage)
	}
	t.Logf("alice's next ssh -J exited %d, stderr:\n%s", code, stderr)
	e.waitEvent(t, audit.AuthFailed, func(ev audit.Event) bool {
		return ev.Person == "alice@example.com" && strings.HasPrefix(ev.Reason, `revoked: key is revoked by key ID "alice@example.com"`)
	})

	// bob is unaffected: his session runs on, and he can start new ones.
	select {
	case <-bobSess.done:
		t.Fatalf("bob's session ended: %s", bobSess.stderr.String())
	default:
	}
	if out, stderr, code := bstRun(t, "ssh", bob.cfg, "", "node1", "echo", "bob-still-in"); code != 0 || !strings.Contains(out, "bob-still-in") {
		t.Fatalf("bob after alice's revocation: exit %d, %s%s", code, out, stderr)
	}
	e.noEvent(t, audit.SessionEnd, func(ev audit.Event) bool { return ev.Person == "bob@example.com" && ev.Reason == "revoked" })
}
