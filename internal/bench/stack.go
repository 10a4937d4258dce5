package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// Names and addresses of the stack. 10.216.0.0/16 is kept clear of the
// e2e tests' 10.213 and the demo's 10.214.
const (
	LoginUser = "postern-bench"
	HoldPort  = 7000 // the idle-session sink in the node's namespace
	// Bastion node names: the same sshd, forwarded or recorded.
	NodeFwd = "node"
	NodeRec = "node-rec"
	// bastionPrincipal is the name the signer accepts bastions under.
	bastionPrincipal = "postern-bastion"
)

// The node's network namespace, veth pair and /30 (10.216.N.0/30) belong
// to one run: runs from two checkouts on one machine (make bench in
// each) must not delete each other's. UseNet sets them.
var (
	netID     int
	netnsName string
	vethHost  string
	vethNode  string
	hostIP    string
	NodeIP    string
)

func init() { UseNet(1) }

// UseNet names the node's network N (1 to 250): namespace pbN-node,
// veth pair pbN-h/pbN-n, 10.216.N.1 and .2, CPU cgroups
// postern-bench-N-*. It must be called before StartStack.
func UseNet(n int) {
	netID = n
	netnsName = fmt.Sprintf("pb%d-node", n)
	vethHost, vethNode = fmt.Sprintf("pb%d-h", n), fmt.Sprintf("pb%d-n", n)
	hostIP, NodeIP = fmt.Sprintf("10.216.%d.1", n), fmt.Sprintf("10.216.%d.2", n)
	PathDirect.Target, PathSSHDJump.Target = NodeIP, NodeIP
}

// NetFor is the network a work directory uses by default: one of
// 2..201 from a hash of its absolute path, so that two checkouts
// rarely share one.
func NetFor(dir string) int {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(dir); i++ {
		h ^= uint32(dir[i])
		h *= 16777619
	}
	return 2 + int(h%200)
}

// Stack is everything a benchmark run talks to.
type Stack struct {
	Dir  string // work directory (keys, configs, logs)
	Bin  string // directory with the postern binaries
	Self string // this program, for the hold server

	JumpAddr, BastionAddr, SignerURL string
	JoinToken                        string
	// BastionEnv is added to the bastion's environment (GOGC=…, GODEBUG=…).
	BastionEnv []string

	Node, Jump, Bastion, Signer, Hold *Proc
	// BastionB is the -bastion-b build, nil when not asked for.
	BastionB     *Proc
	BastionBAddr string

	UserCert   *ssh.Certificate
	UserSigner ssh.Signer // the cert signer
	HostCA     ssh.PublicKey
	// hostCASigner certifies the kube forwarder.
	hostCASigner ssh.Signer
	// kubeExecB is a second kube-exec measured beside bin/kube-exec.
	kubeExecB string
	// The bastion's host key and certificate, to call the signer's
	// bastion API as the bastion does.
	BastionKey  ssh.Signer
	BastionCert *ssh.Certificate

	// CPU accounting of the jump hosts (nil: fall back to /proc).
	jumpCPUGroup, bastionCPUGroup, bastionBCPUGroup *cpuGroup

	procs   []*Proc
	cleanup []func()
	log     func(format string, args ...any)
}

// Proc is a started process whose output goes to a log file.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Log  string
	done chan struct{}
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// StackOptions say where things are.
type StackOptions struct {
	Dir        string   // work directory, recreated
	Bin        string   // postern-signer and postern-bastion
	SignerBin  string   // overrides Bin/postern-signer
	BastionBin string   // overrides Bin/postern-bastion
	BastionB   string   // a second bastion build beside the first (Config.BastionB)
	BastionEnv []string // added to the bastion's environment
	Self       string   // this program, run as the sink in the node namespace
	Logf       func(string, ...any)
}

