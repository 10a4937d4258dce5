package e2e

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/postern-dev/postern/bastion/signerapi"
	"github.com/postern-dev/postern/internal/asciicast"
	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/s3test"
	"github.com/postern-dev/postern/internal/sshcert"
	"github.com/postern-dev/postern/internal/storage"
	"github.com/postern-dev/postern/internal/testenv"
	"github.com/postern-dev/postern/signer/ca"
)

// recordEnv is the bastion environment switched to recording mode, with a
// real signer (delegated certificates, node host certificates) and a real
// S3 server (versitygw) for the recordings.
type recordEnv struct {
	*bastionEnv
	s3        *s3test.Server
	store     storage.Store
	signerDir string
	spoolDir  string
}

func startRecordEnv(t *testing.T, extraBastion string) *recordEnv {
	t.Helper()
	testenv.RequireBinary(t, "tmux")
	e := startBastionEnv(t)
	e.stop(t)
	r := &recordEnv{bastionEnv: e, s3: s3test.Start(t), signerDir: filepath.Join(e.dir, "signer"), spoolDir: filepath.Join(e.dir, "spool")}
	if err := os.MkdirAll(r.signerDir, 0o700); err != nil {
		t.Fatal(err)
	}
	var err error
	if r.store, err = storage.NewS3(context.Background(), r.s3.S3Config("rec")); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(e.dir, "aws-credentials")
	writeFile(t, creds, fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", s3test.AccessKey, s3test.SecretKey))

	cfg := string(readFile(t, e.cfgPath))
	cfg = strings.ReplaceAll(cfg, `recording = "off"`, `recording = "on"`)
	cfg = strings.Replace(cfg, "name = \"ops\"\n", "name = \"ops\"\nrecord_input = true\n", 1)
	cfg = strings.Replace(cfg, `shutdown_grace = "3s"`, "shutdown_grace = \"3s\"\nrevocation = \"off\"\n"+extraBastion, 1)
	signerAddr := freeAddr(t)
	cfg += fmt.Sprintf(`
[signer]
listen = %q
data_dir = %q
user_ca_key = %q
host_ca_key = %q
bastions = ["bastion"]

[storage]
s3_bucket = %q
s3_prefix = "rec"
s3_endpoint = %q
s3_path_style = true
s3_region = "us-east-1"
s3_credentials_file = %q
upload_min_backoff = "200ms"
upload_max_backoff = "1s"
`, signerAddr, r.signerDir, filepath.Join(e.dir, "user_ca"), filepath.Join(e.dir, "host_ca"), r.s3.Bucket, r.s3.Endpoint, creds)
	writeFile(t, e.cfgPath, cfg)
	startProc(t, "postern-signer", func(out string) bool { return strings.Contains(out, "signer listening") },
		testenv.GoBuild(t, "./signer"), "--config", e.cfgPath)
	e.start(t)
	return r
}

// object waits until the bastion confirmed key stored in S3 (a
// recording.stored event: PUT with checksum, then HEAD) and returns its
// content.
func (r *recordEnv) object(t *testing.T, key string) string {
	t.Helper()
	r.waitEvent(t, audit.RecordingStored, func(ev audit.Event) bool { return ev.Recording == key })
	deadline := time.Now().Add(30 * time.Second)
	for {
		rc, err := r.store.Get(context.Background(), key)
		if err == nil {
			b, _ := io.ReadAll(rc)
			rc.Close()
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("recording %s never reached S3: %v\nbastion log:\n%s", key, err, r.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// castText returns the output (and input) recorded in a cast.
func castText(t *testing.T, cast string) (out, in string, marks []string) {
	t.Helper()
	rd, err := asciicast.NewReader(strings.NewReader(cast))
	if err != nil {
		t.Fatalf("not an asciicast: %v\n%s", err, cast)
	}
	var o, i strings.Builder
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("bad asciicast: %v", err)
		}
		switch ev.Code {
		case asciicast.Output:
			o.WriteString(ev.Data)
		case asciicast.Input:
			i.WriteString(ev.Data)
		case asciicast.Marker:
			marks = append(marks, ev.Data)
		}
	}
	return o.String(), i.String(), marks
}

func TestRecording(t *testing.T) {
	r := startRecordEnv(t, "exec_capture_limit = 65536\n")
	alice := r.user(t, "alice@example.com", bstCertOpts{roles: "ops", ext: []string{"permit-port-forwarding"}})

	t.Run("an interactive session is recorded with what was typed and shown", func(t *testing.T) {
		tmux := testenv.RequireBinary(t, "tmux")
		sock := filepath.Join(t.TempDir(), "tmux.sock")
		ssh := testenv.RequireBinary(t, "ssh")
		run := func(args ...string) string {
			out, err := exec.Command(tmux, append([]string{"-S", sock}, args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("tmux %v: %v %s", args, err, out)
			}
			return string(out)
		}
		run("new-session", "-d", "-x", "100", "-y", "30", "-s", "rec",
			fmt.Sprintf("env SSH_AUTH_SOCK= %s -F %s -tt node1", ssh, alice.cfg))
		t.Cleanup(func() { _ = exec.Command(tmux, "-S", sock, "kill-server").Run() })
		waitPane := func(want string) {
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(run("capture-pane", "-p", "-t", "rec"), want) {
				if time.Now().After(deadline) {
					t.Fatalf("pane never showed %q:\n%s", want, run("capture-pane", "-p", "-t", "rec"))
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		waitPane("$")
		run("send-keys", "-t", "rec", "echo recorded-$((6*7))", "Enter")
		waitPane("recorded-42")
		run("send-keys", "-t", "rec", "exit", "Enter")
		ev := r.waitEvent(t, audit.SessionRecorded, func(ev audit.Event) bool { return ev.Person == "alice@example.com" && ev.Method == "pty" })
		if ev.Recording == "" || ev.Node != "node1" {
			t.Fatalf("session.recorded = %+v", ev)
		}
		out, in, _ := castText(t, r.object(t, ev.Recording))
		if !strings.Contains(out, "recorded-42") || !strings.Contains(out, "echo recorded-$((6*7))") {
			t.Errorf("recorded output lacks the session:\n%q", out)
		}
		if !strings.Contains(in, "echo recorded") {
			t.Errorf("record_input is on but the input was not recorded: %q", in)
		}
		if !strings.Contains(r.node1.Log(), "ID alice@example.com") {
			t.Error("the node's sshd log does not name alice (delegated certificate KeyId)")
		}
	})

	t.Run("exec records command, exit status and bounded output", func(t *testing.T) {
		out, stderr, code := bstRun(t, "ssh", alice.cfg, "", "node1", "echo exec-out; echo exec-err >&2; exit 5")
		if code != 5 || out != "exec-out\n" || !strings.Contains(stderr, "exec-err") {
			t.Fatalf("exit %d out %q err %q", code, out, stderr)
		}
		ev := r.waitEvent(t, audit.Exec, func(ev audit.Event) bool { return strings.Contains(ev.Command, "exec-out") })
		if ev.ExitStatus == nil || *ev.ExitStatus != 5 || ev.Recording == "" || ev.Person != "alice@example.com" {
			t.Fatalf("exec event %+v", ev)
		}
		cast, _, _ := castText(t, r.object(t, ev.Recording))
		if !strings.Contains(cast, "exec-out") || !strings.Contains(cast, "exec-err") {
			t.Errorf("recording %q", cast)
		}
		// 200 kB of output: the client gets all of it, the recording
		// keeps the first 64 KiB and says so.
		out, _, code = bstRun(t, "ssh", alice.cfg, "", "node1", "head -c 200000 /dev/zero | tr '\\0' y")
		if code != 0 || len(out) != 200000 {
			t.Fatalf("big exec: exit %d, %d bytes", code, len(out))
		}
		ev = r.waitEvent(t, audit.Exec, func(ev audit.Event) bool { return strings.Contains(ev.Command, "head -c 200000") })
		if !ev.Truncated || ev.BytesOut != 200000 {
			t.Fatalf("big exec event %+v", ev)
		}
		cast, _, marks := castText(t, r.object(t, ev.Recording))
		if len(cast) > 65536 || len(marks) == 0 || !strings.Contains(marks[0], "truncated") {
			t.Errorf("recorded %d bytes, marks %v", len(cast), marks)
		}
	})

	t.Run("scp, sftp and rsync work and sftp operations are audited", func(t *testing.T) {
		dir := t.TempDir()
		local := bstRandomFile(t, dir, "up.bin", 300000)
		remote := fmt.Sprintf("/tmp/pe2e-rec-%d", os.Getpid())
		t.Cleanup(func() { os.Remove(remote); os.Remove(remote + ".rsync") })
		if _, stderr, code := bstRun(t, "scp", alice.cfg, "", "-q", local, "node1:"+remote); code != 0 {
			t.Fatalf("scp: %d %s", code, stderr)
		}
		batch := filepath.Join(dir, "batch")
		writeFile(t, batch, fmt.Sprintf("get %s %s\nrename %s %s.moved\nrename %s.moved %s\n", remote, filepath.Join(dir, "down.bin"), remote, remote, remote, remote))
		if _, stderr, code := bstRun(t, "sftp", alice.cfg, "", "-b", batch, "node1"); code != 0 {
			t.Fatalf("sftp: %d %s", code, stderr)
		}
		if string(readFile(t, filepath.Join(dir, "down.bin"))) != string(readFile(t, local)) {
			t.Fatal("sftp round trip changed the file")
		}
		w := r.waitEvent(t, audit.SFTP, func(ev audit.Event) bool { return ev.Op == "write" && ev.Path == remote })
		if w.BytesIn != 300000 || w.Person != "alice@example.com" {
			t.Errorf("sftp write event %+v", w)
		}
		r.waitEvent(t, audit.SFTP, func(ev audit.Event) bool { return ev.Op == "read" && ev.Path == remote && ev.BytesOut == 300000 })
		r.waitEvent(t, audit.SFTP, func(ev audit.Event) bool { return ev.Op == "rename" && ev.Path2 == remote+".moved" })

		rsync := testenv.RequireBinary(t, "rsync")
		cmd := exec.Command(rsync, "-a", "-e", testenv.RequireBinary(t, "ssh")+" -F "+alice.cfg, local, "node1:"+remote+".rsync")
		cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("rsync: %v %s", err, out)
		}
		r.waitEvent(t, audit.Exec, func(ev audit.Event) bool { return strings.HasPrefix(ev.Command, "rsync --server") })
	})

	t.Run("ssh -L is relayed and each forwarded connection audited", func(t *testing.T) {
		lport := strings.TrimPrefix(freeAddr(t), "127.0.0.1:")
		target := net.JoinHostPort(r.node1.Addr, fmt.Sprint(r.node1.Port))
		cmd := exec.Command(testenv.RequireBinary(t, "ssh"), "-F", alice.cfg, "-N", "-o", "ExitOnForwardFailure=yes", "-L", "127.0.0.1:"+lport+":"+target, "node1")
		cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		var c net.Conn
		deadline := time.Now().Add(20 * time.Second)
		for {
			var err error
			if c, err = net.Dial("tcp", "127.0.0.1:"+lport); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the -L port never opened")
			}
			time.Sleep(100 * time.Millisecond)
		}
		banner, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil || !strings.HasPrefix(banner, "SSH-2.0-") {
			t.Fatalf("banner through -L: %q %v", banner, err)
		}
		r.waitEvent(t, audit.Port, func(ev audit.Event) bool {
			return ev.Method == "direct-tcpip" && strings.Contains(ev.Path, target) && ev.BytesOut > 0 && ev.Person == "alice@example.com"
		})
	})

	t.Run("an S3 outage delays recordings and loses none", func(t *testing.T) {
		r.s3.Stop()
		out, _, code := bstRun(t, "ssh", alice.cfg, "", "node1", "echo during-outage")
		if code != 0 || out != "during-outage\n" {
			t.Fatalf("session during the outage: exit %d %q", code, out)
		}
		ev := r.waitEvent(t, audit.Exec, func(ev audit.Event) bool { return strings.Contains(ev.Command, "during-outage") })
		time.Sleep(time.Second) // an upload attempt or two fail meanwhile
		if _, err := r.store.Stat(context.Background(), ev.Recording); err == nil {
			t.Fatal("the recording was stored while S3 was down?")
		}
		if ents, _ := os.ReadDir(r.spoolDir); len(ents) == 0 {
			t.Fatal("the recording is not waiting in the spool")
		}
		r.s3.Start(t)
		cast, _, _ := castText(t, r.object(t, ev.Recording))
		if !strings.Contains(cast, "during-outage") {
			t.Fatalf("recording after the outage: %q", cast)
		}
	})

	t.Run("kill -9 of the bastion mid-session loses no recording", func(t *testing.T) {
		cmd := exec.Command(testenv.RequireBinary(t, "ssh"), "-F", alice.cfg, "-tt", "node1", "echo before-crash; sleep 30")
		cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() && !strings.Contains(sc.Text(), "before-crash") {
		}
		start := r.waitEvent(t, audit.SessionStart, func(ev audit.Event) bool { return ev.Method == "record" && r.sessionOpen(t, ev.SessionID) })
		time.Sleep(1500 * time.Millisecond) // the spool fsyncs within a second
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.done
		r.start(t)
		end := r.waitEvent(t, audit.SessionEnd, func(ev audit.Event) bool { return strings.Contains(ev.Recording, start.SessionID) })
		if !strings.Contains(end.Reason, "restarted") {
			t.Errorf("session.end after the crash: %+v", end)
		}
		out, _, marks := castText(t, r.object(t, end.Recording))
		if !strings.Contains(out, "before-crash") || len(marks) == 0 || !strings.Contains(marks[len(marks)-1], "cut short") {
			t.Fatalf("recovered recording: out %q marks %v", out, marks)
		}
	})
}

// sessionOpen reports whether no session.end names sid yet.
func (r *recordEnv) sessionOpen(t *testing.T, sid string) bool {
	for _, ev := range r.events(t, audit.SessionEnd) {
		if ev.SessionID == sid {
			return false
		}
	}
	return true
}

// TestDelegatedCertificateExpires: the node itself refuses a delegated
// certificate once its minute (here three seconds) is over.
func TestDelegatedCertificateExpires(t *testing.T) {
	r := startRecordEnv(t, "")
	// A person certificate that ends in 3 s: a delegation never outlives it.
	ag := testenv.StartAgent(t)
	personKey := newEd25519(t)
	person, err := r.userCA.SignUser(caUserCert(personKey.PublicKey(), "alice@example.com", r.node1.Login, 3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := ssh.ParsePrivateKey(readFile(t, filepath.Join(r.dir, "host_key")))
	if err != nil {
		t.Fatal(err)
	}
	hcPub, _, _, _, err := ssh.ParseAuthorizedKey(readFile(t, filepath.Join(r.dir, "host_key-cert.pub")))
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(readFile(t, r.cfgPath))
	signerURL := "https://" + strings.Split(strings.Split(cfg, "[signer]\nlisten = \"")[1], "\"")[0]
	client, err := signerapi.New(signerURL, filepath.Join(r.signerDir, "tls.crt"), hostKey, hcPub.(*ssh.Certificate), nil)
	if err != nil {
		t.Fatal(err)
	}
	connKey := newEd25519(t)
	dcert, err := client.Delegate(context.Background(), person, r.node1.Login, "node1", "test", connKey.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if err := ag.Client(t).Add(agent.AddedKey{PrivateKey: connKey.priv, Certificate: dcert}); err != nil {
		t.Fatal(err)
	}
	direct := testenv.ClientConfig(t, r.knownHosts, ag.Socket, testenv.HostBlock{Pattern: "node1", HostName: r.node1.Addr, Port: r.node1.Port, User: r.node1.Login})
	if out, stderr, code := bstRun(t, "ssh", direct, "", "node1", "echo delegated-ok"); code != 0 || out != "delegated-ok\n" {
		t.Fatalf("fresh delegated certificate refused by the node: %d %s", code, stderr)
	}
	time.Sleep(time.Until(time.Unix(int64(dcert.ValidBefore), 0)) + time.Second)
	if _, stderr, code := bstRun(t, "ssh", direct, "", "node1", "true"); code == 0 {
		t.Fatal("the node accepted an expired delegated certificate")
	} else if !strings.Contains(stderr, "Permission denied") {
		t.Fatalf("unexpected refusal: %s", stderr)
	}
}

type edKey struct {
	priv ed25519.PrivateKey
	pub  ssh.PublicKey
}

func (k edKey) PublicKey() ssh.PublicKey { return k.pub }

func newEd25519(t *testing.T) edKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := ssh.NewPublicKey(priv.Public())
	return edKey{priv: priv, pub: pub}
}

func caUserCert(pub ssh.PublicKey, keyID, login string, ttl time.Duration) ca.UserCert {
	return ca.UserCert{Key: pub, KeyID: keyID, Principals: []string{login}, TTL: ttl,
		Extensions: map[string]string{sshcert.ExtRoles: "ops", "permit-pty": ""}}
}
