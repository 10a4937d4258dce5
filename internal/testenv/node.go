package testenv

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// NodeOptions configures [StartNode].
type NodeOptions struct {
	// Name is the host name of the node, e.g. "node1". It is used in the
	// test's ssh_config and is a principal of the host certificate.
	Name string
	// UserCA is the user CA public key in authorized_keys format. sshd
	// trusts it (TrustedUserCAKeys) and nothing else: no authorized_keys,
	// no passwords.
	UserCA []byte
	// SignHostKey, if set, certifies the node's host key. It is called with
	// principals {Name, Addr}: ssh matches host-certificate principals
	// against the HostName it connects to (or HostKeyAlias), which in the
	// test's ssh_config is the address. Nil means no host certificate.
	SignHostKey func(pub ssh.PublicKey, principals []string) (*ssh.Certificate, error)
	// Netns runs the node in a new [Netns], listening on NodeIP:22 (root
	// only). Otherwise it listens on 127.0.0.1 on a free port.
	Netns bool
	// ExtraConfig holds extra sshd_config lines, e.g. "RevokedKeys /path".
	// Lines before the first Match line come before the defaults and so
	// override them (sshd keeps the first value it reads); a Match line and
	// all lines after it are appended at the end.
	ExtraConfig []string
}

// Node is a running stock sshd, stopped at cleanup.
type Node struct {
	Name    string        // NodeOptions.Name
	Addr    string        // IP address sshd listens on
	Port    int           // port sshd listens on
	Login   string        // unix user to log in as (see LoginUser)
	Dir     string        // holds sshd_config, keys and sshd.log
	Netns   *Netns        // the node's namespace, nil on loopback
	HostKey ssh.PublicKey // the plain host public key
}

// HostPort returns Addr:Port.
func (n *Node) HostPort() string { return net.JoinHostPort(n.Addr, strconv.Itoa(n.Port)) }

// Log returns sshd's log so far (LogLevel VERBOSE: it names the accepted
// key and the certificate's KeyId and serial).
func (n *Node) Log() string {
	b, _ := os.ReadFile(filepath.Join(n.Dir, "sshd.log"))
	return string(b)
}

// StartNode starts sshd -D -e -f Dir/sshd_config and waits until its port
// accepts connections. sshd's log is written with t.Log at cleanup if the
// test failed.
func StartNode(t testing.TB, opts NodeOptions) *Node {
	t.Helper()
	sshd := RequireBinary(t, "sshd")
	if opts.Name == "" || len(opts.UserCA) == 0 {
		t.Fatalf("testenv: StartNode needs Name and UserCA")
	}
	n := &Node{Name: opts.Name, Login: LoginUser(t), Dir: t.TempDir(), Addr: "127.0.0.1"}
	if opts.Netns {
		n.Netns = NewNetns(t, "pe2e-"+opts.Name)
		n.Addr, n.Port = n.Netns.NodeIP, 22
	}
	if os.Geteuid() == 0 {
		// sshd's privilege separation directory.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("testenv: create /run/sshd: %v", err)
		}
	}

	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("testenv: generate host key: %v", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "postern-e2e host "+opts.Name)
	if err != nil {
		t.Fatalf("testenv: marshal host key: %v", err)
	}
	if n.HostKey, err = ssh.NewPublicKey(pub); err != nil {
		t.Fatalf("testenv: host public key: %v", err)
	}
	keyPath := filepath.Join(n.Dir, "ssh_host_ed25519_key")
	mustWrite(t, keyPath, pem.EncodeToMemory(block), 0o600)
	mustWrite(t, keyPath+".pub", ssh.MarshalAuthorizedKey(n.HostKey), 0o644)
	caPath := filepath.Join(n.Dir, "user_ca.pub")
	mustWrite(t, caPath, opts.UserCA, 0o644)

	var head, tail []string
	for i, l := range opts.ExtraConfig {
		if f := strings.Fields(l); len(f) > 0 && strings.EqualFold(f[0], "Match") {
			tail = opts.ExtraConfig[i:]
			break
		}
		head = append(head, l)
	}
	cfgPath := filepath.Join(n.Dir, "sshd_config")
	logPath := filepath.Join(n.Dir, "sshd.log")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- sshd %s log (%s) ---\n%s", n.Name, logPath, n.Log())
		}
	})

	for attempt := 0; ; attempt++ {
		if n.Netns == nil {
			n.Port = freePort(t)
		}
		cfg := append(append([]string{}, head...),
			"ListenAddress "+n.Addr,
			"Port "+strconv.Itoa(n.Port),
			"HostKey "+keyPath,
		)
		if opts.SignHostKey != nil && attempt == 0 {
			cert, err := opts.SignHostKey(n.HostKey, []string{n.Name, n.Addr})
			if err != nil {
				t.Fatalf("testenv: sign host key of %s: %v", n.Name, err)
			}
			mustWrite(t, keyPath+"-cert.pub", ssh.MarshalAuthorizedKey(cert), 0o644)
		}
		if opts.SignHostKey != nil {
			cfg = append(cfg, "HostCertificate "+keyPath+"-cert.pub")
		}
		cfg = append(cfg,
			"TrustedUserCAKeys "+caPath,
			"AuthorizedKeysFile none",
			"PasswordAuthentication no",
			"KbdInteractiveAuthentication no",
			"PubkeyAuthentication yes",
			"UsePAM no",
			"StrictModes no",
			"PidFile none",
			"AllowUsers "+n.Login,
			"Subsystem sftp internal-sftp",
			"PrintMotd no",
			"LogLevel VERBOSE",
		)
		if sshdAtLeast(sshd, 9, 8) {
			// Failed logins in one test must not lock out the next.
			cfg = append(cfg, "PerSourcePenalties no")
		}
		cfg = append(cfg, tail...)
		mustWrite(t, cfgPath, []byte(strings.Join(cfg, "\n")+"\n"), 0o644)

		err := runSSHD(t, n, sshd, cfgPath, logPath)
		if err == nil {
			return n
		}
		if n.Netns == nil && attempt < 5 && strings.Contains(n.Log(), "Address already in use") {
			continue // another test took the port between probe and bind
		}
		t.Fatalf("testenv: start sshd %s: %v", n.Name, err)
	}
}

