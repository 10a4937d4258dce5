package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/sshcert"
)

// memAudit collects events.
type memAudit struct {
	mu sync.Mutex
	ev []audit.Event
}

func (m *memAudit) Emit(_ context.Context, e audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ev = append(m.ev, e)
	return nil
}

// wait returns the first event named name matching pred, waiting a while
// because some are written when the connection closes.
func (m *memAudit) wait(t *testing.T, name string, pred func(audit.Event) bool) audit.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m.mu.Lock()
		for _, e := range m.ev {
			if e.Event == name && (pred == nil || pred(e)) {
				m.mu.Unlock()
				return e
			}
		}
		all := fmt.Sprintf("%+v", m.ev)
		m.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %s event matching; events: %s", name, all)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newSigner(t testing.TB) ssh.Signer {
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

type certOpts struct {
	typ        uint32
	keyID      string
	roles      string
	after      time.Time
	before     time.Time
	crit       map[string]string
	principals []string
}

// mint signs a certificate for a fresh key and returns a signer using it.
func mint(t testing.TB, ca ssh.Signer, o certOpts) (ssh.Signer, *ssh.Certificate) {
	t.Helper()
	key := newSigner(t)
	if o.typ == 0 {
		o.typ = ssh.UserCert
	}
	if o.after.IsZero() {
		o.after = time.Now().Add(-time.Minute)
	}
	if o.before.IsZero() {
		o.before = time.Now().Add(time.Hour)
	}
	if o.principals == nil {
		o.principals = []string{"ubuntu"}
	}
	c := &ssh.Certificate{
		Key: key.PublicKey(), CertType: o.typ, KeyId: o.keyID, Serial: 42,
		ValidPrincipals: o.principals,
		ValidAfter:      uint64(o.after.Unix()), ValidBefore: uint64(o.before.Unix()),
		Permissions: ssh.Permissions{CriticalOptions: o.crit,
			Extensions: map[string]string{sshcert.ExtRoles: o.roles, "permit-pty": ""}},
	}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	cs, err := ssh.NewCertSigner(c, key)
	if err != nil {
		t.Fatal(err)
	}
	return cs, c
}

type fixture struct {
	addr   string
	userCA ssh.Signer
	audit  *memAudit
	srv    *Server
	cancel context.CancelFunc
	done   chan error
	echo   string // host:port of a TCP echo server on loopback
}

func startFixture(t *testing.T, extra string) *fixture {
	t.Helper()
	f := &fixture{userCA: newSigner(t), audit: &memAudit{}}
	f.echo = loopbackSink(t, func(c net.Conn) { io.Copy(c, c) })
	_, port, _ := net.SplitHostPort(f.echo)
	startServer(t, f, `
shutdown_grace = "1s"
clock_skew = "30s"
[[bastion.node]]
name = "echo"
addr = "127.0.0.1"
[[role]]
name = "ops"
groups = ["ops"]
nodes = ["127.0.0.1:`+port+`", "*.example.com"]
recording = "off"
[[role]]
name = "none"
groups = ["none"]
nodes = []
recording = "off"
`+extra, Options{Resolver: staticDNS{"loop.example.com": netip.MustParseAddr("127.0.0.1")}})
	return f
}

// loopbackSink starts a TCP server on loopback that runs handle on each
// connection (then closes it) and returns its address.
func loopbackSink(tb testing.TB, handle func(net.Conn)) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { handle(c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// startServer writes the user CA of f, parses a config whose [bastion]
// section continues with body (keys, then any tables), and serves a
// bastion on loopback until the test ends. opts gets the fixture's audit,
// a quiet logger and 127.0.0.1 as the bastion's own address.
func startServer(tb testing.TB, f *fixture, body string, opts Options) {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "user_ca.pub"), ssh.MarshalAuthorizedKey(f.userCA.PublicKey()), 0o644); err != nil {
		tb.Fatal(err)
	}
	text := fmt.Sprintf("[storage]\nlocal_dir = %q\n[bastion]\ndata_dir = %q\nid = \"test-bastion\"\n%s", filepath.Join(dir, "recordings"), dir, body)
	cfg, err := config.Parse(filepath.Join(dir, "postern.toml"), []byte(text))
	if err != nil {
		tb.Fatal(err)
	}
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.Audit = f.audit
	opts.LocalAddrs = func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil }
	f.srv, err = New(cfg, opts)
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	f.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() { f.done <- f.srv.Serve(ctx, ln) }()
	tb.Cleanup(func() { cancel(); <-f.done })
}

