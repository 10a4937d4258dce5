package testenv

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// newCA returns a throwaway ed25519 CA.
func newCA(t *testing.T) ssh.Signer {
	t.Helper()
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

func signCert(t *testing.T, ca ssh.Signer, pub ssh.PublicKey, typ uint32, keyID string, principals []string) *ssh.Certificate {
	t.Helper()
	now := time.Now()
	cert := &ssh.Certificate{
		Key:             pub,
		CertType:        typ,
		KeyId:           keyID,
		ValidPrincipals: principals,
		ValidAfter:      uint64(now.Add(-time.Minute).Unix()),
		ValidBefore:     uint64(now.Add(time.Hour).Unix()),
	}
	if typ == ssh.UserCert {
		cert.Permissions.Extensions = map[string]string{"permit-pty": "", "permit-port-forwarding": ""}
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return cert
}

// agentWithKey starts an agent holding a fresh key, with a user certificate
// from userCA unless userCA is nil.
func agentWithKey(t *testing.T, userCA ssh.Signer, login string) *Agent {
	t.Helper()
	a := StartAgent(t)
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key := agent.AddedKey{PrivateKey: priv, LifetimeSecs: 3600}
	if userCA != nil {
		pub, _ := ssh.NewPublicKey(priv.Public())
		key.Certificate = signCert(t, userCA, pub, ssh.UserCert, "test", []string{login})
	}
	if err := a.Client(t).Add(key); err != nil {
		t.Fatalf("add key to agent: %v", err)
	}
	return a
}

// runSSH runs the real ssh client and returns stdout, stderr and exit code.
func runSSH(t *testing.T, cfg string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, RequireBinary(t, "ssh"), append([]string{"-F", cfg}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run ssh: %v", err)
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

func TestNodes(t *testing.T) {
	userCA, hostCA := newCA(t), newCA(t)
	login := LoginUser(t)
	good := agentWithKey(t, userCA, login)
	plain := agentWithKey(t, nil, login)
	signHost := func(pub ssh.PublicKey, principals []string) (*ssh.Certificate, error) {
		return signCert(t, hostCA, pub, ssh.HostCert, "host", principals), nil
	}
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	mustWrite(t, knownHosts, []byte(KnownHostsCA("*", hostCA.PublicKey())), 0o644)
	otherKnownHosts := filepath.Join(t.TempDir(), "other_known_hosts")
	mustWrite(t, otherKnownHosts, []byte(KnownHostsCA("*", newCA(t).PublicKey())), 0o644)

	userCAPub := ssh.MarshalAuthorizedKey(userCA.PublicKey())
	// Nodes belong to the parent test: a subtest's cleanups run when it ends.
	loopback := StartNode(t, NodeOptions{Name: "node1", UserCA: userCAPub, SignHostKey: signHost})
	var netns *Node
	if os.Geteuid() == 0 || Strict() {
		netns = StartNode(t, NodeOptions{Name: "node1", UserCA: userCAPub, SignHostKey: signHost, Netns: true})
	}
	for _, tc := range []struct {
		name string
		node *Node
	}{
		{name: "loopback", node: loopback},
		{name: "netns", node: netns},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.node
			if n == nil {
				t.Skip("network namespaces need root")
			}
			block := HostBlock{Pattern: "node1", HostName: n.Addr, Port: n.Port, User: n.Login}

			cfg := ClientConfig(t, knownHosts, good.Socket, block)
			stdout, stderr, code := runSSH(t, cfg, "node1", "echo hi; exit 3")
			if stdout != "hi\n" || code != 3 {
				t.Fatalf("ssh node1 = %q, exit %d, want \"hi\\n\", exit 3; stderr: %s", stdout, code, stderr)
			}
			if log := n.Log(); !strings.Contains(log, "ID test") {
				t.Errorf("sshd log does not name the certificate KeyId \"test\":\n%s", log)
			}

			cfg = ClientConfig(t, knownHosts, plain.Socket, block)
			if _, stderr, code := runSSH(t, cfg, "node1", "true"); code != 255 || !strings.Contains(stderr, "Permission denied") {
				t.Errorf("plain key: exit %d, stderr %q; want 255 and Permission denied", code, stderr)
			}

			cfg = ClientConfig(t, otherKnownHosts, good.Socket, block)
			if _, stderr, code := runSSH(t, cfg, "node1", "true"); code != 255 || !strings.Contains(stderr, "Host key verification failed") {
				t.Errorf("unknown host CA: exit %d, stderr %q; want 255 and Host key verification failed", code, stderr)
			}
		})
	}

	// ProxyJump through the loopback node into the netns node proves that
	// the inner hop reads the -F config too.
	outer, inner := loopback, netns
	if inner == nil {
		return
	}
	t.Run("proxyjump", func(t *testing.T) {
		cfg := ClientConfig(t, knownHosts, good.Socket,
			HostBlock{Pattern: "outer", HostName: outer.Addr, Port: outer.Port, User: outer.Login},
			HostBlock{Pattern: "inner", HostName: inner.Addr, Port: inner.Port, User: inner.Login, ProxyJump: "outer"},
		)
		stdout, stderr, code := runSSH(t, cfg, "inner", "echo jumped")
		if stdout != "jumped\n" || code != 0 {
			t.Fatalf("ssh inner = %q, exit %d; stderr: %s", stdout, code, stderr)
		}
	})
}

func TestNetnsCommand(t *testing.T) {
	n := NewNetns(t, "pe2e-cmd")
	out, err := n.Command(context.Background(), "ip", "-o", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr in netns: %v: %s", err, out)
	}
	if !strings.Contains(string(out), n.NodeIP+"/30") {
		t.Errorf("netns %s lacks %s:\n%s", n.Name, n.NodeIP, out)
	}
}

func TestRenderClientConfig(t *testing.T) {
	for _, tc := range []struct {
		name       string
		agentSock  string
		hosts      []HostBlock
		want, deny []string
	}{
		{
			name:      "jump",
			agentSock: "/tmp/a.sock",
			hosts: []HostBlock{
				{Pattern: "bastion", HostName: "127.0.0.1", Port: 2222, User: "alice"},
				{Pattern: "node1", HostName: "10.213.0.2", ProxyJump: "bastion", Extra: []string{"HostKeyAlias node1"}},
			},
			want: []string{
				"Host bastion\n  HostName 127.0.0.1\n  Port 2222\n  User alice\n\n",
				"Host node1\n  HostName 10.213.0.2\n  ProxyJump bastion\n  HostKeyAlias node1\n\nHost *\n",
				"  UserKnownHostsFile \"/tmp/my dir/kh\"\n",
				"  IdentityAgent /tmp/a.sock\n",
				"  StrictHostKeyChecking yes\n", "  BatchMode yes\n", "  IdentityFile none\n",
			},
			deny: []string{"IdentitiesOnly"},
		},
		{
			name: "no agent",
			want: []string{"Host *\n", "  IdentityAgent none\n"},
			deny: []string{"Port", "ProxyJump"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := renderClientConfig("/tmp/my dir/kh", tc.agentSock, tc.hosts)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("config lacks %q:\n%s", w, got)
				}
			}
			for _, d := range tc.deny {
				if strings.Contains(got, d) {
					t.Errorf("config has %q:\n%s", d, got)
				}
			}
		})
	}
}