// StartStack sets up the node namespace, the sshd node and jump host, the
// signer, the bastion and the hold server. Close removes all of it.
func StartStack(ctx context.Context, o StackOptions) (_ *Stack, err error) {
	dir, bin, self := o.Dir, o.Bin, o.Self
	s := &Stack{Dir: dir, Bin: bin, Self: self, log: o.Logf, BastionEnv: o.BastionEnv}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if os.Geteuid() != 0 {
		return nil, errors.New("the benchmark needs root (network namespaces, sshd, a login user)")
	}
	for _, b := range []string{"postern-signer", "postern-bastion"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("find %s: %w (run make build)", b, err)
		}
	}
	for _, b := range []string{"ssh", "ssh-keygen", "ip"} {
		if _, err := exec.LookPath(b); err != nil {
			return nil, fmt.Errorf("find %s: %w (run make prereqs)", b, err)
		}
	}
	_ = os.RemoveAll(dir)
	for _, d := range []string{"signer", "bastion", "jump", "node", "client", "logs", "recordings"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	_ = os.MkdirAll("/run/sshd", 0o755)
	if err := ensureLoginUser(); err != nil {
		return nil, err
	}
	if err := s.netns(); err != nil {
		return nil, err
	}
	if err := s.keys(); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	s.BastionAddr = "127.0.0.1:" + strconv.Itoa(ports[0])
	s.JumpAddr = "127.0.0.1:" + strconv.Itoa(ports[1])
	s.SignerURL = "https://127.0.0.1:" + strconv.Itoa(ports[2])

	sshd, err := exec.LookPath("sshd")
	if err != nil {
		sshd = "/usr/sbin/sshd"
	}
	// Node: stock sshd in its namespace, never the bottleneck on startups.
	if err := s.writeSSHD("node", NodeIP, 22, "MaxStartups 1000:30:1000\n"); err != nil {
		return nil, err
	}
	if s.Node, err = s.start("node", "ip", "netns", "exec", netnsName, sshd, "-D", "-e", "-f", filepath.Join(dir, "node", "sshd_config")); err != nil {
		return nil, err
	}
	if s.Hold, err = s.start("hold", "ip", "netns", "exec", netnsName, self, "hold", net.JoinHostPort(NodeIP, strconv.Itoa(HoldPort))); err != nil {
		return nil, err
	}
	// Jump host: stock sshd with stock limits (MaxStartups 10:30:100).
	if err := s.writeSSHD("jump", "127.0.0.1", ports[1], "AllowTcpForwarding yes\n"); err != nil {
		return nil, err
	}
	if s.Jump, err = s.start("sshd-jump", sshd, "-D", "-e", "-f", filepath.Join(dir, "jump", "sshd_config")); err != nil {
		return nil, err
	}
	s.jumpCPUGroup = s.cpuGroup("sshd-jump", s.Jump)
	if err := s.writeConfig(ports); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "postern.toml")
	signerBin := filepath.Join(bin, "postern-signer")
	if o.SignerBin != "" {
		signerBin = o.SignerBin
	}
	if s.Signer, err = s.start("signer", signerBin, "--config", cfg); err != nil {
		return nil, err
	}
	if err := waitPort(ctx, "127.0.0.1:"+strconv.Itoa(ports[2]), s.Signer); err != nil {
		return nil, err
	}
	bastionBin := filepath.Join(bin, "postern-bastion")
	if o.BastionBin != "" {
		bastionBin = o.BastionBin
	}
	if o.BastionB != "" {
		// Before the first bastion writes to its data directory: a copy
		// holds the same host key, certificate and CA files.
		if err := s.startBastionB(ctx, o.BastionB); err != nil {
			return nil, err
		}
	}
	if s.Bastion, err = s.start("bastion", bastionBin, "--config", cfg); err != nil {
		return nil, err
	}
	s.bastionCPUGroup = s.cpuGroup("bastion", s.Bastion)
	for _, w := range []struct {
		addr string
		p    *Proc
	}{{s.BastionAddr, s.Bastion}, {s.JumpAddr, s.Jump}} {
		if err := waitPort(ctx, w.addr, w.p); err != nil {
			return nil, err
		}
	}
	for _, p := range []*Proc{s.Node, s.Hold} {
		if err := waitNetnsPort(ctx, p); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// startBastionB starts bin as a second bastion: the same configuration
// but another port and a copy of the data directory (its audit log and
// spool are its own).
func (s *Stack) startBastionB(ctx context.Context, bin string) error {
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("-bastion-b: %w", err)
	}
	src, dst := filepath.Join(s.Dir, "bastion"), filepath.Join(s.Dir, "bastion-b")
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, fi.Mode().Perm()); err != nil {
			return err
		}
	}
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	s.BastionBAddr = "127.0.0.1:" + strconv.Itoa(ports[0])
	cfg, err := os.ReadFile(filepath.Join(s.Dir, "postern.toml"))
	if err != nil {
		return err
	}
	c := strings.Replace(string(cfg), fmt.Sprintf("listen = %q", s.BastionAddr), fmt.Sprintf("listen = %q", s.BastionBAddr), 1)
	c = strings.Replace(c, fmt.Sprintf("data_dir = \"%s/bastion\"", s.Dir), fmt.Sprintf("data_dir = \"%s/bastion-b\"", s.Dir), 1)
	if c == string(cfg) || !strings.Contains(c, s.BastionBAddr) || !strings.Contains(c, "/bastion-b\"") {
		return errors.New("-bastion-b: could not derive its configuration")
	}
	cfgPath := filepath.Join(s.Dir, "postern-b.toml")
	if err := os.WriteFile(cfgPath, []byte(c), 0o600); err != nil {
		return err
	}
	if s.BastionB, err = s.start("bastion-b", bin, "--config", cfgPath); err != nil {
		return err
	}
	s.bastionBCPUGroup = s.cpuGroup("bastion-b", s.BastionB)
	return waitPort(ctx, s.BastionBAddr, s.BastionB)
}

