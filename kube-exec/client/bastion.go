package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/postern-dev/postern/internal/kubeproto"
	"github.com/postern-dev/postern/internal/sshcert"
	"github.com/postern-dev/postern/internal/version"
)

// Errors the person can act on, for errors.Is.
var (
	// ErrNotLoggedIn: no postern certificate in ssh-agent.
	ErrNotLoggedIn = errors.New("not logged in: no postern certificate in ssh-agent")
	// ErrHostKey: the bastion's host key is not certified by known_hosts.
	ErrHostKey = errors.New("unknown bastion host key")
	// ErrExpired: the only postern certificates in ssh-agent are expired.
	ErrExpired = errors.New("your postern certificate has expired")
	// ErrRefused: the bastion refused the cluster (its message follows).
	ErrRefused = errors.New("refused by the bastion")
	// ErrRevoked: the bastion said the person's access was revoked
	// (kubeproto.RevokedRequest); nothing is retried after it.
	ErrRevoked = errors.New("your access was revoked")
)

// Bastion is one SSH connection to the bastion, re-established when it
// is lost.
type Bastion struct {
	// Addr is the bastion's host:port.
	Addr string
	// KnownHosts is the known_hosts file that certifies the bastion.
	KnownHosts string
	// Agent holds the postern certificate.
	Agent agent.ExtendedAgent
	// AgentConn, when set, is closed with the bastion connection.
	AgentConn io.Closer
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// OnRevoked, when set, is called once when the bastion says the
	// person's access was revoked, before the bastion closes the
	// connection; it must return promptly. Every Dial fails with
	// ErrRevoked from then on: there is no reconnecting.
	OnRevoked func()

	mu      sync.Mutex
	client  *ssh.Client
	expiry  *time.Timer  // ends client when its certificate expires
	listed  []ssh.Signer // from UseSigners, for the first connection
	revoked atomic.Bool
	// subsystemOnly is set once the bastion turned down a kube channel
	// as unknown (a bastion that predates it).
	subsystemOnly atomic.Bool
}

// Signers returns the agent's postern certificates that are valid now,
// newest expiry first.
func Signers(a agent.ExtendedAgent, now time.Time) ([]ssh.Signer, error) {
	all, err := a.Signers()
	if err != nil {
		return nil, fmt.Errorf("list ssh-agent keys: %w", err)
	}
	type certSigner struct {
		s    ssh.Signer
		cert *ssh.Certificate
	}
	var valid []certSigner
	expired := false
	for _, s := range all {
		cert := certOf(s)
		if cert == nil || cert.CertType != ssh.UserCert {
			continue
		}
		if _, ok := cert.Extensions[sshcert.ExtRoles]; !ok {
			continue
		}
		if cert.ValidBefore != ssh.CertTimeInfinity && now.Unix() >= int64(cert.ValidBefore) {
			expired = true
			continue
		}
		valid = append(valid, certSigner{s, cert})
	}
	if len(valid) == 0 {
		if expired {
			return nil, ErrExpired
		}
		return nil, ErrNotLoggedIn
	}
	slices.SortStableFunc(valid, func(a, b certSigner) int { return cmp.Compare(b.cert.ValidBefore, a.cert.ValidBefore) })
	out := make([]ssh.Signer, len(valid))
	for i, v := range valid {
		out[i] = v.s
	}
	return out, nil
}

// UseSigners hands the bastion the agent's certificates the caller has
// just listed (Signers), so that the first connection does not ask the
// agent again; later ones do, for certificates renewed meanwhile.
func (b *Bastion) UseSigners(s []ssh.Signer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.listed = s
}

// KeyID returns the key ID (the person) of a signer from Signers.
func KeyID(s ssh.Signer) string {
	if cert := certOf(s); cert != nil {
		return cert.KeyId
	}
	return ""
}

// certOf returns the certificate of an agent signer, nil for a plain key.
// The agent's signers present its key blobs, which are parsed here.
func certOf(s ssh.Signer) *ssh.Certificate {
	if pub, err := ssh.ParsePublicKey(s.PublicKey().Marshal()); err == nil {
		if cert, ok := pub.(*ssh.Certificate); ok {
			return cert
		}
	}
	return nil
}

// endAtExpiry arms the end of connection c when the certificate it logged
// in with (the agent's newest, which is offered first) expires: its
// channels end, and the next Dial connects again with the certificate the
// agent holds then, or fails with ErrExpired. A kube-exec proxy thus
// carries a renewed login (and its roles) from the old certificate's
// expiry on, and stops carrying requests when nobody logged in again. Call
// with b.mu held.
func (b *Bastion) endAtExpiry(c *ssh.Client, s ssh.Signer, now time.Time) {
	if b.expiry != nil {
		b.expiry.Stop()
		b.expiry = nil
	}
	cert := certOf(s)
	if cert == nil || cert.ValidBefore == ssh.CertTimeInfinity || cert.ValidBefore > 1<<62 {
		return
	}
	b.expiry = time.AfterFunc(time.Unix(int64(cert.ValidBefore), 0).Sub(now), func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.client == c {
			c.Close()
			b.client = nil
		}
	})
}

