package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/audit"
)

// TestAuditLogProvesItself: the real bastion's audit log survives kill -9
// during heavy writing (verify passes, with an unsigned tail at most), a
// restart continues the chain, and postern-bastion audit verify names each
// kind of tampering.
func TestAuditLogProvesItself(t *testing.T) {
	e := startBastionEnv(t)
	pubkey := filepath.Join(e.dir, "audit_key.pub")

	// Heavy writing: refused logins from several clients, each one an
	// auth.failed event, past the first count checkpoint (every 1000
	// events); kill -9 in the middle of it.
	var attempts atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, priv, _ := ed25519.GenerateKey(rand.Reader)
				signer, _ := ssh.NewSignerFromKey(priv)
				c, err := ssh.Dial("tcp", e.addr, &ssh.ClientConfig{User: "e2e", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
					HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second})
				if err == nil {
					c.Close()
				}
				attempts.Add(1)
			}
		}()
	}
	deadline := time.Now().Add(60 * time.Second)
	for attempts.Load() < 1300 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
	<-e.done
	close(stop)
	wg.Wait()
	killed := len(e.events(t, audit.AuthFailed))
	if killed < 1000 {
		t.Fatalf("only %d auth.failed events before the kill", killed)
	}
	out, code := auditCLI(t, e.bin, "verify", e.auditLog, "--pubkey", pubkey)
	if code != 0 || !strings.Contains(out, ": ok (") {
		t.Fatalf("verify after kill -9: exit %d\n%s", code, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, ": line ") && !strings.Contains(l, "note: unsigned") && !strings.Contains(l, "note: truncated") {
			t.Errorf("verify after kill -9 flagged: %s", l)
		}
	}
	t.Logf("after kill -9 (%d auth.failed events):\n%s", killed, out)

	// Restart: the chain goes on; a clean stop closes it with a checkpoint.
	e.start(t)
	u := e.user(t, "alice@example.com", bstCertOpts{roles: "ops"})
	if _, stderr, code := bstRun(t, "ssh", u.cfg, "", "bastion", "whoami"); code != 0 {
		t.Fatalf("ssh bastion whoami: exit %d: %s", code, stderr)
	}
	if code := e.stop(t); code != 0 {
		t.Fatalf("bastion exit %d:\n%s", code, e.logs)
	}
	out, code = auditCLI(t, e.bin, "verify", "--strict", "--pubkey", pubkey, e.auditLog)
	if code != 0 || !strings.Contains(out, "closed") || !strings.Contains(out, "bastion/e2e-bastion: seq 1..") {
		t.Fatalf("verify after restart: exit %d\n%s", code, out)
	}
	clean, err := os.ReadFile(e.auditLog)
	if err != nil {
		t.Fatal(err)
	}

	// audit pubkey prints the key verify trusts.
	pk, code := auditCLI(t, e.bin, "pubkey", "--config", e.cfgPath)
	want, _ := os.ReadFile(pubkey)
	if code != 0 || strings.Join(strings.Fields(pk)[:2], " ") != strings.Join(strings.Fields(string(want))[:2], " ") {
		t.Fatalf("audit pubkey = %q (exit %d), audit_key.pub = %q", pk, code, want)
	}

	// audit search finds alice's session and the refusals.
	out, code = auditCLI(t, e.bin, "search", "--user", "alice@*", "--format", "table", e.auditLog)
	if code != 0 || !strings.Contains(out, "alice@example.com") || strings.Contains(out, "auth.failed") {
		t.Fatalf("search --user: exit %d\n%s", code, out)
	}
	out, _ = auditCLI(t, e.bin, "search", "--event", audit.AuthFailed, "--since", "1h", e.auditLog)
	if n := strings.Count(out, "\n"); n != killed {
		t.Fatalf("search --event auth.failed: %d lines, want %d", n, killed)
	}

	// Tampering, each named by verify with a non-zero exit.
	lines := strings.SplitAfter(string(clean), "\n")
	lines = lines[:len(lines)-1] // the empty string after the last newline
	// Pick five consecutive auth.failed events well inside the log.
	i := len(lines) / 3
	for !allPlain(lines[i : i+5]) {
		i++
	}
	seqOf := func(l string) string {
		var ev audit.Event
		_ = json.Unmarshal([]byte(l), &ev)
		return fmt.Sprintf("seq %d:", ev.Seq)
	}
	cpLine := -1
	for j, l := range lines {
		if strings.Contains(l, `"event":"audit.checkpoint"`) {
			cpLine = j
			break
		}
	}
	other := filepath.Join(t.TempDir(), "other.pub")
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	os.WriteFile(other, []byte(audit.PublicKeyLine(otherKey, "not the bastion")+"\n"), 0o644)
	tests := []struct {
		name   string
		tamper func(ls []string) []string
		want   string // in verify's output
		args   []string
	}{
		{"edit one byte", func(ls []string) []string {
			ls[i+1] = strings.Replace(ls[i+1], `"event":"auth.failed"`, `"event":"auth.faileD"`, 1)
			return ls
		}, seqOf(lines[i+1]) + " changed:", nil},
		{"delete one event", func(ls []string) []string {
			return append(ls[:i+1:i+1], ls[i+2:]...)
		}, seqOf(lines[i+1]) + " removed:", nil},
		{"reorder two", func(ls []string) []string {
			ls[i+1], ls[i+2] = ls[i+2], ls[i+1]
			return ls
		}, seqOf(lines[i+2]) + " reordered:", nil},
		{"insert one", func(ls []string) []string {
			forged := strings.Replace(ls[i+2], `"reason":"`, `"reason":"x`, 1)
			return append(ls[:i+2:i+2], append([]string{forged}, ls[i+2:]...)...)
		}, seqOf(lines[i+2]) + " inserted:", nil},
		{"truncate the tail", func(ls []string) []string {
			return ls[:len(ls)-1]
		}, "note: unsigned:", []string{"--strict"}},
		{"truncate inside the last line", func(ls []string) []string {
			ls[len(ls)-1] = ls[len(ls)-1][:30]
			return ls
		}, "note: truncated:", []string{"--strict"}},
		{"tamper a checkpoint signature", func(ls []string) []string {
			ls[cpLine] = strings.Replace(ls[cpLine], `"sig":"`, `"sig":"AA`, 1)
			return ls
		}, seqOf(lines[cpLine]) + " signature: bad signature", nil},
		{"wrong pubkey", func(ls []string) []string { return ls }, "not a trusted audit key", []string{"--pubkey", other}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ls := tt.tamper(append([]string(nil), lines...))
			path := filepath.Join(t.TempDir(), "audit.log")
			os.WriteFile(path, []byte(strings.Join(ls, "")), 0o600)
			args := []string{"verify", path}
			if tt.args == nil || tt.args[0] != "--pubkey" {
				args = append(args, "--pubkey", pubkey)
			}
			out, code := auditCLI(t, e.bin, append(args, tt.args...)...)
			if code != 1 || !strings.Contains(out, tt.want) {
				t.Fatalf("exit %d, want 1 and %q in:\n%s", code, tt.want, out)
			}
		})
	}
}

func allPlain(ls []string) bool {
	for _, l := range ls {
		if !strings.Contains(l, `"event":"auth.failed"`) {
			return false
		}
	}
	return true
}

// auditCLI runs postern-bastion audit … and returns stdout+stderr and the
// exit status.
func auditCLI(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"audit"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run postern-bastion audit: %v", err)
	}
	return out.String(), cmd.ProcessState.ExitCode()
}