// RestartBastion starts a fresh bastion process (bin may be empty: the
// same binary), so that memory is measured from a clean heap.
func (s *Stack) RestartBastion(ctx context.Context, bin string) error {
	if bin == "" {
		bin = s.Bastion.Cmd.Path
	}
	s.Bastion.stop()
	var err error
	if s.Bastion, err = s.start("bastion", bin, "--config", filepath.Join(s.Dir, "postern.toml")); err != nil {
		return err
	}
	if s.bastionCPUGroup != nil {
		if err := s.bastionCPUGroup.add(s.Bastion.Pid()); err != nil {
			s.bastionCPUGroup = nil
		}
	}
	return waitPort(ctx, s.BastionAddr, s.Bastion)
}

// cpuGroup puts p into a fresh CPU accounting group; nil if that fails.
func (s *Stack) cpuGroup(name string, p *Proc) *cpuGroup {
	g := newCPUGroup(name)
	if g == nil {
		s.log("no writable cgroup for CPU accounting of %s: using /proc/PID/stat", name)
		return nil
	}
	if err := g.add(p.Pid()); err != nil {
		s.log("cgroup for %s: %v: using /proc/PID/stat", name, err)
		g.remove()
		return nil
	}
	s.cleanup = append(s.cleanup, g.remove)
	return g
}

// Close stops every process and removes the namespace.
func (s *Stack) Close() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		s.procs[i].stop()
	}
	for i := len(s.cleanup) - 1; i >= 0; i-- {
		s.cleanup[i]()
	}
}