func TestKnownHostsCA(t *testing.T) {
	ca := newCA(t)
	line := KnownHostsCA("*.example", ca.PublicKey())
	marker, hosts, key, _, _, err := ssh.ParseKnownHosts([]byte(line))
	if err != nil {
		t.Fatalf("parse %q: %v", line, err)
	}
	if marker != "cert-authority" || len(hosts) != 1 || hosts[0] != "*.example" || !bytes.Equal(key.Marshal(), ca.PublicKey().Marshal()) {
		t.Errorf("KnownHostsCA = %q", line)
	}
}

func TestGoBuild(t *testing.T) {
	bin := GoBuild(t, "./internal/testenv/testdata/hello")
	out, err := exec.Command(bin).Output()
	if err != nil || string(out) != "hello from testenv\n" {
		t.Fatalf("run %s = %q, %v", bin, out, err)
	}
	if again := GoBuild(t, "./internal/testenv/testdata/hello"); again != bin {
		t.Errorf("second GoBuild = %s, want cached %s", again, bin)
	}
}

// recordTB records whether a helper skipped or failed the test.
type recordTB struct {
	testing.TB
	fatal, skip bool
}

func (r *recordTB) Fatalf(string, ...any) { r.fatal = true; runtime.Goexit() }
func (r *recordTB) Skipf(string, ...any)  { r.skip = true; runtime.Goexit() }

func TestMissingBinaryPolicy(t *testing.T) {
	for _, tc := range []struct {
		name, ci, require string
		wantFatal         bool
	}{
		{name: "developer", wantFatal: false},
		{name: "ci", ci: "true", wantFatal: true},
		{name: "ci false", ci: "false", wantFatal: false},
		{name: "required", require: "1", wantFatal: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			t.Setenv("POSTERN_REQUIRE_E2E", tc.require)
			if Strict() != tc.wantFatal {
				t.Errorf("Strict() = %v, want %v", Strict(), tc.wantFatal)
			}
			r := &recordTB{TB: t}
			done := make(chan struct{})
			go func() { defer close(done); RequireBinary(r, "postern-no-such-binary") }()
			<-done
			if r.fatal != tc.wantFatal || r.skip == tc.wantFatal {
				t.Errorf("fatal=%v skip=%v, want fatal=%v", r.fatal, r.skip, tc.wantFatal)
			}
		})
	}
}
