package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/sshcert"
	"github.com/postern-dev/postern/internal/testenv"
	"github.com/postern-dev/postern/signer/ca"
)

// bastionEnv is a running postern-bastion (the real binary) in front of two
// stock sshd nodes, in their own network namespaces when running as root,
// else on loopback (then the roles name the loopback ports explicitly).
type bastionEnv struct {
	dir        string
	bin        string
	userCA     *ca.Authority
	hostCA     *ca.Authority
	cfgPath    string
	auditLog   string
	addr       string // bastion host:port
	port       int
	knownHosts string
	node1      *testenv.Node
	node2      *testenv.Node
	netns      bool

	cmd  *exec.Cmd
	done chan struct{}
	logs *testenv.Logs
}

// bastionRoles: ops reaches both nodes (by inventory label), db only node2,
// wide any name on any port (the address policy still applies).
func (e *bastionEnv) roles() string {
	ops, db := `["label:env=e2e"]`, `["node2"]`
	if !e.netns {
		ops = fmt.Sprintf(`["127.0.0.1:%d", "127.0.0.1:%d"]`, e.node1.Port, e.node2.Port)
		db = fmt.Sprintf(`["127.0.0.1:%d"]`, e.node2.Port)
	}
	return fmt.Sprintf(`
[[role]]
name = "ops"
groups = ["ops"]
logins = [%[3]q]
nodes = %[1]s
recording = "off"

[[role]]
name = "db"
groups = ["db"]
logins = [%[3]q]
nodes = %[2]s
recording = "off"

[[role]]
name = "wide"
groups = ["wide"]
logins = [%[3]q]
nodes = ["*:1-65535"]
recording = "off"
`, ops, db, e.node1.Login)
}

func startBastionEnv(t *testing.T) *bastionEnv {
	t.Helper()
	for _, b := range []string{"ssh", "scp", "sftp", "ssh-agent"} {
		testenv.RequireBinary(t, b)
	}
	e := &bastionEnv{dir: t.TempDir(), netns: os.Geteuid() == 0 || testenv.Strict()}
	e.bin = testenv.GoBuild(t, "./bastion")
	e.userCA, e.hostCA = newCAs(t, e.dir)
	userCAPub := ssh.MarshalAuthorizedKey(e.userCA.PublicKey())
	signHost := func(pub ssh.PublicKey, principals []string) (*ssh.Certificate, error) {
		return e.hostCA.SignHost(pub, principals, time.Hour)
	}
	e.node1 = testenv.StartNode(t, testenv.NodeOptions{Name: "node1", UserCA: userCAPub, SignHostKey: signHost, Netns: e.netns})
	e.node2 = testenv.StartNode(t, testenv.NodeOptions{Name: "node2", UserCA: userCAPub, SignHostKey: signHost, Netns: e.netns})

	hostKey := filepath.Join(e.dir, "host_key")
	certifyHostKey(t, e.hostCA, hostKey, "bastion", "127.0.0.1")
	e.knownHosts = filepath.Join(e.dir, "known_hosts")
	bstWrite(t, e.knownHosts, []byte(testenv.KnownHostsCA("*", e.hostCA.PublicKey())), 0o644)

	e.auditLog = filepath.Join(e.dir, "audit.log")
	e.cfgPath = filepath.Join(e.dir, "postern.toml")
	bstWrite(t, e.cfgPath, []byte(fmt.Sprintf(`
[bastion]
listen = "127.0.0.1:0"
public_addr = "127.0.0.1:2222"
name = "bastion"
id = "e2e-bastion"
data_dir = %q
host_key = %q
user_ca = %q
audit_log = %q
shutdown_grace = "3s"

[[bastion.node]]
name = "node1"
addr = %q
labels = { env = "e2e", tier = "web" }

[[bastion.node]]
name = "node2"
addr = %q
labels = { env = "e2e", tier = "db" }
%s`, e.dir, hostKey, filepath.Join(e.dir, "user_ca.pub"), e.auditLog, e.node1.Addr, e.node2.Addr, e.roles())), 0o600)
	e.start(t)
	return e
}

