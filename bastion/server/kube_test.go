package server

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/bastion/revocation"
	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/krl"
	"github.com/postern-dev/postern/internal/kubeproto"
	"github.com/postern-dev/postern/internal/testenv"
)

// kubeFixture is a bastion with Kubernetes access: forwarders certified
// by fwdCA, the role kube-dev granting clusters c1 and c2, ops (no
// cluster) and a KRL the test controls.
type kubeFixture struct {
	*fixture
	fwdCA ssh.Signer
	krl   *fakeKRL
}

func startKubeFixture(t *testing.T) *kubeFixture {
	t.Helper()
	k := &kubeFixture{fwdCA: newSigner(t), krl: &fakeKRL{}}
	k.krl.set(t, 1, nil)
	caPath := filepath.Join(t.TempDir(), "forwarder_ca.pub")
	if err := os.WriteFile(caPath, ssh.MarshalAuthorizedKey(k.fwdCA.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	k.fixture = startRevFixture(t, k.krl, `revocation_poll = "100ms"`, `
[kube]
forwarder_ca = "`+caPath+`"
keepalive = "1s"

[[role]]
name = "kube-dev"
groups = ["dev"]
kube_clusters = ["c1", "c2"]
kube_groups = ["team-a-devs"]
recording = "off"
`)
	return k
}

// forwarderKey mints a forwarder host key certified by ca.
func forwarderKey(t *testing.T, ca ssh.Signer, keyID string, principals ...string) ssh.Signer {
	t.Helper()
	s, _ := mint(t, ca, certOpts{typ: ssh.HostCert, keyID: keyID, principals: principals})
	return s
}

// dialForwarder connects as a forwarder does (no registration yet).
func (k *kubeFixture) dialForwarder(t *testing.T, key ssh.Signer) (*ssh.Client, error) {
	t.Helper()
	return ssh.Dial("tcp", k.addr, &ssh.ClientConfig{
		User: config.KubeForwarderLogin, Auth: []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second,
	})
}

// register sends the forwarder's registration for cluster.
func register(t *testing.T, c *ssh.Client, cluster string) (bool, string) {
	t.Helper()
	ok, msg, err := c.SendRequest(kubeproto.RegisterRequest, true, []byte(`{"cluster":"`+cluster+`","id":"test"}`))
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	return ok, string(msg)
}

// testForwarder is an in-process forwarder: it echoes every kube channel
// the bastion opens to it and reports each channel's identity and end.
type testForwarder struct {
	c     *ssh.Client
	got   chan kubeproto.Identity
	ended chan string // session ids
}

func (k *kubeFixture) startForwarder(t *testing.T, key ssh.Signer, cluster string) *testForwarder {
	t.Helper()
	c, err := k.dialForwarder(t, key)
	if err != nil {
		t.Fatalf("forwarder refused: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	fw := &testForwarder{c: c, got: make(chan kubeproto.Identity, 16), ended: make(chan string, 16)}
	chans := c.HandleChannelOpen(kubeproto.ChannelType)
	go func() {
		for nc := range chans {
			id, err := kubeproto.ParseIdentity(nc.ExtraData())
			if err != nil {
				nc.Reject(ssh.Prohibited, err.Error())
				continue
			}
			ch, reqs, err := nc.Accept()
			if err != nil {
				continue
			}
			go ssh.DiscardRequests(reqs)
			fw.got <- id
			go func() { io.Copy(ch, ch); ch.Close(); fw.ended <- id.SessionID }()
		}
	}()
	if ok, msg := register(t, c, cluster); !ok {
		t.Fatalf("registration refused: %s", msg)
	}
	return fw
}

// kubeSubsystemClient is the client side of a kube/CLUSTER subsystem channel as kube-exec opens it.
type kubeSubsystemClient struct {
	ssh.Channel
	stderr *testenv.Logs
	exit   chan uint32
}

// openKube asks for subsystem name on c; refused, it returns nil and what
// the bastion wrote on stderr.
func openKube(t *testing.T, c *ssh.Client, name string) (*kubeSubsystemClient, string) {
	t.Helper()
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		t.Fatalf("open session: %v", err)
	}
	kc := &kubeSubsystemClient{Channel: ch, stderr: &testenv.Logs{}, exit: make(chan uint32, 1)}
	go func() {
		for r := range reqs {
			if r.Type == "exit-status" && len(r.Payload) == 4 {
				kc.exit <- uint32(r.Payload[0])<<24 | uint32(r.Payload[1])<<16 | uint32(r.Payload[2])<<8 | uint32(r.Payload[3])
			}
			if r.WantReply {
				r.Reply(false, nil)
			}
		}
	}()
	stderrDone := make(chan struct{})
	go func() { io.Copy(kc.stderr, ch.Stderr()); close(stderrDone) }()
	ok, err := ch.SendRequest("subsystem", true, ssh.Marshal(struct{ Name string }{name}))
	if err != nil {
		t.Fatalf("subsystem %s: %v", name, err)
	}
	if !ok {
		select {
		case <-stderrDone:
		case <-time.After(5 * time.Second):
		}
		ch.Close()
		return nil, kc.stderr.String()
	}
	return kc, ""
}

// echoes checks that bytes written to a kube channel come back (the test
// forwarder echoes).
func (kc *kubeSubsystemClient) echoes(t *testing.T) error {
	t.Helper()
	msg := []byte("GET /api HTTP/1.1\r\n\r\n")
	if _, err := kc.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	done := make(chan error, 1)
	go func() { _, err := io.ReadFull(kc, got); done <- err }()
	select {
	case err := <-done:
		if err == nil && !bytes.Equal(got, msg) {
			err = errors.New("echo returned other bytes")
		}
		return err
	case <-time.After(5 * time.Second):
		return errors.New("no echo within 5s")
	}
}

// TestKubeForwarderRefusals: only a host certificate from kube.forwarder_ca
// naming kube-forwarder/CLUSTER serves CLUSTER, and a forwarder's
// connection cannot use the bastion for anything else. Every refusal is
// audited.
func TestKubeForwarderRefusals(t *testing.T) {
	k := startKubeFixture(t)
	otherCA := newSigner(t)

	authRefused := []struct {
		name, keyID string
		key         func(t *testing.T, keyID string) ssh.Signer
		reason      string // prefix of the auth.failed reason
	}{
		{"wrong CA", "fwd-wrong-ca", func(t *testing.T, id string) ssh.Signer {
			return forwarderKey(t, otherCA, id, kubeproto.ForwarderPrincipal("c1"))
		}, ErrHostCert.Error() + ": not signed by kube.forwarder_ca"},
		{"host certificate from the user CA", "fwd-user-ca", func(t *testing.T, id string) ssh.Signer {
			return forwarderKey(t, k.userCA, id, kubeproto.ForwarderPrincipal("c1"))
		}, ErrHostCert.Error() + ": not signed by kube.forwarder_ca"},
		{"no forwarder principal", "fwd-no-principal", func(t *testing.T, id string) ssh.Signer {
			return forwarderKey(t, k.fwdCA, id, "node1.example.com", "kube-forwarder", "kube-forwarder/")
		}, ErrNotForwarder.Error()},
		{"expired", "fwd-expired", func(t *testing.T, id string) ssh.Signer {
			s, _ := mint(t, k.fwdCA, certOpts{typ: ssh.HostCert, keyID: id, principals: []string{kubeproto.ForwarderPrincipal("c1")},
				after: time.Now().Add(-2 * time.Hour), before: time.Now().Add(-time.Hour)})
			return s
		}, ErrExpired.Error()},
	}
	for _, tc := range authRefused {
		t.Run(tc.name, func(t *testing.T) {
			c, err := k.dialForwarder(t, tc.key(t, tc.keyID))
			if err == nil {
				c.Close()
				t.Fatal("the forwarder authenticated")
			}
			k.audit.wait(t, audit.AuthFailed, func(e audit.Event) bool {
				return e.Person == tc.keyID && strings.HasPrefix(e.Reason, tc.reason)
			})
		})
	}

	t.Run("person registering as a forwarder", func(t *testing.T) {
		s, _ := mint(t, k.userCA, certOpts{keyID: "mallory@example.com", roles: "kube-dev", principals: []string{kubeproto.ForwarderPrincipal("c1")}})
		c, err := k.dial(t, ssh.PublicKeys(s))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if ok, msg := register(t, c, "c1"); ok {
			t.Fatal("a user certificate registered as a forwarder")
		} else if !strings.Contains(msg, "only a forwarder's host certificate may register") {
			t.Errorf("refusal %q", msg)
		}
		k.audit.wait(t, audit.AccessDenied, func(e audit.Event) bool {
			return e.Person == "mallory@example.com" && e.Method == kubeproto.RegisterRequest && e.Target == "kube/c1"
		})
	})

	// A forwarder for c1: it cannot register for c2, nor be handed c2's
	// channels, nor open channels of its own.
	fw := k.startForwarder(t, forwarderKey(t, k.fwdCA, "fwd-c1", kubeproto.ForwarderPrincipal("c1")), "c1")

	t.Run("cluster not in the certificate", func(t *testing.T) {
		if ok, msg := register(t, fw.c, "c2"); ok {
			t.Fatal("a forwarder for c1 registered for c2")
		} else if !strings.Contains(msg, "certificate does not name kube-forwarder/c2") {
			t.Errorf("refusal %q", msg)
		}
		k.audit.wait(t, audit.AccessDenied, func(e audit.Event) bool {
			return e.Person == "fwd-c1" && e.Method == kubeproto.RegisterRequest && e.Target == "kube/c2"
		})
		alice, _ := mint(t, k.userCA, certOpts{keyID: "alice@example.com", roles: "kube-dev"})
		c, err := k.dial(t, ssh.PublicKeys(alice))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if kc, msg := openKube(t, c, "kube/c2"); kc != nil {
			kc.Close()
			t.Fatal("kube/c2 carried to the forwarder of c1")
		} else if !strings.Contains(msg, "cluster c2 is not reachable through this bastion") {
			t.Errorf("stderr %q", msg)
		}
		select {
		case id := <-fw.got:
			t.Fatalf("the forwarder of c1 got a channel for %s", id.Cluster)
		default:
		}
		k.audit.wait(t, audit.ConnectFailed, func(e audit.Event) bool {
			return e.Person == "alice@example.com" && e.Target == "kube/c2" && e.Reason == ErrKubeNoForwarder.Error()
		})
	})

	t.Run("session channel", func(t *testing.T) {
		if _, _, err := fw.c.OpenChannel("session", nil); err == nil {
			t.Fatal("a forwarder opened a session")
		}
		k.audit.wait(t, audit.AccessDenied, func(e audit.Event) bool {
			return e.Person == "fwd-c1" && e.Method == "session" && e.Reason == ErrForwarderChannel.Error()
		})
	})

	t.Run("jump through the bastion", func(t *testing.T) {
		if c, err := fw.c.Dial("tcp", k.echo); err == nil {
			c.Close()
			t.Fatal("a forwarder used the bastion as a jump host")
		}
		k.audit.wait(t, audit.AccessDenied, func(e audit.Event) bool {
			return e.Person == "fwd-c1" && e.Method == "direct-tcpip" && e.Target == k.echo && e.Reason == ErrForwarderChannel.Error()
		})
	})

	t.Run("remote forwarding", func(t *testing.T) {
		if ln, err := fw.c.Listen("tcp", "127.0.0.1:0"); err == nil {
			ln.Close()
			t.Fatal("a forwarder got a remote forward")
		}
		k.audit.wait(t, audit.AccessDenied, func(e audit.Event) bool {
			return e.Person == "fwd-c1" && e.Method == "tcpip-forward"
		})
	})

	// The forwarder still serves c1 after all this.
	alice, _ := mint(t, k.userCA, certOpts{keyID: "alice@example.com", roles: "kube-dev"})
	c, err := k.dial(t, ssh.PublicKeys(alice))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	kc, msg := openKube(t, c, "kube/c1")
	if kc == nil {
		t.Fatalf("kube/c1 refused: %s", msg)
	}
	defer kc.Close()
	if err := kc.echoes(t); err != nil {
		t.Fatal(err)
	}
}

// TestKubeSubsystem: the kube/CLUSTER subsystem reaches the cluster's
// forwarder with the person's identity when a role lists the cluster, and
// is refused (and audited) otherwise.
func TestKubeSubsystem(t *testing.T) {
	k := startKubeFixture(t)
	fw := k.startForwarder(t, forwarderKey(t, k.fwdCA, "fwd-c1", kubeproto.ForwarderPrincipal("c1")), "c1")
	dial := func(t *testing.T, keyID, roles string) *ssh.Client {
		t.Helper()
		s, _ := mint(t, k.userCA, certOpts{keyID: keyID, roles: roles})
		c, err := k.dial(t, ssh.PublicKeys(s))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("allowed", func(t *testing.T) {
		kc, msg := openKube(t, dial(t, "alice@example.com", "kube-dev"), "kube/c1")
		if kc == nil {
			t.Fatalf("refused: %s", msg)
		}
		if err := kc.echoes(t); err != nil {
			t.Fatal(err)
		}
		id := <-fw.got
		if id.Person != "alice@example.com" || id.Cluster != "c1" || strings.Join(id.Users, ",") != "alice@example.com" ||
			strings.Join(id.Groups, ",") != "team-a-devs" || strings.Join(id.Roles, ",") != "kube-dev" || id.SessionID == "" {
			t.Errorf("identity %+v", id)
		}
		kc.Close()
		end := k.audit.wait(t, audit.SessionEnd, func(e audit.Event) bool { return e.SessionID == id.SessionID })
		if end.Method != "kube" || end.Target != "kube/c1" || end.Cluster != "c1" || end.Person != "alice@example.com" || end.BytesIn == 0 {
			t.Errorf("session.end %+v", end)
		}
	})

	refusals := []struct {
		name, keyID, roles, sub, stderr string
		event, reason                   string
	}{
		{"roles do not list the cluster", "bob@example.com", "ops", "kube/c1",
			"access to cluster c1 denied: not allowed by your roles", audit.AccessDenied, ErrKubeNotAllowed.Error()},
		{"no roles", "carol@example.com", "", "kube/c1",
			"access to cluster c1 denied: not allowed by your roles", audit.AccessDenied, ErrKubeNotAllowed.Error()},
		{"invalid cluster name", "alice@example.com", "kube-dev", "kube/C1;rm",
			"invalid cluster name", audit.AccessDenied, kubeproto.ErrBadCluster.Error()},
		{"no forwarder connected", "alice@example.com", "kube-dev", "kube/c2",
			"cluster c2 is not reachable", audit.ConnectFailed, ErrKubeNoForwarder.Error()},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			kc, msg := openKube(t, dial(t, tc.keyID, tc.roles), tc.sub)
			if kc != nil {
				kc.Close()
				t.Fatal("the subsystem was allowed")
			}
			if !strings.Contains(msg, tc.stderr) {
				t.Errorf("stderr %q, want %q", msg, tc.stderr)
			}
			k.audit.wait(t, tc.event, func(e audit.Event) bool {
				return e.Person == tc.keyID && e.Method == "kube" && e.Reason == tc.reason && strings.HasPrefix(e.Target, "kube/")
			})
		})
	}
	select {
	case id := <-fw.got:
		t.Errorf("the forwarder got a channel for a refused request: %+v", id)
	default:
	}
}

// kubeClient is a person's connection as kube-exec makes it: it answers
// kubeproto.RevokedRequest and reports the message.
type kubeClient struct {
	*ssh.Client
	told chan string
}

func (k *kubeFixture) dialKubeClient(t *testing.T, key ssh.Signer) *kubeClient {
	t.Helper()
	raw, err := net.DialTimeout("tcp", k.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn, chans, reqs, err := ssh.NewClientConn(raw, k.addr, &ssh.ClientConfig{
		User: "kube", Auth: []ssh.AuthMethod{ssh.PublicKeys(key)}, HostKeyCallback: ssh.InsecureIgnoreHostKey(),
	})
	if err != nil {
		t.Fatal(err)
	}
	kc := &kubeClient{told: make(chan string, 1)}
	global := make(chan *ssh.Request)
	close(global)
	kc.Client = ssh.NewClient(conn, chans, global)
	t.Cleanup(func() { kc.Close() })
	go func() {
		for r := range reqs {
			ok := r.Type == kubeproto.RevokedRequest
			if ok {
				var m kubeproto.Revoked
				if err := ssh.Unmarshal(r.Payload, &m); err == nil {
					kc.told <- m.Message
				}
			}
			if r.WantReply {
				r.Reply(ok, nil)
			}
		}
	}()
	return kc
}

// TestRevocationEndsKubeChannels: alice has a kube channel carrying
// traffic and an idle kube-exec connection, bob a kube channel. Revoking
// alice ends both of her connections within the promise: kube-exec is
// told on each connection, her open channel gets the message on stderr
// and exit status 255, the forwarder's side ends, and session.end names
// the revocation. Bob's channel goes on.
func TestRevocationEndsKubeChannels(t *testing.T) {
	k := startKubeFixture(t)
	fw := k.startForwarder(t, forwarderKey(t, k.fwdCA, "fwd-c1", kubeproto.ForwarderPrincipal("c1")), "c1")
	alice, _ := mint(t, k.userCA, certOpts{keyID: "alice@example.com", roles: "kube-dev"})
	bob, _ := mint(t, k.userCA, certOpts{keyID: "bob@example.com", roles: "kube-dev"})

	busy := k.dialKubeClient(t, alice)
	aliceCh, msg := openKube(t, busy.Client, "kube/c1")
	if aliceCh == nil {
		t.Fatalf("alice refused: %s", msg)
	}
	if err := aliceCh.echoes(t); err != nil {
		t.Fatal(err)
	}
	aliceSID := (<-fw.got).SessionID
	// kube-exec between two kubectl requests: a connection that carried a
	// channel, none open now.
	idle := k.dialKubeClient(t, alice)
	ch, msg := openKube(t, idle.Client, "kube/c1")
	if ch == nil {
		t.Fatalf("alice refused: %s", msg)
	}
	idleSID := (<-fw.got).SessionID
	ch.Close()
	k.audit.wait(t, audit.SessionEnd, func(e audit.Event) bool { return e.SessionID == idleSID })

	bobConn := k.dialKubeClient(t, bob)
	bobCh, msg := openKube(t, bobConn.Client, "kube/c1")
	if bobCh == nil {
		t.Fatalf("bob refused: %s", msg)
	}
	<-fw.got
	if err := bobCh.echoes(t); err != nil {
		t.Fatal(err)
	}

	revoked := time.Now()
	k.krl.set(t, 2, func(l *krl.KRL) { l.RevokeKeyID(k.userCA.PublicKey(), "alice@example.com") })
	deadline := time.After(5 * time.Second)
	for _, c := range []*kubeClient{busy, idle} {
		select {
		case m := <-c.told:
			if m != revocation.Message {
				t.Errorf("kube-exec told %q, want %q", m, revocation.Message)
			}
		case <-deadline:
			t.Fatal("a connection of alice was not told of the revocation within 5s")
		}
		ended := make(chan struct{})
		go func() { c.Wait(); close(ended) }()
		select {
		case <-ended:
		case <-deadline:
			t.Fatal("a connection of alice still open 5s after the revocation")
		}
	}
	t.Logf("alice's kube connections ended %s after the revocation was published (poll 100ms)", time.Since(revoked).Round(time.Millisecond))
	// Both came before the connection's end; the test's readers may lag.
	select {
	case code := <-aliceCh.exit:
		if code != 255 {
			t.Errorf("exit status %d, want 255", code)
		}
	case <-time.After(2 * time.Second):
		t.Error("no exit status on alice's kube channel")
	}
	for wait := time.Now().Add(2 * time.Second); !strings.Contains(aliceCh.stderr.String(), revocation.Message); {
		if time.Now().After(wait) {
			t.Fatalf("stderr of alice's kube channel %q, want %q", aliceCh.stderr.String(), revocation.Message)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := aliceCh.Read(make([]byte, 1)); err == nil {
		t.Error("alice's kube channel still reads")
	}
	for got := map[string]bool{}; !got[aliceSID]; {
		select {
		case sid := <-fw.ended:
			got[sid] = true
		case <-time.After(5 * time.Second):
			t.Fatal("the forwarder's side of alice's channel still open")
		}
	}
	end := k.audit.wait(t, audit.SessionEnd, func(e audit.Event) bool { return e.SessionID == aliceSID })
	if end.Reason != revocation.Reason || !strings.Contains(end.Error, `key ID "alice@example.com"`) || end.Method != "kube" {
		t.Errorf("alice's kube session.end = %+v; want reason %q naming the key ID", end, revocation.Reason)
	}

	if err := bobCh.echoes(t); err != nil {
		t.Fatalf("bob's kube channel broke: %v", err)
	}
	select {
	case m := <-bobConn.told:
		t.Fatalf("bob told %q", m)
	default:
	}
	if c, err := k.dial(t, ssh.PublicKeys(alice)); err == nil {
		c.Close()
		t.Fatal("alice reconnected after the revocation")
	}
}
