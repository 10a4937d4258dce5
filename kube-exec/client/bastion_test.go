package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/postern-dev/postern/internal/kubeproto"
	"github.com/postern-dev/postern/internal/sshcert"
)

// fakeBastion is an in-process SSH server standing in for the bastion's
// kube side (the real one is tested end to end in internal/e2e): it
// echoes what a kube stream sends.
type fakeBastion struct {
	addr string
	// kubeChannels: whether it knows kubeproto.ClientChannelType; refuse:
	// the message it refuses every cluster with ("" serves them).
	kubeChannels bool
	oldPostern   bool // refuses unknown channel types as postern's bastion did
	refuse       string

	mu    sync.Mutex
	opens []string // channel types opened, in order
}

func startFakeBastion(t *testing.T, kubeChannels bool, refuse string, oldPostern ...bool) (*fakeBastion, ssh.PublicKey) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	hk, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil }}
	cfg.AddHostKey(hk)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f := &fakeBastion{addr: ln.Addr().String(), kubeChannels: kubeChannels, refuse: refuse, oldPostern: len(oldPostern) > 0 && oldPostern[0]}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(nc, cfg)
		}
	}()
	return f, hk.PublicKey()
}

func (f *fakeBastion) serve(nc net.Conn, cfg *ssh.ServerConfig) {
	conn, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return
	}
	defer conn.Close()
	go ssh.DiscardRequests(reqs)
	for newCh := range chans {
		f.mu.Lock()
		f.opens = append(f.opens, newCh.ChannelType())
		f.mu.Unlock()
		switch {
		case newCh.ChannelType() == kubeproto.ClientChannelType && f.kubeChannels:
			var open kubeproto.ClientOpen
			if err := ssh.Unmarshal(newCh.ExtraData(), &open); err != nil || f.refuse != "" {
				newCh.Reject(ssh.Prohibited, "postern: "+f.refuse)
				continue
			}
			ch, creqs, err := newCh.Accept()
			if err != nil {
				continue
			}
			go ssh.DiscardRequests(creqs)
			go echo(ch)
		case newCh.ChannelType() == "session":
			ch, creqs, err := newCh.Accept()
			if err != nil {
				continue
			}
			go func() {
				for r := range creqs {
					var sub struct{ Name string }
					if r.Type != "subsystem" || ssh.Unmarshal(r.Payload, &sub) != nil || !strings.HasPrefix(sub.Name, kubeproto.SubsystemPrefix) {
						r.Reply(false, nil)
						continue
					}
					if f.refuse != "" {
						io.WriteString(ch.Stderr(), "postern: "+f.refuse+"\n")
						r.Reply(false, nil)
						ch.Close()
						return
					}
					r.Reply(true, nil)
					go echo(ch)
				}
			}()
		case newCh.ChannelType() == kubeproto.ClientChannelType && f.oldPostern:
			// postern's bastion before kube channels: every channel type
			// it does not serve is refused (and audited) this way.
			newCh.Reject(ssh.Prohibited, "postern: "+newCh.ChannelType()+" channels are not allowed")
		default:
			newCh.Reject(ssh.UnknownChannelType, "unsupported channel type")
		}
	}
}

func echo(ch ssh.Channel) {
	defer ch.Close()
	_, _ = io.Copy(ch, ch)
}

func (f *fakeBastion) opened() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.opens...)
}

// testBastionClient is a Bastion with a postern certificate in an
// in-process agent and known_hosts naming the fake's host key.
func testBastionClient(t *testing.T, f *fakeBastion, hostKey ssh.PublicKey) *Bastion {
	t.Helper()
	_, caPriv, _ := ed25519.GenerateKey(rand.Reader)
	ca, _ := ssh.NewSignerFromKey(caPriv)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	pub, _ := ssh.NewPublicKey(priv.Public())
	cert := &ssh.Certificate{
		Key: pub, CertType: ssh.UserCert, KeyId: "alice@example.com", ValidPrincipals: []string{"dev"},
		ValidAfter: uint64(time.Now().Add(-time.Minute).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix()),
		Permissions: ssh.Permissions{Extensions: map[string]string{sshcert.ExtRoles: "dev"}},
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv, Certificate: cert}); err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, []byte(knownhostsName(f.addr)+" "+string(ssh.MarshalAuthorizedKey(hostKey))), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &Bastion{Addr: f.addr, KnownHosts: kh, Agent: keyring.(agent.ExtendedAgent)}
	t.Cleanup(func() { b.Close() })
	return b
}

func roundTrip(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q %v", buf, err)
	}
}

// kube-exec opens kube channels where the bastion knows them, and falls
// back to the kube/CLUSTER subsystem for good where it does not.
func TestDialKubeChannelOrSubsystem(t *testing.T) {
	for _, tt := range []struct {
		name         string
		kubeChannels bool
		oldPostern   bool
		want         []string
	}{
		{"kube channel", true, false, []string{kubeproto.ClientChannelType, kubeproto.ClientChannelType}},
		{"older bastion", false, false, []string{kubeproto.ClientChannelType, "session", "session"}},
		{"older postern bastion", false, true, []string{kubeproto.ClientChannelType, "session", "session"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, hk := startFakeBastion(t, tt.kubeChannels, "", tt.oldPostern)
			b := testBastionClient(t, f, hk)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for range 2 {
				c, err := b.Dial(ctx, "prod")
				if err != nil {
					t.Fatal(err)
				}
				roundTrip(t, c)
				c.Close()
			}
			got := f.opened()
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("channels opened %v, want %v", got, tt.want)
			}
		})
	}
}

// A refusal carries the bastion's message on both paths.
func TestDialRefused(t *testing.T) {
	for _, kubeChannels := range []bool{true, false} {
		f, hk := startFakeBastion(t, kubeChannels, "access to cluster prod denied: not allowed by your roles")
		b := testBastionClient(t, f, hk)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := b.Dial(ctx, "prod")
		cancel()
		if !errors.Is(err, ErrRefused) || !strings.HasSuffix(err.Error(), ": access to cluster prod denied: not allowed by your roles") {
			t.Errorf("kube channels %v: %v", kubeChannels, err)
		}
	}
}

func TestBannerText(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"revoked", "postern: your access was revoked\r\n", "your access was revoked"},
		{"lines joined", "postern: the bastion cannot confirm access right now\r\n(try later)\r\n", "the bastion cannot confirm access right now (try later)"},
		{"terminal escapes", "\x1b]0;owned\x07postern: revoked\r\n", "]0;owned postern: revoked"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := bannerText(tt.in); got != tt.want {
				t.Errorf("bannerText(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