// Connect makes sure the connection is up.
func (b *Bastion) Connect(ctx context.Context) error {
	_, err := b.conn(ctx, nil)
	return err
}

func (b *Bastion) conn(ctx context.Context, broken *ssh.Client) (*ssh.Client, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.Revoked(); err != nil {
		return nil, err
	}
	if b.client != nil && b.client != broken {
		return b.client, nil
	}
	if b.client != nil {
		b.client.Close()
		b.client = nil
	}
	now := time.Now
	if b.Now != nil {
		now = b.Now
	}
	signers := b.listed
	b.listed = nil
	if signers == nil {
		var err error
		if signers, err = Signers(b.Agent, now()); err != nil {
			return nil, err
		}
	}
	hk, err := hostKeyCallback(b.KnownHosts)
	if err != nil {
		return nil, err
	}
	// The bastion says why it refuses a certificate (revoked, …) in
	// its authentication banner.
	var banner strings.Builder
	cfg := &ssh.ClientConfig{
		User:              "kube",
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signers...)},
		HostKeyCallback:   hk,
		HostKeyAlgorithms: hostKeyAlgorithms(),
		Timeout:           15 * time.Second,
		ClientVersion:     "SSH-2.0-postern-kube-exec-" + version.Version,
		BannerCallback: func(msg string) error {
			if banner.Len() < 4096 {
				banner.WriteString(msg)
			}
			return nil
		},
	}
	d := net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", b.Addr)
	if err != nil {
		return nil, fmt.Errorf("connect to the bastion %s: %w", b.Addr, err)
	}
	_ = raw.SetDeadline(time.Now().Add(cfg.Timeout))
	// The handshake ends early when ctx does (kube-exec's command exited
	// before the connection was needed).
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	c, chans, reqs, err := ssh.NewClientConn(raw, b.Addr, cfg)
	if !stop() && err == nil {
		c.Close()
		err = ctx.Err()
	}
	if err != nil {
		raw.Close()
		if strings.Contains(err.Error(), "unable to authenticate") {
			if why := bannerText(banner.String()); why != "" {
				return nil, fmt.Errorf("the bastion %s refused your certificate: %s", b.Addr, why)
			}
			return nil, fmt.Errorf("the bastion %s refused your certificate (expired, revoked or from another CA?): %w", b.Addr, err)
		}
		if msg := err.Error(); strings.Contains(msg, "no authorities for hostname") || strings.Contains(msg, "knownhosts: key is unknown") {
			return nil, fmt.Errorf("%w: the bastion %s presented a host key that %s does not certify (run postern config to write it)", ErrHostKey, b.Addr, b.KnownHosts)
		}
		return nil, fmt.Errorf("ssh to the bastion %s: %w", b.Addr, err)
	}
	_ = raw.SetDeadline(time.Time{})
	global := make(chan *ssh.Request)
	go b.globalRequests(reqs, global)
	b.client = ssh.NewClient(c, chans, global)
	b.endAtExpiry(b.client, signers[0], now())
	return b.client, nil
}

// globalRequests takes kubeproto.RevokedRequest out of the bastion's
// global requests and passes the others on.
func (b *Bastion) globalRequests(in <-chan *ssh.Request, out chan<- *ssh.Request) {
	defer close(out)
	for r := range in {
		if r.Type != kubeproto.RevokedRequest {
			out <- r
			continue
		}
		// Taken note of before replying: the bastion waits for the reply
		// (a second at most) before it closes the connection.
		if b.revoked.CompareAndSwap(false, true) && b.OnRevoked != nil {
			b.OnRevoked()
		}
		if r.WantReply {
			_ = r.Reply(true, nil)
		}
	}
}

// Revoked returns an error wrapping ErrRevoked once the bastion said the
// person's access was revoked, nil before.
func (b *Bastion) Revoked() error {
	if !b.revoked.Load() {
		return nil
	}
	return fmt.Errorf("%w (the bastion %s ended the connection)", ErrRevoked, b.Addr)
}

// bannerText is the bastion's authentication banner as one line for an
// error message, without its "postern: " prefix.
func bannerText(b string) string {
	b = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' ' // terminal escapes from a banner stay out of the message
		}
		return r
	}, b)
	b = strings.Join(strings.Fields(b), " ")
	if r := []rune(b); len(r) > 300 {
		b = string(r[:300]) + "…"
	}
	return strings.TrimPrefix(b, "postern: ")
}

