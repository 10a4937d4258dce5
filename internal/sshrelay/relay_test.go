package sshrelay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/postern-dev/postern/internal/testenv"
)

// record is what the observer saw.
type record struct {
	mu       sync.Mutex
	requests []string
	input    bytes.Buffer
	output   bytes.Buffer
	exits    []string
	forwards []string
	closed   int
}

type sessObs struct{ r *record }

func (s sessObs) Request(name string, payload []byte, ok bool) {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.requests = append(s.r.requests, fmt.Sprintf("%s:%v", name, ok))
}
func (s sessObs) ClientData(p []byte) { s.r.mu.Lock(); s.r.input.Write(p); s.r.mu.Unlock() }
func (s sessObs) NodeData(p []byte, _ bool) {
	s.r.mu.Lock()
	s.r.output.Write(p)
	s.r.mu.Unlock()
}
func (s sessObs) Exit(st int, sig string) {
	s.r.mu.Lock()
	s.r.exits = append(s.r.exits, fmt.Sprintf("%d%s", st, sig))
	s.r.mu.Unlock()
}
func (s sessObs) Closed() { s.r.mu.Lock(); s.r.closed++; s.r.mu.Unlock() }

func (r *record) snapshot() (reqs []string, in, out string, exits, fwd []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.requests...), r.input.String(), r.output.String(), append([]string(nil), r.exits...), append([]string(nil), r.forwards...)
}

type fixture struct {
	cfg    string // ssh -F file
	rec    *record
	login  string
	node   *testenv.Node
	remote atomic.Bool // allow -R
	agent  *testenv.Agent
}

// setup starts a real sshd node and a relay server in front of it that a
// real ssh client reaches as host "relay".
func setup(t *testing.T, allowRemote bool) *fixture {
	t.Helper()
	testenv.RequireBinary(t, "ssh")
	userCA := newSigner(t)
	hostCA := newSigner(t)
	f := &fixture{rec: &record{}}
	f.remote.Store(allowRemote)
	f.node = testenv.StartNode(t, testenv.NodeOptions{
		Name:   "node1",
		UserCA: ssh.MarshalAuthorizedKey(userCA.PublicKey()),
		SignHostKey: func(pub ssh.PublicKey, principals []string) (*ssh.Certificate, error) {
			return sign(hostCA, pub, ssh.HostCert, principals, nil)
		},
	})
	f.login = f.node.Login

	// The bastion's side: its host key, and a certificate to log in to
	// the node with.
	relayHost := newSigner(t)
	bastionKey := newSigner(t)
	cert, err := sign(userCA, bastionKey.PublicKey(), ssh.UserCert, []string{f.login},
		map[string]string{"permit-pty": "", "permit-port-forwarding": ""})
	if err != nil {
		t.Fatal(err)
	}
	certSigner, err := ssh.NewCertSigner(cert, bastionKey)
	if err != nil {
		t.Fatal(err)
	}
	checker := &ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool {
		return bytes.Equal(k.Marshal(), hostCA.PublicKey().Marshal())
	}}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	scfg := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil }}
	scfg.AddHostKey(relayHost)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); ln.Close(); wg.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				sc, chans, reqs, err := ssh.NewServerConn(c, scfg)
				if err != nil {
					return
				}
				nc, err := net.Dial("tcp", f.node.HostPort())
				if err != nil {
					sc.Close()
					return
				}
				cc, nchans, nreqs, err := ssh.NewClientConn(nc, f.node.HostPort(), &ssh.ClientConfig{
					User: f.login, Auth: []ssh.AuthMethod{ssh.PublicKeys(certSigner)},
					HostKeyCallback: checker.CheckHostKey,
				})
				if err != nil {
					t.Logf("dial node: %v", err)
					sc.Close()
					return
				}
				r := &Relay{Client: sc, ClientChans: chans, ClientReqs: reqs, Node: cc, NodeChans: nchans, NodeReqs: nreqs,
					Policy: Policy{
						LocalForward:  func(string, uint32) bool { return true },
						RemoteForward: func(string, uint32) bool { return f.remote.Load() },
					},
					Observer: Observer{
						Session: func(int) SessionObserver { return sessObs{f.rec} },
						Forward: func(fw Forward) func(int64, int64, error) {
							return func(in, out int64, _ error) {
								f.rec.mu.Lock()
								f.rec.forwards = append(f.rec.forwards, fmt.Sprintf("%s refused=%q in=%d out=%d", fw, fw.Refused, in, out))
								f.rec.mu.Unlock()
							}
						},
					}}
				_ = r.Run(ctx)
			}()
		}
	}()

	// The person: a plain key in a real agent (the test relay accepts any).
	f.agent = testenv.StartAgent(t)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	if err := f.agent.Client(t).Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	kh := filepath.Join(t.TempDir(), "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%d %s", port, ssh.MarshalAuthorizedKey(relayHost.PublicKey()))
	if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	f.cfg = testenv.ClientConfig(t, kh, f.agent.Socket, testenv.HostBlock{Pattern: "relay", HostName: "127.0.0.1", Port: port, User: f.login})
	return f
}

