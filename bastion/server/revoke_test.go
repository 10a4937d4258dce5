package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/bastion/revocation"
	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/krl"
)

// fakeKRL is a revocation.Source serving a KRL the test sets.
type fakeKRL struct {
	mu   sync.Mutex
	gen  uint64
	data []byte
	err  error
}

func (f *fakeKRL) String() string { return "fake KRL" }

func (f *fakeKRL) Fetch(_ context.Context, tag string) (revocation.Fetched, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return revocation.Fetched{}, f.err
	}
	cur := fmt.Sprint(f.gen)
	if tag == cur {
		return revocation.Fetched{NotModified: true, Tag: tag}, nil
	}
	return revocation.Fetched{Data: f.data, Tag: cur, Generation: f.gen}, nil
}

// set publishes generation gen of a list built by revoke.
func (f *fakeKRL) set(t *testing.T, gen uint64, revoke func(k *krl.KRL)) {
	t.Helper()
	k := &krl.KRL{Version: gen}
	if revoke != nil {
		revoke(k)
	}
	b, err := k.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.gen, f.data, f.err = gen, b, nil
	f.mu.Unlock()
}

func (f *fakeKRL) fail(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

// startRevFixture is startFixture with a fake KRL source, the given
// [bastion] keys, the role ops (to the echo server) and any more tables.
func startRevFixture(t *testing.T, src *fakeKRL, bastionKeys string, tables ...string) *fixture {
	t.Helper()
	f := &fixture{userCA: newSigner(t), audit: &memAudit{}}
	f.echo = loopbackSink(t, func(c net.Conn) { io.Copy(c, c) })
	_, port, _ := net.SplitHostPort(f.echo)
	var krlSource revocation.Source // a nil *fakeKRL must stay a nil interface
	if src != nil {
		krlSource = src
	}
	startServer(t, f, `shutdown_grace = "1s"
`+bastionKeys+`
[[role]]
name = "ops"
groups = ["ops"]
nodes = ["127.0.0.1:`+port+`"]
recording = "off"
`+strings.Join(tables, "\n"), Options{KRLSource: krlSource})
	return f
}

// echoes checks that a forwarded connection still carries bytes.
func echoes(t *testing.T, c net.Conn) error {
	t.Helper()
	msg := []byte("still here\n")
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo returned %q", got)
	}
	return nil
}

func TestRevocationRefusesAtAuth(t *testing.T) {
	src := &fakeKRL{}
	src.set(t, 1, nil)
	f := startRevFixture(t, src, `revocation_poll = "100ms"`)
	alice, aliceCert := mint(t, f.userCA, certOpts{keyID: "alice@example.com", roles: "ops"})
	carol, carolCert := mint(t, f.userCA, certOpts{keyID: "carol@example.com", roles: "ops"})
	bob, _ := mint(t, f.userCA, certOpts{keyID: "bob@example.com", roles: "ops"})
	src.set(t, 2, func(k *krl.KRL) {
		k.RevokeKeyID(f.userCA.PublicKey(), "alice@example.com")
		k.RevokeKey(carolCert.Key)
	})
	if err := f.srv.krl.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		signer ssh.Signer
		cert   *ssh.Certificate
		reason string // "" allowed
	}{
		{"key id revoked", alice, aliceCert, `revoked: key is revoked by key ID "alice@example.com" (KRL generation 2)`},
		{"key revoked", carol, carolCert, "revoked: key is revoked by public key (KRL generation 2)"},
		{"not revoked", bob, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var banner bytes.Buffer
			c, err := ssh.Dial("tcp", f.addr, &ssh.ClientConfig{
				User: "someone", Auth: []ssh.AuthMethod{ssh.PublicKeys(tc.signer)},
				HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second,
				BannerCallback: func(m string) error { banner.WriteString(m); return nil },
			})
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				c.Close()
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("a revoked certificate authenticated")
			}
			if !strings.Contains(banner.String(), revocation.Message) {
				t.Errorf("banner %q, want %q", banner.String(), revocation.Message)
			}
			f.audit.wait(t, audit.AuthFailed, func(e audit.Event) bool {
				return e.Serial == tc.cert.Serial && e.Person == tc.cert.KeyId && e.Reason == tc.reason
			})
		})
	}
}

