package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/sshcert"
	"github.com/postern-dev/postern/internal/testenv"
	"github.com/postern-dev/postern/signer/ca"
)

// recordingMode restarts the bastion in recording mode: a host
// certificate that names it "postern-bastion" (what the signer's
// [signer] bastions trusts by default), the signer s for delegated and
// node host certificates, every role recording, an "auditor" role with
// view_recordings, and recordings kept in a local directory.
func (e *bastionEnv) recordingMode(t *testing.T, s *bastionSigner) {
	t.Helper()
	hostKey := filepath.Join(e.dir, "host_key")
	pubBytes, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	hostPub, _, _, _, err := ssh.ParseAuthorizedKey(pubBytes)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := e.hostCA.SignHost(hostPub, []string{"bastion", "127.0.0.1", "postern-bastion"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bstWrite(t, hostKey+"-cert.pub", ssh.MarshalAuthorizedKey(hc), 0o644)

	cfg := string(readFile(t, e.cfgPath))
	anchor := "shutdown_grace = \"3s\"\n"
	if !strings.Contains(cfg, anchor) || !strings.Contains(cfg, `recording = "off"`) {
		t.Fatalf("bastion config changed shape:\n%s", cfg)
	}
	cfg = strings.Replace(cfg, anchor, anchor+fmt.Sprintf("signer_url = %q\nsigner_ca = %q\n", s.url, filepath.Join(s.dir, "tls.crt")), 1)
	cfg = strings.ReplaceAll(cfg, `recording = "off"`, `recording = "on"`)
	cfg += fmt.Sprintf(`
[[role]]
name = "auditor"
groups = ["auditor"]
logins = [%q]
view_recordings = true

[storage]
local_dir = %q
`, e.node1.Login, filepath.Join(e.dir, "recordings"))
	bstWrite(t, e.cfgPath, []byte(cfg), 0o600)
	if code := e.stop(t); code != 0 {
		t.Fatalf("bastion exited %d on restart", code)
	}
	e.start(t)
}

// TestPlayback: alice's session through the recording bastion is listed
// and replayed for her (ssh bastion recordings / play, and postern play);
// bob, with no view right, neither sees it nor can play it, and the
// refusal is audited; carol, an auditor, sees and plays everyone's.
func TestPlayback(t *testing.T) {
	e := startBastionEnv(t)
	s := startBastionSigner(t, e)
	e.recordingMode(t, s)
	alice := e.user(t, "alice@example.com", bstCertOpts{roles: "ops"})
	bob := e.user(t, "bob@example.com", bstCertOpts{roles: "ops"})
	carol := e.user(t, "carol@example.com", bstCertOpts{roles: "auditor"})

	// The pause keeps the output clear of a race in recording mode: node
	// output that reaches the relay before the observer sees the exec
	// request is relayed but not recorded.
	out, errOut, code := bstRun(t, "ssh", alice.cfg, "", "-tt", "node1", "echo hello-recorded")
	if code != 0 || !strings.Contains(out, "hello-recorded") {
		t.Fatalf("recorded session: exit %d, stdout %q, stderr:\n%s\nbastion:\n%s", code, out, errOut, e.logs)
	}
	rec := e.waitEvent(t, audit.Exec, func(ev audit.Event) bool {
		return ev.Person == "alice@example.com" && ev.Recording != "" && ev.Command == "echo hello-recorded"
	})
	sid := rec.SessionID

	// The listing shows the session once the spool has uploaded it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, errOut, code = bstRun(t, "ssh", alice.cfg, "", "bastion", "recordings")
		if code != 0 {
			t.Fatalf("alice: ssh bastion recordings: exit %d: %s", code, errOut)
		}
		if strings.Contains(out, sid) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's recording %s was not listed:\n%s%s\nbastion:\n%s", sid, out, errOut, e.logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, w := range []string{"alice@example.com", "node1", e.node1.Login, "echo hello-recorded"} {
		if !strings.Contains(out, w) {
			t.Errorf("alice's listing lacks %q:\n%s", w, out)
		}
	}

	t.Run("alice plays her own session", func(t *testing.T) {
		out, errOut, code := bstRun(t, "ssh", alice.cfg, "", "bastion", "play", sid, "--speed", "100")
		if code != 0 || !strings.Contains(out, "hello-recorded") {
			t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, out, errOut)
		}
		if !strings.Contains(errOut, "alice@example.com on node1") {
			t.Errorf("stderr lacks the session's description:\n%s", errOut)
		}
		// With a terminal, as people run it.
		out, errOut, code = bstRun(t, "ssh", alice.cfg, "", "-tt", "bastion", "play", sid, "--speed", "100")
		if code != 0 || !strings.Contains(out, "hello-recorded") {
			t.Fatalf("with -tt: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
		}
		ev := e.waitEvent(t, audit.RecordingViewed, func(ev audit.Event) bool {
			return ev.Person == "alice@example.com" && ev.SessionID == sid
		})
		if ev.Recording != rec.Recording || ev.Node != "node1" || !strings.Contains(ev.Reason, "own session") {
			t.Errorf("recording.viewed = %+v", ev)
		}
	})

	t.Run("alice plays it with postern play", func(t *testing.T) {
		postern := testenv.GoBuild(t, "./agent-helper")
		posternKey(t, e, alice, "ops")
		args := []string{"--bastion", e.addr, "--known-hosts", e.knownHosts}
		out, errOut, code := posternRun(t, postern, alice, append([]string{"play"}, append(args, sid, "--speed", "100")...)...)
		if code != 0 || !strings.Contains(out, "hello-recorded") {
			t.Fatalf("postern play: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
		}
		out, errOut, code = posternRun(t, postern, alice, append([]string{"recordings"}, args...)...)
		if code != 0 || !strings.Contains(out, sid) {
			t.Fatalf("postern recordings: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
		}
		// The bastion's host certificate is checked against the host CA.
		other := filepath.Join(t.TempDir(), "known_hosts")
		bstWrite(t, other, []byte(testenv.KnownHostsCA("*", e.userCA.PublicKey())), 0o644)
		_, errOut, code = posternRun(t, postern, alice, "recordings", "--bastion", e.addr, "--known-hosts", other)
		if code == 0 || !strings.Contains(errOut, "log in to bastion") {
			t.Errorf("a bastion not vouched for by known_hosts was accepted: exit %d, stderr:\n%s", code, errOut)
		}
	})

	t.Run("bob is refused and audited", func(t *testing.T) {
		out, _, code := bstRun(t, "ssh", bob.cfg, "", "bastion", "recordings")
		if code != 0 || strings.Contains(out, sid) {
			t.Errorf("bob's listing (exit %d) shows alice's session:\n%s", code, out)
		}
		out, errOut, code := bstRun(t, "ssh", bob.cfg, "", "bastion", "play", sid, "--speed", "100")
		if code == 0 || strings.Contains(out, "hello-recorded") {
			t.Fatalf("bob played alice's session: exit %d, stdout %q", code, out)
		}
		if !strings.Contains(errOut, "you may not view session "+sid) || !strings.Contains(errOut, "view_recordings") {
			t.Errorf("bob's refusal is not clear:\n%s", errOut)
		}
		ev := e.waitEvent(t, audit.AccessDenied, func(ev audit.Event) bool {
			return ev.Person == "bob@example.com" && ev.SessionID == sid
		})
		if ev.Method != "play" || !strings.Contains(ev.Reason, "alice@example.com") || ev.Node != "node1" {
			t.Errorf("access.denied = %+v", ev)
		}
		e.noEvent(t, audit.RecordingViewed, func(ev audit.Event) bool { return ev.Person == "bob@example.com" })
	})

	t.Run("carol the auditor sees everyone's", func(t *testing.T) {
		out, _, code := bstRun(t, "ssh", carol.cfg, "", "bastion", "recordings")
		if code != 0 || !strings.Contains(out, sid) {
			t.Fatalf("carol's listing (exit %d) lacks alice's session:\n%s", code, out)
		}
		out, errOut, code := bstRun(t, "ssh", carol.cfg, "", "bastion", "play", sid, "--speed", "100", "--idle-limit", "1s")
		if code != 0 || !strings.Contains(out, "hello-recorded") {
			t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, out, errOut)
		}
		e.waitEvent(t, audit.RecordingViewed, func(ev audit.Event) bool {
			return ev.Person == "carol@example.com" && ev.SessionID == sid && strings.Contains(ev.Reason, "role auditor")
		})
	})

	t.Run("unknown and malformed IDs", func(t *testing.T) {
		_, errOut, code := bstRun(t, "ssh", alice.cfg, "", "bastion", "play", "0123456789abcdef0123")
		if code == 0 || !strings.Contains(errOut, "no recording of session 0123456789abcdef0123") {
			t.Errorf("unknown id: exit %d, stderr:\n%s", code, errOut)
		}
		_, errOut, code = bstRun(t, "ssh", alice.cfg, "", "bastion", "play", "../../x")
		if code == 0 || !strings.Contains(errOut, "not a session ID") {
			t.Errorf("malformed id: exit %d, stderr:\n%s", code, errOut)
		}
	})
}

// posternKey adds a key and certificate to u's agent as postern login
// does (the comment marks it as postern's).
func posternKey(t *testing.T, e *bastionEnv, u *bstUser, roles string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := ssh.NewPublicKey(priv.Public())
	cert, err := e.userCA.SignUser(ca.UserCert{
		Key: pub, KeyID: u.keyID, Principals: []string{e.node1.Login}, TTL: time.Hour,
		Extensions: map[string]string{sshcert.ExtRoles: roles, "permit-pty": ""},
	})
	if err != nil {
		t.Fatal(err)
	}
	key := agent.AddedKey{PrivateKey: priv, Certificate: cert, LifetimeSecs: 3600, Comment: sshcert.AgentComment(u.keyID)}
	if err := u.agent.Client(t).Add(key); err != nil {
		t.Fatal(err)
	}
}

// posternRun runs the postern CLI with u's agent.
func posternRun(t *testing.T, bin string, u *bstUser, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), append(u.agent.Env(), "POSTERN_HOME="+t.TempDir(), "DISPLAY=")...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("postern %s timed out; stderr: %s", strings.Join(args, " "), e.String())
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}