func (f *fixture) ssh(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(testenv.RequireBinary(t, "ssh"), append([]string{"-F", f.cfg}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func TestExecStdinExit(t *testing.T) {
	f := setup(t, false)
	out, errOut, code := f.ssh(t, "hello through the relay\n", "relay", "cat; echo err >&2; exit 7")
	if out != "hello through the relay\n" || !strings.Contains(errOut, "err") || code != 7 {
		t.Fatalf("out %q err %q code %d", out, errOut, code)
	}
	reqs, in, nodeOut, exits, _ := f.rec.snapshot()
	if !contains(reqs, "exec:true") || in != "hello through the relay\n" || !strings.Contains(nodeOut, "err") || len(exits) != 1 || exits[0] != "7" {
		t.Fatalf("observed reqs=%v in=%q out=%q exits=%v", reqs, in, nodeOut, exits)
	}
}

func TestLargeOutputNotTruncated(t *testing.T) {
	f := setup(t, false)
	// The last bytes are printed right before exit: none may be lost.
	out, _, code := f.ssh(t, "", "relay", "head -c 3000000 /dev/zero | tr '\\0' x; echo END; exit 4")
	if code != 4 || len(out) != 3000004 || !strings.HasSuffix(out, "xEND\n") {
		t.Fatalf("code %d, %d bytes, tail %q", code, len(out), out[max(0, len(out)-10):])
	}
}

func TestPTY(t *testing.T) {
	f := setup(t, false)
	out, _, code := f.ssh(t, "", "-tt", "relay", "tty; stty size; exit 3")
	if code != 3 || !strings.Contains(out, "/dev/pts/") {
		t.Fatalf("code %d out %q", code, out)
	}
	reqs, _, _, exits, _ := f.rec.snapshot()
	if !contains(reqs, "pty-req:true") || len(exits) != 1 || exits[0] != "3" {
		t.Fatalf("reqs %v exits %v", reqs, exits)
	}
}

func TestSFTPSubsystem(t *testing.T) {
	sftp := testenv.RequireBinary(t, "sftp")
	f := setup(t, false)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "up.txt"), []byte("to the node\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	remote := "/tmp/postern-relay-" + strconv.Itoa(os.Getpid()) + ".txt"
	t.Cleanup(func() { os.Remove(remote) })
	batch := filepath.Join(dir, "batch")
	os.WriteFile(batch, []byte(fmt.Sprintf("put %s %s\nget %s %s\n", filepath.Join(dir, "up.txt"), remote, remote, filepath.Join(dir, "down.txt"))), 0o644)
	out, err := exec.Command(sftp, "-F", f.cfg, "-b", batch, "relay").CombinedOutput()
	if err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "down.txt")); string(b) != "to the node\n" {
		t.Fatalf("round trip got %q", b)
	}
	reqs, _, _, _, _ := f.rec.snapshot()
	if !contains(reqs, "subsystem:true") {
		t.Fatalf("reqs %v", reqs)
	}
}

func TestLocalForwardW(t *testing.T) {
	f := setup(t, false)
	// ssh -W asks for a direct-tcpip channel; the node's own sshd is the
	// target, so the banner proves the bytes went through.
	cmd := exec.Command(testenv.RequireBinary(t, "ssh"), "-F", f.cfg, "-W", f.node.HostPort(), "relay")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	stdin.Close()
	_ = cmd.Wait()
	if err != nil || !strings.HasPrefix(line, "SSH-2.0-OpenSSH") {
		t.Fatalf("banner %q err %v", line, err)
	}
	waitFor(t, func() bool { _, _, _, _, fwd := f.rec.snapshot(); return len(fwd) == 1 })
	_, _, _, _, fwd := f.rec.snapshot()
	if !strings.HasPrefix(fwd[0], "direct-tcpip ") || !strings.Contains(fwd[0], `refused=""`) {
		t.Fatalf("forward events %v", fwd)
	}
}

func TestRemoteForward(t *testing.T) {
	f := setup(t, true)
	if f.node.Netns != nil {
		t.Skip("the node must share the test's loopback")
	}
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	rport := freePort(t)
	cmd := exec.Command(testenv.RequireBinary(t, "ssh"), "-F", f.cfg, "-N", "-o", "ExitOnForwardFailure=yes",
		"-R", fmt.Sprintf("127.0.0.1:%d:%s", rport, echo.Addr()), "relay")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var c net.Conn
	waitFor(t, func() bool {
		c, err = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", rport))
		return err == nil
	})
	defer c.Close()
	fmt.Fprint(c, "ping\n")
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != "ping\n" {
		t.Fatalf("echo through -R: %q %v", got, err)
	}

	// With the policy saying no, ssh is told the forward failed.
	f.remote.Store(false)
	_, errOut, code := f.ssh(t, "", "-o", "ExitOnForwardFailure=yes", "-R", fmt.Sprintf("127.0.0.1:%d:%s", freePort(t), echo.Addr()), "relay", "true")
	if code == 0 || !strings.Contains(errOut, "remote port forwarding failed") {
		t.Fatalf("refused -R: code %d err %q", code, errOut)
	}
}

func TestAgentAndX11Refused(t *testing.T) {
	f := setup(t, false)
	out, _, code := f.ssh(t, "", "-A", "-X", "relay", "echo agent=${SSH_AUTH_SOCK:-none} display=${DISPLAY:-none}")
	if code != 0 || strings.TrimSpace(out) != "agent=none display=none" {
		t.Fatalf("code %d out %q", code, out)
	}
	reqs, _, _, _, _ := f.rec.snapshot()
	if !contains(reqs, "auth-agent-req@openssh.com:false") {
		t.Fatalf("reqs %v", reqs)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func newSigner(t *testing.T) ssh.Signer {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sign(ca ssh.Signer, pub ssh.PublicKey, typ uint32, principals []string, ext map[string]string) (*ssh.Certificate, error) {
	c := &ssh.Certificate{Key: pub, CertType: typ, KeyId: "relay-test", ValidPrincipals: principals,
		ValidAfter: uint64(time.Now().Add(-time.Minute).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix()),
		Permissions: ssh.Permissions{Extensions: ext}}
	return c, c.SignCert(rand.Reader, ca)
}