// staticDNS resolves names from a map.
type staticDNS map[string]netip.Addr

func (d staticDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := d[host]; ok {
		return []netip.Addr{a}, nil
	}
	return nil, fmt.Errorf("lookup %s: no such host", host)
}

func (f *fixture) dial(t *testing.T, methods ...ssh.AuthMethod) (*ssh.Client, error) {
	t.Helper()
	return ssh.Dial("tcp", f.addr, &ssh.ClientConfig{
		User:            "someone",
		Auth:            methods,
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         5 * time.Second,
	})
}

func run(t *testing.T, c *ssh.Client, cmd string) (string, string, int) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var o, e bytes.Buffer
	s.Stdout, s.Stderr = &o, &e
	err = s.Run(cmd)
	code := 0
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitStatus()
	} else if err != nil {
		t.Fatalf("run %q: %v", cmd, err)
	}
	return o.String(), e.String(), code
}

func TestAuthentication(t *testing.T) {
	f := startFixture(t, "")
	otherCA := newSigner(t)
	now := time.Now()
	tests := []struct {
		name   string
		auth   func(t *testing.T) []ssh.AuthMethod
		ok     bool
		person string // expected in whoami or in the auth.failed event
		reason string // in the auth.failed event
	}{
		{name: "valid", ok: true, person: "alice@example.com", auth: func(t *testing.T) []ssh.AuthMethod {
			s, _ := mint(t, f.userCA, certOpts{keyID: "alice@example.com", roles: "ops"})
			return []ssh.AuthMethod{ssh.PublicKeys(s)}
		}},
		{name: "not yet valid within skew", ok: true, person: "skew1@example.com", auth: func(t *testing.T) []ssh.AuthMethod {
			s, _ := mint(t, f.userCA, certOpts{keyID: "skew1@example.com", after: now.Add(10 * time.Second)})
			return []ssh.AuthMethod{ssh.PublicKeys(s)}
		}},
		{name: "expired within skew", ok: true, person: "skew2@example.com", auth: func(t *testing.T) []ssh.AuthMethod {
			s, _ := mint(t, f.userCA, certOpts{keyID: "skew2@example.com", after: now.Add(-time.Hour), before: now.Add(-10 * time.Second)})
			return []ssh.AuthMethod{ssh.PublicKeys(s)}
		}},
		{name: "expired", person: "expired@example.com", reason: "expired", auth: func(t *testing.T) []ssh.AuthMethod {
			s, _ := mint(t, f.userCA, certOpts{keyID: "expired@example.com", after: now.Add(-2 * time.Hour), before: now.Add(-time.Hour)})
			return []ssh.AuthMethod{ssh.PublicKeys(s)}
		}},
		{name: "not yet valid", person: "future@example.com", reason: "not yet valid", auth: func(t *testing.T) []ssh.AuthMethod {
			s, _ := mint(t, f.userCA, certOpts{keyID: "future@example.com", after: now.Add(time.Hour)})
			return []ssh.AuthMethod{ssh.PublicKeys(s)}
		}},
		{name: "other CA", person: "mallory@example.com", reason: "not signed by the user CA", auth: func(t *testing.T) []ssh.AuthMethod {
			s, _ := mint(t, otherCA, certOpts{keyID: "mallory@example.com"})
			return []ssh.AuthMethod{ssh.PublicKeys(s)}
		}},
		{name: "host certificate", person: "node1", reason: "host certificate", auth: func(t *testing.T) []ssh.AuthMethod {
			s, _ := mint(t, f.userCA, certOpts{keyID: "node1", typ: ssh.HostCert})
			return []ssh.AuthMethod{ssh.PublicKeys(s)}
		}},
		{name: "unknown critical option", person: "crit@example.com", reason: "unknown critical option", auth: func(t *testing.T) []ssh.AuthMethod {
			s, _ := mint(t, f.userCA, certOpts{keyID: "crit@example.com", crit: map[string]string{"verify-required": ""}})
			return []ssh.AuthMethod{ssh.PublicKeys(s)}
		}},
		{name: "force-command", person: "force@example.com", reason: "unknown critical option", auth: func(t *testing.T) []ssh.AuthMethod {
			s, _ := mint(t, f.userCA, certOpts{keyID: "force@example.com", crit: map[string]string{"force-command": "id"}})
			return []ssh.AuthMethod{ssh.PublicKeys(s)}
		}},
		{name: "source-address elsewhere", person: "pinned@example.com", reason: "source-address", auth: func(t *testing.T) []ssh.AuthMethod {
			s, _ := mint(t, f.userCA, certOpts{keyID: "pinned@example.com", crit: map[string]string{"source-address": "10.0.0.0/8"}})
			return []ssh.AuthMethod{ssh.PublicKeys(s)}
		}},
		{name: "source-address here", ok: true, person: "pinnedok@example.com", auth: func(t *testing.T) []ssh.AuthMethod {
			s, _ := mint(t, f.userCA, certOpts{keyID: "pinnedok@example.com", crit: map[string]string{"source-address": "127.0.0.0/8"}})
			return []ssh.AuthMethod{ssh.PublicKeys(s)}
		}},
		{name: "no key id", reason: "no key id", auth: func(t *testing.T) []ssh.AuthMethod {
			s, _ := mint(t, f.userCA, certOpts{keyID: ""})
			return []ssh.AuthMethod{ssh.PublicKeys(s)}
		}},
		{name: "plain key", reason: "plain public key", auth: func(t *testing.T) []ssh.AuthMethod {
			return []ssh.AuthMethod{ssh.PublicKeys(newSigner(t))}
		}},
		// Clients try only methods the server lists (publickey), so these
		// end after "none".
		{name: "password", reason: "no certificate offered", auth: func(t *testing.T) []ssh.AuthMethod {
			return []ssh.AuthMethod{ssh.Password("hunter2")}
		}},
		{name: "keyboard-interactive", reason: "no certificate offered", auth: func(t *testing.T) []ssh.AuthMethod {
			return []ssh.AuthMethod{ssh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) { return nil, nil })}
		}},
		{name: "none", reason: "no certificate offered", auth: func(t *testing.T) []ssh.AuthMethod { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := f.dial(t, tt.auth(t)...)
			if !tt.ok {
				if err == nil {
					c.Close()
					t.Fatal("authenticated, want refusal")
				}
				e := f.audit.wait(t, audit.AuthFailed, func(e audit.Event) bool {
					return strings.Contains(e.Reason, tt.reason) && (tt.person == "" || e.Person == tt.person)
				})
				if e.ClientAddr == "" || e.ConnID == "" || e.Login != "someone" {
					t.Errorf("auth.failed lacks client, conn id or login: %+v", e)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			out, _, code := run(t, c, "whoami")
			if code != 0 || !strings.Contains(out, "person:") || !strings.Contains(out, tt.person) {
				t.Errorf("whoami = %q, exit %d; want %s", out, code, tt.person)
			}
		})
	}
}