func (p *Proc) stop() {
	if p.Cmd.Process == nil {
		return
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

func (s *Stack) start(name string, argv ...string) (*Proc, error) {
	return s.startEnv(name, nil, argv...)
}

// startEnv starts a process with env (nil: this process's environment).
func (s *Stack) startEnv(name string, env []string, argv ...string) (*Proc, error) {
	logPath := filepath.Join(s.Dir, "logs", name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	if (name == "bastion" || name == "bastion-b") && len(s.BastionEnv) > 0 {
		cmd.Env = append(os.Environ(), s.BastionEnv...)
	}
	if env != nil {
		cmd.Env = env
	}
	cmd.Stdout, cmd.Stderr = f, f
	// Nothing outlives a killed benchmark.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, Log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	s.procs = append(s.procs, p)
	return p, nil
}

// Exited says whether the process has ended, with the tail of its log.
func (p *Proc) Exited() (bool, string) {
	select {
	case <-p.done:
		b, _ := os.ReadFile(p.Log)
		if len(b) > 2000 {
			b = b[len(b)-2000:]
		}
		return true, string(b)
	default:
		return false, ""
	}
}

func waitPort(ctx context.Context, addr string, p *Proc) error {
	return waitProc(ctx, p, 15*time.Second, 50*time.Millisecond, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, fmt.Sprintf("%s did not listen on %s (log: %s)", p.Name, addr, p.Log))
}

// waitProc polls ready every interval until it is true, p exits, ctx ends
// or timeout passes (then the error is timedOut).
func waitProc(ctx context.Context, p *Proc, timeout, interval time.Duration, ready func() bool, timedOut string) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ready() {
			return nil
		}
		if gone, tail := p.Exited(); gone {
			return fmt.Errorf("%s exited: %s", p.Name, tail)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
	return errors.New(timedOut)
}

// waitNetnsPort waits until a namespace process has its socket: the host
// reaches the node's address through the veth pair.
func waitNetnsPort(ctx context.Context, p *Proc) error {
	addr := net.JoinHostPort(NodeIP, "22")
	if p.Name == "hold" {
		addr = net.JoinHostPort(NodeIP, strconv.Itoa(HoldPort))
	}
	return waitPort(ctx, addr, p)
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

func ensureLoginUser() error {
	if _, err := user.Lookup(LoginUser); err != nil {
		out, err := exec.Command("useradd", "--system", "--user-group", "--create-home",
			"--home-dir", "/var/lib/"+LoginUser, "--shell", "/bin/sh", "--comment", "postern benchmarks", LoginUser).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "already exists") {
			return fmt.Errorf("create user %s: %w: %s", LoginUser, err, out)
		}
	}
	// useradd leaves "!" (locked for sshd without PAM); "*NP*" is not
	// locked and matches no password.
	if out, err := exec.Command("usermod", "-p", "*NP*", LoginUser).CombinedOutput(); err != nil {
		return fmt.Errorf("unlock user %s: %w: %s", LoginUser, err, out)
	}
	return nil
}

func (s *Stack) netns() error {
	ipc := func(args ...string) error {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	// Left over by a killed run.
	_ = exec.Command("ip", "link", "del", vethHost).Run()
	_ = exec.Command("ip", "netns", "del", netnsName).Run()
	s.cleanup = append(s.cleanup, func() {
		_ = exec.Command("ip", "link", "del", vethHost).Run()
		_ = exec.Command("ip", "netns", "del", netnsName).Run()
	})
	for _, a := range [][]string{
		{"netns", "add", netnsName},
		{"link", "add", vethHost, "type", "veth", "peer", "name", vethNode},
		{"link", "set", vethNode, "netns", netnsName},
		{"addr", "add", hostIP + "/30", "dev", vethHost},
		{"link", "set", vethHost, "up"},
		{"-n", netnsName, "addr", "add", NodeIP + "/30", "dev", vethNode},
		{"-n", netnsName, "link", "set", vethNode, "up"},
		{"-n", netnsName, "link", "set", "lo", "up"},
	} {
		if err := ipc(a...); err != nil {
			return err
		}
	}
	return nil
}

// keys creates the CAs (postern-signer init), the host keys with their
// certificates and the person's key and certificate.
func (s *Stack) keys() error {
	sd := filepath.Join(s.Dir, "signer")
	if out, err := exec.Command(filepath.Join(s.Bin, "postern-signer"), "init", "--dir", sd).CombinedOutput(); err != nil {
		return fmt.Errorf("postern-signer init: %w: %s", err, out)
	}
	userCA, err := readSigner(filepath.Join(sd, "user_ca"))
	if err != nil {
		return err
	}
	hostCA, err := readSigner(filepath.Join(sd, "host_ca"))
	if err != nil {
		return err
	}
	s.HostCA = hostCA.PublicKey()
	s.hostCASigner = hostCA
	// The bastion accepts kube forwarders certified by the host CA.
	if err := os.WriteFile(filepath.Join(s.Dir, "bastion", "forwarder_ca.pub"), ssh.MarshalAuthorizedKey(s.HostCA), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "client", "known_hosts"),
		[]byte("@cert-authority * "+string(ssh.MarshalAuthorizedKey(s.HostCA))), 0o600); err != nil {
		return err
	}
	for _, h := range []struct {
		dir   string
		names []string
	}{
		{"node", []string{NodeFwd, NodeRec, NodeIP}},
		{"jump", []string{"sshd-jump", "127.0.0.1"}},
		{"bastion", []string{bastionPrincipal, "127.0.0.1"}},
	} {
		key := filepath.Join(s.Dir, h.dir, "ssh_host_ed25519_key")
		if h.dir == "bastion" {
			key = filepath.Join(s.Dir, h.dir, "host_key")
		}
		priv, pub, err := writeKey(key)
		if err != nil {
			return err
		}
		cert, err := signCert(hostCA, pub, ssh.HostCert, h.dir, h.names, nil)
		if err != nil {
			return err
		}
		if err := os.WriteFile(key+"-cert.pub", ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
			return err
		}
		if h.dir == "bastion" {
			if s.BastionKey, err = ssh.NewSignerFromKey(priv); err != nil {
				return err
			}
			s.BastionCert = cert
		}
	}
	priv, pub, err := writeKey(filepath.Join(s.Dir, "client", "id_ed25519"))
	if err != nil {
		return err
	}
	s.UserCert, err = signCert(userCA, pub, ssh.UserCert, "bench@postern", []string{LoginUser}, map[string]string{
		"permit-pty": "", "permit-port-forwarding": "", "roles@postern": "bench",
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "client", "id_ed25519-cert.pub"), ssh.MarshalAuthorizedKey(s.UserCert), 0o644); err != nil {
		return err
	}
	ks, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return err
	}
	if s.UserSigner, err = ssh.NewCertSigner(s.UserCert, ks); err != nil {
		return err
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	s.JoinToken = fmt.Sprintf("%x", tok)
	return os.WriteFile(filepath.Join(sd, "join-tokens"), []byte(s.JoinToken+"\n"), 0o600)
}

func readSigner(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	k, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("parse CA key %s: %w", path, err)
	}
	return k, nil
}

func writeKey(path string) (ed25519.PrivateKey, ssh.PublicKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		return nil, nil, err
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		return nil, nil, err
	}
	return priv, pub, os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(pub), 0o644)
}

