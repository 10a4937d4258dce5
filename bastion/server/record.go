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
	"path"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/bastion/authz"
	"github.com/postern-dev/postern/bastion/record"
	"github.com/postern-dev/postern/bastion/signerapi"
	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/spool"
	"github.com/postern-dev/postern/internal/sshrelay"
	"github.com/postern-dev/postern/internal/storage"
)

// Recording mode: the bastion terminates the SSH connection that arrives
// inside a direct-tcpip channel, presents a host certificate for the node's
// name, authenticates the person's certificate again, logs in to the node
// with a delegated certificate from the signer, and relays everything
// through sshrelay with a recorder watching.

// recording is the bastion's recording-mode state.
type recording struct {
	limit    int64
	hostKey  ssh.Signer        // presented for node names
	signer   *signerapi.Client // nil until a host certificate exists
	spool    *spool.Spool
	uploader *spool.Uploader
	initErr  error

	mu    sync.Mutex
	certs map[string]*nodeHostCert
}

type nodeHostCert struct {
	signer  ssh.Signer
	renewAt time.Time
}

// initRecording prepares recording mode: the spool (recovering what a
// crash left), the store it uploads to, and the signer client.
func (s *Server) initRecording(cfg *config.Config, hk *HostKey) error {
	r := &recording{limit: cfg.Bastion.ExecCaptureLimit, certs: map[string]*nodeHostCert{}}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	if r.hostKey, err = ssh.NewSignerFromKey(priv); err != nil {
		return err
	}
	s.rec = r
	if hk.Cert == nil {
		// Forward mode still works; recorded hops will be refused.
		r.initErr = errors.New("the bastion has no host certificate, which recording mode needs to prove itself to the signer")
		s.log.Warn("recording mode unavailable", "reason", r.initErr)
	} else {
		r.signer, err = signerapi.New(cfg.Bastion.SignerURL, cfg.Bastion.SignerCA, hk.Signer, hk.Cert, s.now)
		if err != nil {
			r.initErr = err
			s.log.Warn("recording mode unavailable", "reason", err)
		}
	}
	if r.spool, err = spool.Open(cfg.Bastion.SpoolDir, spool.Options{Logger: s.log, SyncInterval: cfg.Storage.SpoolSyncInterval.Duration}); err != nil {
		return fmt.Errorf("open recording spool: %w", err)
	}
	// Recordings cut by a crash are closed with a marker and uploaded.
	keys, err := r.spool.Recover(func(rc *spool.Recovered) error {
		if path.Ext(rc.Key) != ".cast" {
			return nil
		}
		return record.CloseRecovered(rc, rc.Size)
	})
	if err != nil {
		// Recover sealed the files anyway; they upload as they are.
		s.log.Error("recover recording spool", "err", err)
	}
	for _, k := range keys {
		s.log.Warn("recovered a recording left by an earlier run", "key", k)
		s.emit(context.Background(), audit.Event{Event: audit.SessionEnd, Recording: k, Reason: "bastion restarted before the session ended; recording recovered from the spool"})
	}
	store, err := openStore(cfg.Storage)
	if err != nil {
		return err
	}
	s.play = newPlayback(cfg, store, s.now)
	r.uploader = spool.NewUploader(r.spool, store, spool.UploaderOptions{
		Logger:     s.log,
		MinBackoff: cfg.Storage.UploadMinBackoff.Duration, MaxBackoff: cfg.Storage.UploadMaxBackoff.Duration,
		Timeout: cfg.Storage.UploadTimeout.Duration,
		Uploaded: func(o storage.ObjectInfo) {
			s.emit(context.Background(), audit.Event{Event: audit.RecordingStored, Recording: o.Key, BytesOut: o.Size, Reason: "sha256 " + o.SHA256})
		},
	})
	return nil
}

// openStore returns where recordings go: S3 when a bucket is set, else the
// local directory.
func openStore(st config.Storage) (storage.Store, error) {
	return storage.FromConfig(context.Background(), st)
}

// startRecording runs the uploader until the returned func is called; it
// then makes a last upload pass.
func (s *Server) startRecording(ctx context.Context) func() {
	if s.rec == nil || s.rec.uploader == nil {
		return func() {}
	}
	uctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { _ = s.rec.uploader.Run(uctx); close(done) }()
	return func() {
		cancel()
		<-done
		fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer fcancel()
		if err := s.rec.uploader.UploadPending(fctx); err != nil {
			s.log.Warn("recordings left in the spool for the next start", "err", err)
		}
		_ = s.rec.spool.Close()
	}
}

