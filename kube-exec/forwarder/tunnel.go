package forwarder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/kubeproto"
	"github.com/postern-dev/postern/internal/version"
)

// Tunnel keeps one forwarder connection to one bastion up.
type Tunnel struct {
	// Addr is the bastion's host:port; its host certificate must name the
	// host.
	Addr    string
	Cluster string
	ID      string
	// Signer is the forwarder's host key with its certificate.
	Signer ssh.Signer
	// HostCAs certify the bastions.
	HostCAs []ssh.PublicKey
	// KeepAlive is the interval of keepalives; three unanswered close the
	// connection.
	KeepAlive              time.Duration
	MinBackoff, MaxBackoff time.Duration
	DialTimeout            time.Duration
	// Deliver receives each accepted channel with its identity.
	Deliver func(ch ssh.Channel, id kubeproto.Identity, bastion string)
	Logger  *slog.Logger
	// Now is the clock for certificate checks. Default time.Now.
	Now func() time.Time

	// metrics, when set, counts the tunnel's ups, downs and failures.
	metrics *fwdMetrics

	mu        sync.Mutex
	connected bool
	wasUp     bool // registered at least once
}

// Connected reports whether the tunnel is up and registered.
func (t *Tunnel) Connected() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.connected
}

// Run keeps the tunnel up until ctx is done: it reconnects after every
// loss, waiting MinBackoff doubling to MaxBackoff with ±50% jitter; a
// connection that stayed up for a while starts over at MinBackoff.
func (t *Tunnel) Run(ctx context.Context) {
	if t.Now == nil {
		t.Now = time.Now
	}
	log := t.Logger.With("bastion", t.Addr)
	backoff := t.MinBackoff
	for ctx.Err() == nil {
		start := time.Now()
		registered, err := t.once(ctx, log)
		if ctx.Err() != nil {
			return
		}
		if !registered {
			t.metrics.connectFailed(t.Addr)
		}
		if time.Since(start) > 2*t.MaxBackoff {
			backoff = t.MinBackoff
		}
		wait := time.Duration(float64(backoff) * (0.5 + rand.Float64()))
		log.Warn("tunnel down: reconnecting", "err", err, "in", wait.Round(time.Millisecond).String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, t.MaxBackoff)
	}
}

func (t *Tunnel) setConnected(v bool) {
	t.mu.Lock()
	again := v && t.wasUp
	t.connected = v
	t.wasUp = t.wasUp || v
	t.mu.Unlock()
	t.metrics.tunnel(t.Addr, v)
	if again {
		t.metrics.reconnected(t.Addr)
	}
}

// once runs one connection until it is lost; registered says whether it
// got as far as being registered with the bastion.
func (t *Tunnel) once(ctx context.Context, log *slog.Logger) (registered bool, err error) {
	d := net.Dialer{Timeout: t.DialTimeout, KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return false, fmt.Errorf("dial: %w", err)
	}
	checker := &ssh.CertChecker{
		IsHostAuthority: func(auth ssh.PublicKey, _ string) bool { return t.isCA(auth) },
		Clock:           t.Now,
	}
	cfg := &ssh.ClientConfig{
		User:            config.KubeForwarderLogin,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(t.Signer)},
		HostKeyCallback: checker.CheckHostKey,
		Timeout:         t.DialTimeout,
		ClientVersion:   "SSH-2.0-postern-kube-forwarder-" + version.Version,
	}
	_ = raw.SetDeadline(time.Now().Add(t.DialTimeout))
	conn, chans, reqs, err := ssh.NewClientConn(raw, t.Addr, cfg)
	if err != nil {
		raw.Close()
		return false, fmt.Errorf("ssh handshake: %w", err)
	}
	_ = raw.SetDeadline(time.Time{})
	defer conn.Close()
	go ssh.DiscardRequests(reqs)

	payload, _ := json.Marshal(kubeproto.Register{Cluster: t.Cluster, ID: t.ID, Version: version.Version})
	ok, msg, err := conn.SendRequest(kubeproto.RegisterRequest, true, payload)
	if err != nil {
		return false, fmt.Errorf("register: %w", err)
	}
	if !ok {
		return false, fmt.Errorf("the bastion refused this forwarder for cluster %s: %s", t.Cluster, bytes.TrimSpace(msg))
	}
	log.Info("tunnel up: registered", "cluster", t.Cluster)
	t.setConnected(true)
	defer t.setConnected(false)

	lost := make(chan error, 1)
	go func() { lost <- t.keepAlive(ctx, conn) }()
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	for nc := range chans {
		if nc.ChannelType() != kubeproto.ChannelType {
			_ = nc.Reject(ssh.UnknownChannelType, "postern forwarder: no such channel")
			continue
		}
		id, err := kubeproto.ParseIdentity(nc.ExtraData())
		if err != nil || id.Cluster != t.Cluster {
			log.Warn("channel refused: bad identity", "err", err, "cluster", id.Cluster)
			_ = nc.Reject(ssh.Prohibited, "postern forwarder: bad identity")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go ssh.DiscardRequests(creqs)
		t.Deliver(ch, id, t.Addr)
	}
	select {
	case err := <-lost:
		return true, err
	default:
		return true, errors.New("connection closed by the bastion")
	}
}

// keepAlive pings the bastion; it closes conn after three unanswered
// keepalives.
func (t *Tunnel) keepAlive(ctx context.Context, conn ssh.Conn) error {
	tick := time.NewTicker(t.KeepAlive)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		res := make(chan error, 1)
		go func() {
			_, _, err := conn.SendRequest("keepalive@openssh.com", true, nil)
			res <- err
		}()
		select {
		case err := <-res:
			if err != nil {
				return fmt.Errorf("keepalive: %w", err)
			}
		case <-time.After(3 * t.KeepAlive):
			conn.Close()
			return errors.New("keepalive: no answer from the bastion")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (t *Tunnel) isCA(k ssh.PublicKey) bool {
	m := k.Marshal()
	for _, ca := range t.HostCAs {
		if bytes.Equal(ca.Marshal(), m) {
			return true
		}
	}
	return false
}