func signCert(ca ssh.Signer, pub ssh.PublicKey, typ uint32, id string, principals []string, ext map[string]string) (*ssh.Certificate, error) {
	var serial [8]byte
	_, _ = rand.Read(serial[:])
	now := time.Now()
	c := &ssh.Certificate{
		Key: pub, CertType: typ, KeyId: id, ValidPrincipals: principals,
		Serial:      uint64(serial[0])<<56 | uint64(serial[1])<<48 | uint64(serial[2])<<40 | uint64(serial[3])<<32 | uint64(serial[4])<<24 | uint64(serial[5])<<16 | uint64(serial[6])<<8 | uint64(serial[7]),
		ValidAfter:  uint64(now.Add(-5 * time.Minute).Unix()),
		ValidBefore: uint64(now.Add(8 * time.Hour).Unix()),
		Permissions: ssh.Permissions{Extensions: ext},
	}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		return nil, fmt.Errorf("sign certificate %s: %w", id, err)
	}
	return c, nil
}

func (s *Stack) writeSSHD(name, addr string, port int, extra string) error {
	d := filepath.Join(s.Dir, name)
	cfg := fmt.Sprintf(`ListenAddress %s
Port %d
HostKey %s/ssh_host_ed25519_key
HostCertificate %s/ssh_host_ed25519_key-cert.pub
TrustedUserCAKeys %s/signer/user_ca.pub
AuthorizedKeysFile none
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
PidFile none
X11Forwarding no
PrintMotd no
LogLevel ERROR
%s`, addr, port, d, d, s.Dir, extra)
	return os.WriteFile(filepath.Join(d, "sshd_config"), []byte(cfg), 0o600)
}