// TestVerifiedCallbackPicksSigner drives the callbacks the way x/crypto
// does for a client that offers alice, then bob, and signs only with bob.
// (x/crypto clients cannot offer a key without signing; the e2e test
// TestBastionIdentityFromSigningKey does it with OpenSSH and ssh-agent.)
func TestVerifiedCallbackPicksSigner(t *testing.T) {
	f := startFixture(t, "")
	_, alice := mint(t, f.userCA, certOpts{keyID: "alice@example.com", roles: "ops"})
	_, bob := mint(t, f.userCA, certOpts{keyID: "bob@example.com", roles: "none"})
	st := &connState{srv: f.srv, id: "c1", remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, log: f.srv.log, timer: time.NewTimer(time.Hour)}
	meta := fakeMeta{}
	pa, err := st.publicKey(meta, alice)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := st.publicKey(meta, bob)
	if err != nil {
		t.Fatal(err)
	}
	if principalOf(pa) != nil || principalOf(pb) != nil {
		t.Fatal("identity usable before verification")
	}
	if _, err := st.verified(meta, bob, pa, "ssh-ed25519"); err == nil {
		t.Fatal("alice's permissions accepted for bob's key")
	}
	got, err := st.verified(meta, bob, pb, "ssh-ed25519")
	if err != nil {
		t.Fatal(err)
	}
	if p := principalOf(got); p == nil || p.id.KeyID != "bob@example.com" {
		t.Fatalf("identity = %+v, want bob", p)
	}
	if principalOf(pa) != nil {
		t.Fatal("alice's offered key became an identity")
	}
}

type fakeMeta struct{ ssh.ConnMetadata }