// recordingFor decides whether a hop is recorded: the inventory node's
// override if set, else on unless every one of the person's roles says
// "off". It also says whether keyboard input is recorded.
func (s *Server) recordingFor(p *principal, dec authz.Decision) (on, input bool) {
	r := s.rec
	if r == nil {
		return false, false
	}
	on = false
	known := 0
	// The roles the hop runs under: those whose rules allow it. A role
	// that does not reach this node (a kube-only role, say) has no say.
	roles := dec.Roles
	if len(roles) == 0 {
		roles = p.id.Roles
	}
	pol := s.policy.state()
	for _, name := range roles {
		role, ok := pol.roles[name]
		if !ok {
			continue
		}
		known++
		if role.Recording != "off" {
			on = true
		}
		input = input || role.RecordInput
	}
	if known == 0 {
		on = true
	}
	switch pol.nodes[dec.Node] {
	case "on":
		on = true
	case "off":
		on = false
	}
	return on, input
}

// nodeSigner returns the host key with a certificate for name, fetched
// from the signer and cached until 10% of its life is left.
func (s *Server) nodeSigner(ctx context.Context, name string) (ssh.Signer, error) {
	r := s.rec
	r.mu.Lock()
	c := r.certs[name]
	r.mu.Unlock()
	if c != nil && s.now().Before(c.renewAt) {
		return c.signer, nil
	}
	cert, err := r.signer.NodeHostCert(ctx, r.hostKey.PublicKey(), []string{name})
	if err != nil {
		return nil, err
	}
	cs, err := ssh.NewCertSigner(cert, r.hostKey)
	if err != nil {
		return nil, err
	}
	after, before := time.Unix(int64(cert.ValidAfter), 0), time.Unix(int64(cert.ValidBefore), 0)
	r.mu.Lock()
	r.certs[name] = &nodeHostCert{signer: cs, renewAt: before.Add(-before.Sub(after) / 10)}
	r.mu.Unlock()
	return cs, nil
}