func (s *Stack) writeConfig(ports []int) error {
	d := s.Dir
	cfg := fmt.Sprintf(`# Written by postern-bench (internal/bench).
[signer]
listen = "127.0.0.1:%d"
data_dir = "%s/signer"
join_token_file = "%s/signer/join-tokens"
host_patterns = ["*.bench", "10.0.0.0/8"]
bastions = [%q]

[bastion]
listen = "127.0.0.1:%d"
data_dir = "%s/bastion"
user_ca = "%s/signer/user_ca.pub"
shutdown_grace = "2s"

[[bastion.node]]
name = %q
addr = %q
labels = { bench = "yes" }
recording = "off"

[[bastion.node]]
name = %q
addr = %q
labels = { bench = "yes" }
recording = "on"

[storage]
local_dir = "%s/recordings"

[kube]
forwarder_ca = "%s/bastion/forwarder_ca.pub"

[[role]]
name = "bench"
groups = ["bench"]
logins = [%q]
nodes = ["label:bench=yes", "label:bench=yes:%d"]
extensions = ["permit-pty", "permit-port-forwarding"]
recording = "off"
kube_clusters = [%q]
kube_groups = [%q]
`, ports[2], d, d, bastionPrincipal, ports[0], d, d, NodeFwd, NodeIP, NodeRec, NodeIP, d, d, LoginUser, HoldPort, KubeCluster, kubeGroup)
	return os.WriteFile(filepath.Join(d, "postern.toml"), []byte(cfg), 0o600)
}

// ClientConfig writes (once) an ssh -F file forcing cipher and kex when
// they are not empty, and returns its path.
func (s *Stack) ClientConfig(cipher, kex string) (string, error) {
	name := "ssh_config"
	if cipher != "" {
		name += "-" + strings.SplitN(cipher, "@", 2)[0]
	}
	if kex != "" {
		name += "-" + kex
	}
	path := filepath.Join(s.Dir, "client", name)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	c := filepath.Join(s.Dir, "client")
	var b strings.Builder
	host := func(alias, addr string) {
		h, p, _ := net.SplitHostPort(addr)
		fmt.Fprintf(&b, "Host %s\n  HostName %s\n  Port %s\n", alias, h, p)
	}
	host("sshd-jump", s.JumpAddr)
	host("bastion", s.BastionAddr)
	fmt.Fprintf(&b, "Host bastion\n  HostKeyAlias %s\n", bastionPrincipal)
	if s.BastionB != nil {
		host("bastion-b", s.BastionBAddr)
		fmt.Fprintf(&b, "Host bastion-b\n  HostKeyAlias %s\n", bastionPrincipal)
	}
	fmt.Fprintf(&b, `Host *
  User %s
  IdentityFile %s/id_ed25519
  CertificateFile %s/id_ed25519-cert.pub
  IdentitiesOnly yes
  IdentityAgent none
  UserKnownHostsFile %s/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  UpdateHostKeys no
  BatchMode yes
  ControlMaster no
  ControlPath none
  ForwardAgent no
  ServerAliveInterval 0
  LogLevel ERROR
`, LoginUser, c, c, c)
	if cipher != "" {
		fmt.Fprintf(&b, "  Ciphers %s\n", cipher)
	}
	if kex != "" {
		fmt.Fprintf(&b, "  KexAlgorithms %s\n", kex)
	}
	return path, os.WriteFile(path, []byte(b.String()), 0o600)
}
