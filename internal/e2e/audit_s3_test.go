package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/s3test"
)

// TestAuditS3: the real bastion with [audit] s3 = true ships its audit log
// to a real S3 server (versitygw): session events land in the bucket, an
// S3 outage delays them and loses none, postern-bastion audit verify and
// search read s3:// exactly as the file, and a batch deleted from the
// bucket is named, with the events it held, and fails verification.
func TestAuditS3(t *testing.T) {
	e := startBastionEnv(t)
	e.stop(t)
	s3 := s3test.Start(t)
	creds := filepath.Join(e.dir, "aws-credentials")
	writeFile(t, creds, fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", s3test.AccessKey, s3test.SecretKey))
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := string(readFile(t, e.cfgPath))
	cfg = strings.Replace(cfg, `shutdown_grace = "3s"`, fmt.Sprintf("shutdown_grace = \"3s\"\nmetrics_listen = %q", metricsAddr), 1)
	cfg += fmt.Sprintf(`
[storage]
s3_bucket = %q
s3_prefix = "pfx"
s3_endpoint = %q
s3_path_style = true
s3_region = "us-east-1"
s3_credentials_file = %q
upload_min_backoff = "100ms"
upload_max_backoff = "500ms"

[audit]
s3 = true
s3_batch_interval = "300ms"
s3_batch_bytes = 2048
`, s3.Bucket, s3.Endpoint, creds)
	writeFile(t, e.cfgPath, cfg)
	e.start(t)
	url := "s3://" + s3.Bucket + "/pfx/audit/"
	pubkey := filepath.Join(e.dir, "audit_key.pub")
	// searchAll prints every line of the shipped logs, as written.
	searchAll := func() (string, int) {
		return auditCLI(t, e.bin, "search", "--config", e.cfgPath, "--event", "*", url)
	}

	alice := e.user(t, "alice@example.com", bstCertOpts{roles: "ops"})
	t.Run("session events land in the bucket", func(t *testing.T) {
		if out, stderr, code := bstRun(t, "ssh", alice.cfg, "", "node1", "echo hi"); code != 0 || out != "hi\n" {
			t.Fatalf("ssh -J node1: %q exit %d: %s", out, code, stderr)
		}
		end := e.waitEvent(t, audit.SessionEnd, func(ev audit.Event) bool { return ev.Person == "alice@example.com" })
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, _ := auditCLI(t, e.bin, "search", "--config", e.cfgPath, "--event", "session.*", "--user", "alice@*", url)
			if strings.Contains(out, `"session_id":"`+end.SessionID+`"`) && strings.Contains(out, `"event":"session.end"`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("session %s never reached the bucket; search says:\n%s\nbastion log:\n%s", end.SessionID, out, e.logs)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	t.Run("an S3 outage delays the events and loses none", func(t *testing.T) {
		s3.Stop()
		for i := 0; i < 40; i++ { // refused logins: one auth.failed event each
			_, priv, _ := ed25519.GenerateKey(rand.Reader)
			signer, _ := ssh.NewSignerFromKey(priv)
			if c, err := ssh.Dial("tcp", e.addr, &ssh.ClientConfig{User: "e2e", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
				HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second}); err == nil {
				c.Close()
			}
		}
		if _, stderr, code := bstRun(t, "ssh", alice.cfg, "", "node1", "true"); code != 0 {
			t.Fatalf("ssh -J during the outage: exit %d: %s", code, stderr)
		}
		// The bastion serves on; the lines wait in the file, and the
		// metrics say so.
		waitMetric(t, "http://"+metricsAddr, "postern_bastion_audit_upload_errors_total", func(v float64) bool { return v > 0 })
		waitMetric(t, "http://"+metricsAddr, "postern_bastion_audit_events_pending", func(v float64) bool { return v >= 40 })
		s3.Start(t)
		waitMetric(t, "http://"+metricsAddr, "postern_bastion_audit_events_pending", func(v float64) bool { return v == 0 })
		if code := e.stop(t); code != 0 {
			t.Fatalf("bastion exit %d:\n%s", code, e.logs)
		}
		// Stopped: the close checkpoint was shipped too; the bucket holds
		// the file, byte for byte.
		out, code := searchAll()
		if file := string(readFile(t, e.auditLog)); code != 0 || out != file {
			t.Fatalf("the bucket (exit %d) holds %d bytes, the file %d:\n%s", code, len(out), len(file), out)
		}
		if n := strings.Count(out, `"event":"auth.failed"`); n < 40 {
			t.Fatalf("%d auth.failed events in the bucket, want at least 40", n)
		}
		out, code = auditCLI(t, e.bin, "verify", "--strict", "--pubkey", pubkey, "--config", e.cfgPath, url)
		if code != 0 || !strings.Contains(out, ": ok (") || !strings.Contains(out, "bastion/e2e-bastion: seq 1..") || !strings.Contains(out, "closed") {
			t.Fatalf("verify %s: exit %d\n%s", url, code, out)
		}
		t.Logf("verify %s:\n%s", url, out)
	})

	t.Run("a batch deleted from the bucket is named and fails verify", func(t *testing.T) {
		var keys []string
		root := filepath.Join(s3.Dir, s3.Bucket)
		filepath.WalkDir(filepath.Join(root, "pfx", "audit"), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".jsonl") {
				keys = append(keys, p)
			}
			return nil
		})
		if len(keys) < 3 {
			t.Fatalf("%d batches in the bucket, want 3 or more", len(keys))
		}
		victim := keys[len(keys)/2] // WalkDir is in lexical order: a middle batch
		data := readFile(t, victim)
		gone, err := audit.Read(bytes.NewReader(data))
		if err != nil || len(gone) == 0 {
			t.Fatalf("read the batch: %v", err)
		}
		if err := os.Remove(victim); err != nil {
			t.Fatal(err)
		}
		out, code := auditCLI(t, e.bin, "verify", "--pubkey", pubkey, "--config", e.cfgPath, url)
		first, last := gone[0].Seq, gone[len(gone)-1].Seq
		span := fmt.Sprintf("seq %d", first)
		if last > first {
			span = fmt.Sprintf("seq %d..%d", first, last)
		}
		off, _ := strconv.ParseInt(strings.TrimSuffix(path.Base(victim), ".jsonl"), 10, 64)
		if code != 1 || !strings.Contains(out, span+": removed:") ||
			!regexp.MustCompile(fmt.Sprintf(`bytes %d\.\.%d: removed`, off, off+int64(len(data))-1)).MatchString(out) {
			t.Fatalf("verify after deleting %s (%s): exit %d, want 1 and %q removed and its bytes:\n%s", path.Base(victim), span, code, span, out)
		}
		t.Logf("verify after deleting a batch:\n%s", out)
	})

	t.Run("clear errors", func(t *testing.T) {
		for _, tt := range []struct {
			url, want string
		}{
			{"s3:///audit/", "names no bucket"},
			{"s3://" + s3.Bucket + "/nothing-here/", "no audit log batches"},
		} {
			out, code := auditCLI(t, e.bin, "verify", "--pubkey", pubkey, "--config", e.cfgPath, tt.url)
			if code != 1 || !strings.Contains(out, tt.want) || !strings.Contains(out, "hint:") {
				t.Errorf("verify %s: exit %d, want 1 and %q with a hint:\n%s", tt.url, code, tt.want, out)
			}
		}
		bad := filepath.Join(t.TempDir(), "bad-credentials")
		writeFile(t, bad, "[default]\naws_access_key_id = nobody\naws_secret_access_key = wrong-secret-0123456789\n")
		out, code := auditCLI(t, e.bin, "verify", "--pubkey", pubkey, "--config", e.cfgPath, "--s3-credentials-file", bad, url)
		if code != 1 || !strings.Contains(out, "access denied") || !strings.Contains(out, "hint:") {
			t.Errorf("verify with wrong credentials: exit %d:\n%s", code, out)
		}
	})
}