// recordHop terminates the person's SSH connection inside ch, logs in to
// the node over tcp and relays with a recorder. It returns bytes
// client→bastion, bastion→client and why it ended.
func (s *Server) recordHop(ctx context.Context, st *connState, p *principal, dec authz.Decision, host string, ch ssh.Channel, tcp *net.TCPConn, sid string, input bool, log *slog.Logger) (in, out int64, reason string) {
	cc := &chanConn{Channel: ch, local: tcp.LocalAddr(), remote: st.remote}
	defer cc.Close()
	defer tcp.Close()
	fail := func(stage string, err error) (int64, int64, string) {
		log.Warn("recorded hop failed", "stage", stage, "err", err)
		return cc.in.Load(), cc.out.Load(), "error: " + stage + ": " + err.Error()
	}
	if s.rec.initErr != nil {
		return fail("setup", s.rec.initErr)
	}
	hostSigner, err := s.nodeSigner(ctx, host)
	if err != nil {
		return fail("host certificate for "+host, err)
	}
	// The inner login must be the same person, with a login their
	// certificate names.
	scfg := &ssh.ServerConfig{
		ServerVersion: "SSH-2.0-postern",
		MaxAuthTries:  maxAuthTries,
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			perms, cert, err := s.auth.check(key, addrOf(st.remote))
			if err != nil {
				return nil, err
			}
			if cert.KeyId != p.id.KeyID {
				return nil, fmt.Errorf("inner login as %q on a connection of %q", cert.KeyId, p.id.KeyID)
			}
			if !slices.Contains(cert.ValidPrincipals, meta.User()) {
				return nil, fmt.Errorf("login %q is not in the certificate", meta.User())
			}
			return perms, nil
		},
	}
	scfg.KeyExchanges = KeyExchanges
	scfg.AddHostKey(hostSigner)
	hctx, hcancel := context.WithTimeout(ctx, s.cfg.HandshakeTimeout.Duration)
	stopTimer := context.AfterFunc(hctx, func() {
		if errors.Is(hctx.Err(), context.DeadlineExceeded) {
			cc.Close()
		}
	})
	sconn, chans, reqs, err := ssh.NewServerConn(cc, scfg)
	stopTimer()
	hcancel()
	if err != nil {
		return fail("person's handshake", err)
	}
	defer sconn.Close()
	inner := principalOfUnverified(sconn.Permissions)
	if inner == nil {
		return fail("person's handshake", errors.New("no certificate on the inner login"))
	}
	login := sconn.User()
	log = log.With("login", login)

	refuse := func(stage string, err error) (int64, int64, string) {
		msg := "postern: cannot log in to " + host + ": " + stage
		go ssh.DiscardRequests(reqs)
		go func() {
			for nc := range chans {
				_ = nc.Reject(ssh.ConnectionFailed, msg)
			}
		}()
		time.Sleep(100 * time.Millisecond) // let the refusal reach the client
		return fail(stage, err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	keySigner, _ := ssh.NewSignerFromKey(priv)
	dcert, err := s.rec.signer.Delegate(ctx, inner.cert, login, host, sid, keySigner.PublicKey())
	if err != nil {
		return refuse("delegated certificate refused", err)
	}
	certSigner, err := ssh.NewCertSigner(dcert, keySigner)
	if err != nil {
		return refuse("delegated certificate", err)
	}
	hostCAs, err := s.rec.signer.HostCAs(ctx)
	if err != nil {
		return refuse("host CA", err)
	}
	checker := &ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool {
		for _, ca := range hostCAs {
			if bytes.Equal(ca.Marshal(), k.Marshal()) {
				return true
			}
		}
		return false
	}}
	ncc, nchans, nreqs, err := ssh.NewClientConn(withQuickAck(tcp), net.JoinHostPort(host, strconv.Itoa(int(dec.Target.Port))), &ssh.ClientConfig{
		User: login, Auth: []ssh.AuthMethod{ssh.PublicKeys(certSigner)},
		HostKeyCallback: checker.CheckHostKey, Timeout: s.cfg.HandshakeTimeout.Duration,
	})
	if err != nil {
		return refuse("node login", err)
	}
	defer ncc.Close()

	start := s.now()
	rec := record.New(record.Meta{
		SessionID: sid, Person: p.id.KeyID, Roles: p.id.Roles, Serial: p.id.Serial, Login: login,
		Node: host, Target: dec.Target.String(), ClientAddr: addrOf(st.remote).String(), Start: start,
	}, record.Options{
		RecordInput: input, ExecLimit: s.rec.limit, Now: s.now, Logger: log,
		Emit: func(e audit.Event) { s.emit(context.WithoutCancel(ctx), e) },
	}, spoolSink{s.rec.spool})
	_, forwards := dcert.Extensions["permit-port-forwarding"]
	relay := &sshrelay.Relay{
		Client: sconn, ClientChans: chans, ClientReqs: reqs,
		Node: ncc, NodeChans: nchans, NodeReqs: nreqs,
		Policy: sshrelay.Policy{
			LocalForward:  func(string, uint32) bool { return forwards },
			RemoteForward: func(string, uint32) bool { return forwards },
		},
		Observer: rec.Observer(),
		Logger:   log,
		// A revocation tells the person on every session of the hop, as
		// on the bastion's own sessions (CRLF: most hops have a terminal).
		OnClientSession: func(ch ssh.Channel) func() { return st.onRevoke(channelNotice(ch, true)) },
	}
	log.Info("recorded hop start")
	_ = relay.Run(ctx)
	rec.Wait()
	switch {
	case s.forced.Load():
		reason = ReasonShutdown
	case relay.EndedBy == "client":
		reason = ReasonClientClosed
	case relay.EndedBy == "node":
		reason = ReasonNodeClosed
	default:
		reason = ReasonDisconnected
	}
	log.Info("recorded hop end", "recordings", rec.Keys())
	return cc.in.Load(), cc.out.Load(), reason
}

// principalOfUnverified reads the principal the authenticator stored; on
// an x/crypto ServerConn the Permissions are those of the key whose
// signature was verified.
func principalOfUnverified(perms *ssh.Permissions) *principal {
	if perms == nil || perms.ExtraData == nil {
		return nil
	}
	p, _ := perms.ExtraData[principalKey{}].(*principal)
	return p
}

// spoolSink adapts the spool to record.Sink.
type spoolSink struct{ sp *spool.Spool }

func (s spoolSink) Create(key string, meta map[string]string) (io.WriteCloser, error) {
	return s.sp.Create(key, meta)
}

// chanConn is an SSH channel as a net.Conn, counting bytes.
type chanConn struct {
	ssh.Channel
	local, remote net.Addr
	in, out       atomic.Int64
}

func (c *chanConn) Read(p []byte) (int, error) {
	n, err := c.Channel.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *chanConn) Write(p []byte) (int, error) {
	n, err := c.Channel.Write(p)
	c.out.Add(int64(n))
	return n, err
}

func (c *chanConn) LocalAddr() net.Addr                { return c.local }
func (c *chanConn) RemoteAddr() net.Addr               { return c.remote }
func (c *chanConn) SetDeadline(t time.Time) error      { return nil }
func (c *chanConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *chanConn) SetWriteDeadline(t time.Time) error { return nil }