// runSSHD starts sshd and waits until it accepts; the process is stopped at
// cleanup.
func runSSHD(t testing.TB, n *Node, sshd, cfgPath, logPath string) error {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer logf.Close()
	args := []string{"-D", "-e", "-f", cfgPath}
	var cmd *exec.Cmd
	if n.Netns != nil {
		cmd = exec.Command(n.Netns.ip, append([]string{"netns", "exec", n.Netns.Name, sshd}, args...)...)
	} else {
		cmd = exec.Command(sshd, args...)
	}
	// A file, not a pipe: session children may outlive the listener.
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()

	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", n.HostPort(), time.Second)
		if err == nil {
			c.Close()
			t.Cleanup(func() { stopProcess(cmd, done) })
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("sshd exited: %v; log:\n%s", waitErr, n.Log())
		default:
		}
		if time.Now().After(deadline) {
			stopProcess(cmd, done)
			return fmt.Errorf("port %s not accepting: %w", n.HostPort(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: find free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func mustWrite(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatalf("testenv: write %s: %v", path, err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile keeps an existing file's mode
		t.Fatalf("testenv: chmod %s: %v", path, err)
	}
}

var (
	sshdVersionOnce sync.Once
	sshdMajor       int
	sshdMinor       int
)

// sshdAtLeast reports whether the sshd binary is OpenSSH major.minor or newer.
func sshdAtLeast(sshd string, major, minor int) bool {
	sshdVersionOnce.Do(func() {
		out, _ := exec.Command(sshd, "-V").CombinedOutput() // older sshd: usage with version
		m := regexp.MustCompile(`OpenSSH_(\d+)\.(\d+)`).FindSubmatch(out)
		if m != nil {
			sshdMajor, _ = strconv.Atoi(string(m[1]))
			sshdMinor, _ = strconv.Atoi(string(m[2]))
		}
	})
	return sshdMajor > major || sshdMajor == major && sshdMinor >= minor
}

// loginUserName is the dedicated unix user nodes log in as when running as
// root: /bin/sh, no rc files, home under /var/lib.
const loginUserName = "postern-e2e"

var (
	loginOnce sync.Once
	loginName string
	loginErr  error
)

// LoginUser ensures the dedicated unix login user exists and returns its
// name. Without root it returns the current user (sshd then runs unprivileged
// and can only log in as its own user). It is safe to call from concurrently
// running test processes: creation is serialised by a flock(2)ed file.
func LoginUser(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			t.Fatalf("testenv: look up current user: %v", err)
		}
		return u.Username
	}
	useradd, usermod := RequireBinary(t, "useradd"), RequireBinary(t, "usermod")
	loginOnce.Do(func() { loginName, loginErr = ensureLoginUser(useradd, usermod) })
	if loginErr != nil {
		t.Fatalf("testenv: %v", loginErr)
	}
	return loginName
}

func ensureLoginUser(useradd, usermod string) (string, error) {
	lock, _, err := flockFile(filepath.Join(lockDir, "user.lock"), true)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if _, err := user.Lookup(loginUserName); err != nil {
		home := "/var/lib/" + loginUserName
		out, err := exec.Command(useradd, "--system", "--user-group", "--create-home",
			"--home-dir", home, "--shell", "/bin/sh", "--comment", "postern e2e tests", loginUserName).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "already exists") {
			return "", fmt.Errorf("create user %s: %w: %s", loginUserName, err, out)
		}
	}
	// useradd leaves the password field "!", which sshd without PAM treats
	// as a locked account. "*NP*" is not locked, yet matches no password.
	if out, err := exec.Command(usermod, "-p", "*NP*", loginUserName).CombinedOutput(); err != nil {
		return "", fmt.Errorf("unlock user %s: %w: %s", loginUserName, err, out)
	}
	return loginUserName, nil
}