func (fakeMeta) User() string          { return "someone" }
func (fakeMeta) RemoteAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (fakeMeta) LocalAddr() net.Addr   { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2} }
func (fakeMeta) SessionID() []byte     { return []byte("sid") }
func (fakeMeta) ClientVersion() []byte { return []byte("SSH-2.0-test") }
func (fakeMeta) ServerVersion() []byte { return []byte("SSH-2.0-postern") }

func TestMenu(t *testing.T) {
	f := startFixture(t, "")
	s, _ := mint(t, f.userCA, certOpts{keyID: "alice@example.com", roles: "ops,ghost"})
	c, err := f.dial(t, ssh.PublicKeys(s))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tests := []struct {
		cmd      string
		code     int
		out, err string
	}{
		{"whoami", 0, "alice@example.com", ""},
		{"nodes", 0, "127.0.0.1:", ""},
		{"help", 0, "ssh -J postern-bastion NODE", ""},
		{"", 0, "Commands", ""},
		{"whoami extra", 2, "", "takes no arguments"},
		{"bash -c id", 127, "", "unknown command bash"},
		{"\x1b[2J", 127, "", `"\x1b[2J"`},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			out, errOut, code := run(t, c, tt.cmd)
			if code != tt.code || !strings.Contains(out, tt.out) || !strings.Contains(errOut, tt.err) {
				t.Errorf("%q: exit %d, stdout %q, stderr %q", tt.cmd, code, out, errOut)
			}
		})
	}
	out, _, _ := run(t, c, "whoami")
	if !strings.Contains(out, "ghost") || !strings.Contains(out, "grant nothing") {
		t.Errorf("whoami does not flag the unknown role: %q", out)
	}
	f.audit.wait(t, audit.Command, func(e audit.Event) bool { return e.Command == "bash -c id" && *e.ExitStatus == 127 })

	// Shell with a pty: help, then exit 0.
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var o bytes.Buffer
	sess.Stdout = &o
	if err := sess.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	if err := sess.Wait(); err != nil {
		t.Errorf("shell: %v", err)
	}
	if !strings.Contains(o.String(), "no shell here.\r\n") {
		t.Errorf("shell output %q", o.String())
	}

	// Refused session requests.
	for _, req := range []string{"subsystem", "auth-agent-req@openssh.com", "x11-req"} {
		sess, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		var ok bool
		switch req {
		case "subsystem":
			ok = sess.RequestSubsystem("sftp") == nil
		default:
			ok, _ = sess.SendRequest(req, true, nil)
		}
		if ok {
			t.Errorf("%s accepted", req)
		}
		sess.Close()
		f.audit.wait(t, audit.AccessDenied, func(e audit.Event) bool { return e.Method == req })
	}
	// Remote forwarding.
	if _, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
		t.Error("remote forwarding accepted")
	}
	f.audit.wait(t, audit.AccessDenied, func(e audit.Event) bool { return e.Method == "tcpip-forward" })
	// Unix socket forwarding.
	if _, err := c.Dial("unix", "/run/docker.sock"); err == nil {
		t.Error("direct-streamlocal accepted")
	}
	f.audit.wait(t, audit.AccessDenied, func(e audit.Event) bool { return e.Method == "direct-streamlocal@openssh.com" })
}

func TestForward(t *testing.T) {
	f := startFixture(t, "")
	s, cert := mint(t, f.userCA, certOpts{keyID: "alice@example.com", roles: "ops"})
	c, err := f.dial(t, ssh.PublicKeys(s))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	conn, err := c.Dial("tcp", f.echo)
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("postern "), 64<<10) // 512 KiB
	go func() {
		conn.Write(payload)
		conn.(interface{ CloseWrite() error }).CloseWrite()
	}()
	got, err := io.ReadAll(conn)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("echo returned %d bytes, %v; want %d", len(got), err, len(payload))
	}
	conn.Close()
	start := f.audit.wait(t, audit.SessionStart, nil)
	end := f.audit.wait(t, audit.SessionEnd, nil)
	if start.SessionID == "" || start.SessionID != end.SessionID || start.Person != "alice@example.com" ||
		start.Serial != cert.Serial || start.Target != f.echo || start.Resolved != f.echo || start.Rule == "" {
		t.Errorf("session.start = %+v", start)
	}
	if end.BytesIn != int64(len(payload)) || end.BytesOut != int64(len(payload)) || end.Reason == "" {
		t.Errorf("session.end = %+v", end)
	}

	// Refused hops get a short reason and an audit event with the detail.
	for _, tc := range []struct{ target, reason string }{
		{"loop.example.com:22", "resolves to a refused address"},
		{"127.0.0.1:22", "not allowed by your roles"},
		{"169.254.169.254:80", "not allowed by your roles"},
		{"web.example.com:2222", "not allowed by your roles"},
	} {
		_, err := c.Dial("tcp", tc.target)
		if err == nil || !strings.Contains(err.Error(), "postern: access to") || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("dial %s: %v; want refusal %q", tc.target, err, tc.reason)
		}
		f.audit.wait(t, audit.AccessDenied, func(e audit.Event) bool {
			return e.Target == tc.target && e.Reason == tc.reason && e.Error != "" && e.Person == "alice@example.com"
		})
	}
}