// hostKeyAlgorithms prefers certificates, so that known_hosts
// @cert-authority lines are used.
func hostKeyAlgorithms() []string {
	return []string{
		ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
		ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
		ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
	}
}

// Close closes the connection (and AgentConn).
func (b *Bastion) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.AgentConn != nil {
		b.AgentConn.Close()
		b.AgentConn = nil
	}
	if b.expiry != nil {
		b.expiry.Stop()
		b.expiry = nil
	}
	if b.client == nil {
		return nil
	}
	err := b.client.Close()
	b.client = nil
	return err
}

// Dial opens a stream to the cluster's API server through its forwarder:
// a kube channel, or on bastions that predate it a session channel asking
// for the kube/CLUSTER subsystem. A lost connection is re-established
// once.
func (b *Bastion) Dial(ctx context.Context, cluster string) (net.Conn, error) {
	var broken *ssh.Client
	for attempt := 0; ; attempt++ {
		c, err := b.conn(ctx, broken)
		if err != nil {
			return nil, err
		}
		var ch ssh.Channel
		if !b.subsystemOnly.Load() {
			ch, err = openKubeChannel(c, cluster)
			if errors.Is(err, errNoKubeChannels) {
				b.subsystemOnly.Store(true)
			}
		}
		if b.subsystemOnly.Load() {
			ch, err = openKubeSubsystem(c, cluster)
		}
		if err != nil {
			var oe *ssh.OpenChannelError
			if attempt == 0 && !errors.Is(err, ErrRefused) && !errors.As(err, &oe) {
				broken = c // the connection is gone: redial
				continue
			}
			return nil, err
		}
		return &chanConn{Channel: ch, remote: b.Addr}, nil
	}
}

// errNoKubeChannels: the bastion predates kube channels.
var errNoKubeChannels = errors.New("the bastion does not know kube channels")

// openKubeChannel opens a kube channel naming the cluster: one round
// trip, answered once the bastion has a channel to a forwarder.
func openKubeChannel(c *ssh.Client, cluster string) (ssh.Channel, error) {
	ch, reqs, err := c.OpenChannel(kubeproto.ClientChannelType, ssh.Marshal(kubeproto.ClientOpen{Cluster: cluster}))
	if err != nil {
		var oe *ssh.OpenChannelError
		switch {
		case !errors.As(err, &oe):
			return nil, fmt.Errorf("open a channel to the bastion: %w", err)
		// A bastion that predates kube channels turns them down as
		// unknown, or (postern's) as "postern: TYPE channels are not
		// allowed"; a refusal of the kube channel itself never names
		// the channel type.
		case oe.Reason == ssh.UnknownChannelType, strings.Contains(oe.Message, kubeproto.ClientChannelType):
			return nil, errNoKubeChannels
		}
		return nil, fmt.Errorf("%w: %s", ErrRefused, strings.TrimPrefix(strings.TrimSpace(oe.Message), "postern: "))
	}
	go ssh.DiscardRequests(reqs)
	return ch, nil
}

// openKubeSubsystem opens a session channel and asks for the subsystem
// kube/CLUSTER: two round trips.
func openKubeSubsystem(c *ssh.Client, cluster string) (ssh.Channel, error) {
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		return nil, fmt.Errorf("open a channel to the bastion: %w", err)
	}
	go ssh.DiscardRequests(reqs)
	ok, err := ch.SendRequest("subsystem", true, ssh.Marshal(struct{ Name string }{kubeproto.Subsystem(cluster)}))
	if err != nil {
		ch.Close()
		return nil, fmt.Errorf("ask the bastion for cluster %s: %w", cluster, err)
	}
	if !ok {
		msg := readRefusal(ch)
		ch.Close()
		return nil, fmt.Errorf("%w: %s", ErrRefused, msg)
	}
	return ch, nil
}

// readRefusal reads what the bastion wrote on stderr before refusing.
func readRefusal(ch ssh.Channel) string {
	done := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(ch.Stderr(), 4096))
		done <- b
	}()
	select {
	case b := <-done:
		if m := strings.TrimSpace(string(b)); m != "" {
			return strings.TrimPrefix(m, "postern: ")
		}
	case <-time.After(2 * time.Second):
	}
	return "the bastion refused the kube subsystem"
}

// chanConn is an SSH channel as a net.Conn; deadlines are no-ops.
type chanConn struct {
	ssh.Channel
	remote string
}

type addr string

func (a addr) Network() string { return "ssh" }
func (a addr) String() string  { return string(a) }

func (c *chanConn) LocalAddr() net.Addr              { return addr("kube-exec") }
func (c *chanConn) RemoteAddr() net.Addr             { return addr(c.remote) }
func (c *chanConn) SetDeadline(time.Time) error      { return nil }
func (c *chanConn) SetReadDeadline(time.Time) error  { return nil }
func (c *chanConn) SetWriteDeadline(time.Time) error { return nil }