var bstListenRe = regexp.MustCompile(`msg="bastion listening" addr=127\.0\.0\.1:(\d+)`)

// start runs the bastion binary and waits for its listening line. It is
// stopped with SIGTERM at cleanup unless a test stopped it before.
func (e *bastionEnv) start(t *testing.T) {
	t.Helper()
	e.logs = testenv.NewLogs(t, "postern-bastion")
	e.cmd = exec.Command(e.bin, "--config", e.cfgPath, "--log-level", "debug")
	pr, pw := io.Pipe()
	e.cmd.Stdout, e.cmd.Stderr = pw, pw
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := e.cmd.Start(); err != nil {
		t.Fatalf("start postern-bastion: %v", err)
	}
	e.done = make(chan struct{})
	go func() { _ = e.cmd.Wait(); pw.Close(); close(e.done) }()
	ready := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			_, _ = e.logs.Write([]byte(line + "\n"))
			if m := bstListenRe.FindStringSubmatch(line); m != nil {
				var p int
				fmt.Sscan(m[1], &p)
				ready <- p
			}
		}
	}()
	t.Cleanup(func() { e.stop(t) })
	select {
	case e.port = <-ready:
		e.addr = fmt.Sprintf("127.0.0.1:%d", e.port)
	case <-e.done:
		t.Fatalf("postern-bastion exited early:\n%s", e.logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("postern-bastion did not start listening:\n%s", e.logs)
	}
}

// stop sends SIGTERM and waits for the process; it returns the exit code.
func (e *bastionEnv) stop(t *testing.T) int {
	t.Helper()
	select {
	case <-e.done:
		return e.cmd.ProcessState.ExitCode()
	default:
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
		<-e.done
		t.Errorf("postern-bastion did not stop within 30s of SIGTERM")
	}
	return e.cmd.ProcessState.ExitCode()
}

// bstUser is a person with a key and certificate in their own ssh-agent.
type bstUser struct {
	keyID string
	agent *testenv.Agent
	cfg   string // ssh -F config using this agent
	pub   ssh.PublicKey
}

// bstCertOpts describes a certificate to mint for a test user.
type bstCertOpts struct {
	roles     string
	authority *ca.Authority // default: the user CA
	hostCert  bool          // sign a host certificate instead
	crit      map[string]string
	notAt     time.Time // sign as if now were this (expired certificates)
	plain     bool      // no certificate at all
	confirm   bool      // agent asks for confirmation before each use
	ext       []string  // more extensions, e.g. permit-port-forwarding
}

// user starts an agent holding a fresh key with a certificate for keyID.
func (e *bastionEnv) user(t *testing.T, keyID string, o bstCertOpts, extraHosts ...testenv.HostBlock) *bstUser {
	t.Helper()
	a := testenv.StartAgent(t)
	u := &bstUser{keyID: keyID, agent: a}
	e.addKey(t, u, keyID, o)
	u.cfg = e.clientConfig(t, a.Socket, extraHosts...)
	return u
}

// addKey adds another key (and certificate) to u's agent.
func (e *bastionEnv) addKey(t *testing.T, u *bstUser, keyID string, o bstCertOpts) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	u.pub = pub
	key := agent.AddedKey{PrivateKey: priv, LifetimeSecs: 3600, ConfirmBeforeUse: o.confirm, Comment: keyID}
	if !o.plain {
		auth := o.authority
		if auth == nil {
			auth = e.userCA
		}
		if !o.notAt.IsZero() {
			signAt := *auth
			signAt.Now = func() time.Time { return o.notAt }
			auth = &signAt
		}
		var cert *ssh.Certificate
		if o.hostCert {
			cert, err = auth.SignHost(pub, []string{keyID}, time.Hour)
		} else {
			exts := map[string]string{sshcert.ExtRoles: o.roles, "permit-pty": ""}
			for _, x := range o.ext {
				exts[x] = ""
			}
			cert, err = auth.SignUser(ca.UserCert{
				Key: pub, KeyID: keyID, Principals: []string{e.node1.Login}, TTL: time.Hour,
				Extensions:      exts,
				CriticalOptions: o.crit,
			})
		}
		if err != nil {
			t.Fatal(err)
		}
		key.Certificate = cert
	}
	if err := u.agent.Client(t).Add(key); err != nil {
		t.Fatalf("add key to agent: %v", err)
	}
}