func TestGracefulShutdown(t *testing.T) {
	f := startFixture(t, "")
	s, _ := mint(t, f.userCA, certOpts{keyID: "alice@example.com", roles: "ops"})
	c, err := f.dial(t, ssh.PublicKeys(s))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	idle, err := f.dial(t, ssh.PublicKeys(s))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	conn, err := c.Dial("tcp", f.echo)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	f.audit.wait(t, audit.SessionStart, nil)
	f.cancel() // like SIGTERM
	// New connections are refused at once.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c2, err := f.dial(t, ssh.PublicKeys(s))
		if err != nil {
			break
		}
		c2.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting after shutdown started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The idle connection is closed; the open session lasts until the grace
	// (1s) is over, then gets its end event.
	if err := idle.Wait(); err == nil {
		t.Log("idle connection closed")
	}
	select {
	case <-f.done:
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return")
	}
	f.done <- nil // for the cleanup
	end := f.audit.wait(t, audit.SessionEnd, nil)
	if end.Reason != ReasonShutdown || end.BytesIn != 2 {
		t.Errorf("session.end = %+v, want reason shutdown and 2 bytes in", end)
	}
}

func TestLoadHostKey(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "sub", "host_key")
	hk, err := LoadHostKey(key, key+"-cert.pub", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !hk.Generated || hk.Cert != nil || len(hk.Warnings) != 1 {
		t.Fatalf("first load = %+v", hk)
	}
	fi, err := os.Stat(key)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host key mode = %v, %v", fi.Mode(), err)
	}
	hostCA := newSigner(t)
	c := &ssh.Certificate{Key: hk.Signer.PublicKey(), CertType: ssh.HostCert, KeyId: "bastion",
		ValidPrincipals: []string{"bastion"}, ValidBefore: ssh.CertTimeInfinity}
	if err := c.SignCert(rand.Reader, hostCA); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(key+"-cert.pub", ssh.MarshalAuthorizedKey(c), 0o644)
	hk2, err := LoadHostKey(key, key+"-cert.pub", time.Now())
	if err != nil || hk2.Generated || hk2.Cert == nil || len(hk2.Signers()) != 2 {
		t.Fatalf("second load = %+v, %v", hk2, err)
	}
	if !bytes.Equal(hk2.Signer.PublicKey().Marshal(), hk.Signer.PublicKey().Marshal()) {
		t.Fatal("key changed on reload")
	}
	// A certificate for another key is an error.
	c.Key = newSigner(t).PublicKey()
	c.SignCert(rand.Reader, hostCA)
	os.WriteFile(key+"-cert.pub", ssh.MarshalAuthorizedKey(c), 0o644)
	if _, err := LoadHostKey(key, key+"-cert.pub", time.Now()); err == nil || !strings.Contains(err.Error(), "another key") {
		t.Fatalf("mismatched certificate: %v", err)
	}
	// A group-readable key is refused.
	os.Chmod(key, 0o640)
	if _, err := LoadHostKey(key, key+"-cert.pub", time.Now()); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable key: %v", err)
	}
}

func TestKeyExchanges(t *testing.T) {
	supported := ssh.SupportedAlgorithms().KeyExchanges
	for _, k := range KeyExchanges {
		found := false
		for _, s := range supported {
			found = found || s == k
		}
		if !found {
			t.Errorf("offered key exchange %s is not supported by x/crypto", k)
		}
	}
	if KeyExchanges[0] != ssh.KeyExchangeMLKEM768X25519 || KeyExchanges[1] != ssh.KeyExchangeCurve25519 {
		t.Errorf("preference order = %v", KeyExchanges)
	}
}