func TestRevocationMaxStale(t *testing.T) {
	src := &fakeKRL{}
	src.set(t, 1, nil)
	f := startRevFixture(t, src, `revocation_poll = "100ms"
revocation_max_stale = "300ms"`)
	bob, bobCert := mint(t, f.userCA, certOpts{keyID: "bob@example.com", roles: "ops"})
	c, err := f.dial(t, ssh.PublicKeys(bob))
	if err != nil {
		t.Fatalf("fresh list: %v", err)
	}
	defer c.Close()
	src.fail(errors.New("signer down"))
	time.Sleep(600 * time.Millisecond)
	if c2, err := f.dial(t, ssh.PublicKeys(bob)); err == nil {
		c2.Close()
		t.Fatal("authenticated with a stale list and revocation_max_stale set")
	}
	f.audit.wait(t, audit.AuthFailed, func(e audit.Event) bool {
		return e.Serial == bobCert.Serial && strings.HasPrefix(e.Reason, "revocation list stale: last refreshed")
	})
	// Live connections are not cut for staleness alone.
	if _, _, err := c.SendRequest("keepalive@openssh.com", true, nil); err != nil {
		t.Fatalf("live connection cut by staleness: %v", err)
	}
	src.set(t, 2, nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c2, err := f.dial(t, ssh.PublicKeys(bob))
		if err == nil {
			c2.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still refused after the list is fresh again: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRevocationEndsLiveSessions: alice has a hop and an idle connection,
// bob a hop; revoking alice's key ID ends both of hers within the poll
// interval plus the sweep, with session.end naming the revocation, and
// leaves bob's alone.
func TestRevocationEndsLiveSessions(t *testing.T) {
	src := &fakeKRL{}
	src.set(t, 1, nil)
	f := startRevFixture(t, src, `revocation_poll = "200ms"`)
	alice, _ := mint(t, f.userCA, certOpts{keyID: "alice@example.com", roles: "ops"})
	bob, _ := mint(t, f.userCA, certOpts{keyID: "bob@example.com", roles: "ops"})

	ac, err := f.dial(t, ssh.PublicKeys(alice))
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	aHop, err := ac.Dial("tcp", f.echo)
	if err != nil {
		t.Fatal(err)
	}
	if err := echoes(t, aHop); err != nil {
		t.Fatal(err)
	}
	aIdle, err := f.dial(t, ssh.PublicKeys(alice))
	if err != nil {
		t.Fatal(err)
	}
	defer aIdle.Close()
	bc, err := f.dial(t, ssh.PublicKeys(bob))
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	bHop, err := bc.Dial("tcp", f.echo)
	if err != nil {
		t.Fatal(err)
	}
	if err := echoes(t, bHop); err != nil {
		t.Fatal(err)
	}
	// A session channel the bastion terminates is told before the cut.
	told := make(chan string, 4)
	f.srv.mu.Lock()
	for st := range f.srv.conns {
		if p := st.authedPrincipal(); p != nil && p.id.KeyID == "alice@example.com" {
			st.onRevoke(func(msg string) { told <- msg })
		}
	}
	f.srv.mu.Unlock()

	revoked := time.Now()
	src.set(t, 2, func(k *krl.KRL) { k.RevokeKeyID(f.userCA.PublicKey(), "alice@example.com") })
	ended := make(chan time.Duration, 2)
	for _, c := range []*ssh.Client{ac, aIdle} {
		go func() { c.Wait(); ended <- time.Since(revoked) }()
	}
	for range 2 {
		select {
		case d := <-ended:
			t.Logf("alice's connection ended %s after the revocation was published (poll 200ms)", d.Round(time.Millisecond))
		case <-time.After(5 * time.Second):
			t.Fatal("alice's connection still open 5s after the revocation")
		}
	}
	for range 2 {
		select {
		case msg := <-told:
			if msg != revocation.Message {
				t.Errorf("told %q", msg)
			}
		case <-time.After(time.Second):
			t.Fatal("session notice not called")
		}
	}
	if _, err := aHop.Read(make([]byte, 1)); err == nil {
		t.Error("alice's hop still reads")
	}
	end := f.audit.wait(t, audit.SessionEnd, func(e audit.Event) bool { return e.Person == "alice@example.com" })
	if end.Reason != revocation.Reason || !strings.Contains(end.Error, `key ID "alice@example.com"`) || end.BytesIn == 0 {
		t.Errorf("alice's session.end = %+v; want reason %q naming the key ID", end, revocation.Reason)
	}
	if err := echoes(t, bHop); err != nil {
		t.Fatalf("bob's hop broke: %v", err)
	}
	// Entries leave the registry when the server side of the connection
	// is done, a moment after the client saw it end.
	for wait := time.Now().Add(5 * time.Second); f.srv.Revocations().Len() != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(wait) {
			t.Fatalf("registry holds %d entries, want bob's 1", f.srv.Revocations().Len())
		}
	}
	if _, err := f.dial(t, ssh.PublicKeys(alice)); err == nil {
		t.Fatal("alice reconnected after the revocation")
	}
}

// TestTrackRace: a connection whose certificate is revoked between the key
// check and its registration is refused; one registered before the new
// list is swept.
func TestTrackRace(t *testing.T) {
	src := &fakeKRL{}
	src.set(t, 1, nil)
	f := startRevFixture(t, src, "")
	_, cert := mint(t, f.userCA, certOpts{keyID: "alice@example.com", roles: "ops"})
	newState := func() (*connState, net.Conn) {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return &connState{srv: f.srv, id: newID(), remote: a.RemoteAddr(), raw: a, log: f.srv.log}, b
	}
	p := &principal{cert: cert, keyFP: ssh.FingerprintSHA256(cert.Key)}

	early, peer := newState()
	if err := early.track(p); err != nil {
		t.Fatalf("not revoked yet: %v", err)
	}
	src.set(t, 2, func(k *krl.KRL) { k.RevokeKeyID(f.userCA.PublicKey(), "alice@example.com") })
	if err := f.srv.krl.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := peer.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("registered connection not closed by the sweep: %v", err)
	}
	if !errors.Is(early.revokedCause(), ErrRevoked) {
		t.Fatalf("revokedCause = %v", early.revokedCause())
	}

	late, _ := newState()
	if err := late.track(p); !errors.Is(err, ErrRevoked) || !errors.Is(err, krl.ErrRevoked) {
		t.Fatalf("track after the list: %v, want ErrRevoked", err)
	}
	if n := f.srv.Revocations().Len(); n != 1 { // early stays until its close
		t.Fatalf("registry holds %d, want 1", n)
	}
}

func TestRevocationOff(t *testing.T) {
	f := startRevFixture(t, nil, `revocation = "off"`)
	if f.srv.krl != nil {
		t.Fatal("watcher running with revocation off")
	}
	s, _ := mint(t, f.userCA, certOpts{keyID: "alice@example.com", roles: "ops"})
	c, err := f.dial(t, ssh.PublicKeys(s))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