// clientConfig is an ssh -F file: "bastion" is the bastion, node1/node2 go
// through it by name, plus any extra hosts (which jump through it too).
func (e *bastionEnv) clientConfig(t *testing.T, agentSock string, extra ...testenv.HostBlock) string {
	t.Helper()
	// LogLevel INFO on the jump hop shows the bastion's refusal reason, as
	// users see it with the default log level.
	hosts := []testenv.HostBlock{{Pattern: "bastion", HostName: "127.0.0.1", Port: e.port, User: "e2e", Extra: []string{"LogLevel INFO"}}}
	for _, n := range []*testenv.Node{e.node1, e.node2} {
		hb := testenv.HostBlock{Pattern: n.Name, User: n.Login, ProxyJump: "bastion"}
		if n.Netns == nil {
			hb.Port = n.Port // the name is resolved by the bastion's inventory
		}
		hosts = append(hosts, hb)
	}
	for _, h := range extra {
		if h.ProxyJump == "" {
			h.ProxyJump = "bastion"
		}
		if h.User == "" {
			h.User = e.node1.Login
		}
		hosts = append(hosts, h)
	}
	return testenv.ClientConfig(t, e.knownHosts, agentSock, hosts...)
}

// bstRun runs an OpenSSH tool (ssh, scp, sftp) with -F cfg and returns
// stdout, stderr and the exit status.
func bstRun(t *testing.T, tool, cfg string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(c, testenv.RequireBinary(t, tool), append([]string{"-F", cfg}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=", "DISPLAY=", "SSH_ASKPASS=/bin/false")
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %s: %v", tool, err)
	}
	if c.Err() != nil {
		t.Fatalf("%s %s timed out; stderr: %s", tool, strings.Join(args, " "), e.String())
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// events returns the audit events named name so far.
func (e *bastionEnv) events(t *testing.T, name string) []audit.Event {
	t.Helper()
	evs, err := audit.ReadFile(e.auditLog)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return audit.Filter(evs, name)
}

// waitEvent waits for an audit event named name matching match. Some are
// written when a connection closes, a moment after the client exits.
func (e *bastionEnv) waitEvent(t *testing.T, name string, match func(audit.Event) bool) audit.Event {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, ev := range e.events(t, name) {
			if match(ev) {
				return ev
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(e.auditLog)
			t.Fatalf("no matching %s event in the audit log:\n%s", name, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// noEvent fails if an event named name matches.
func (e *bastionEnv) noEvent(t *testing.T, name string, match func(audit.Event) bool) {
	t.Helper()
	for _, ev := range e.events(t, name) {
		if match(ev) {
			t.Errorf("unexpected %s event: %+v", name, ev)
		}
	}
}

var bstWriteMu sync.Mutex

func bstWrite(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	bstWriteMu.Lock()
	defer bstWriteMu.Unlock()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// bstRandomFile writes n random bytes to a new file in dir.
func bstRandomFile(t *testing.T, dir, name string, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	bstWrite(t, p, b, 0o644)
	return p
}

// newCAs makes an Ed25519 user CA and host CA in dir (user_ca and host_ca,
// each with its .pub beside it, as postern-signer init does) and loads them.
func newCAs(t testing.TB, dir string) (userCA, hostCA *ca.Authority) {
	t.Helper()
	load := func(name string) *ca.Authority {
		path := filepath.Join(dir, name)
		if err := ca.Generate(path, ca.KeyEd25519, "e2e "+name); err != nil {
			t.Fatal(err)
		}
		a, err := ca.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	return load("user_ca"), load("host_ca")
}
