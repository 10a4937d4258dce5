package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/bastion/authz"
	"github.com/postern-dev/postern/bastion/revocation"
	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/auditlog"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/metrics"
	"github.com/postern-dev/postern/internal/version"
)

// KeyExchanges offered, best first: post-quantum hybrid, then curve25519.
var KeyExchanges = []string{
	ssh.KeyExchangeMLKEM768X25519,
	ssh.KeyExchangeCurve25519,
	ssh.KeyExchangeECDHP256,
	ssh.KeyExchangeECDHP384,
	ssh.KeyExchangeECDHP521,
	ssh.KeyExchangeDH16SHA512,
	ssh.KeyExchangeDH14SHA256,
}

// maxAuthTries bounds authentication attempts per connection.
const maxAuthTries = 6

// Options are the collaborators of a Server; zero values get defaults.
type Options struct {
	Logger *slog.Logger
	// Audit receives security events. Required.
	Audit audit.Emitter
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Resolver and LocalAddrs override authz's defaults (tests).
	Resolver   authz.Resolver
	LocalAddrs func() ([]netip.Addr, error)
	// KRLSource overrides where the KRL comes from (tests); [bastion]
	// revocation and its keys decide otherwise.
	KRLSource revocation.Source
	// AuditStats reports the audit log's S3 shipping, for metrics (nil or
	// ok false: not shipping).
	AuditStats func() (auditlog.Stats, bool)
}

// Server is a running bastion.
type Server struct {
	cfg    config.Bastion
	log    *slog.Logger
	audit  audit.Emitter
	now    func() time.Time
	auth   *authenticator
	policy *policyBox // swapped on reload (reload.go)
	gs     *gliderssh.Server
	krl    *revocation.Watcher // nil: revocation off
	revs   revocation.Registry // what a revocation must end

	// HostCert is the host certificate presented, nil without one.
	HostCert *ssh.Certificate
	// rec is recording mode's state (record.go).
	rec *recording
	// kube is Kubernetes access (kube.go).
	kube *kubeHub
	// play serves the recordings and play menu commands (playback.go).
	play *playback

	mu       sync.Mutex
	conns    map[*connState]struct{}
	sessions sync.WaitGroup // open channels, so their end events get written
	closing  atomic.Bool    // shutdown started: no new channels
	forced   atomic.Bool    // grace over: connections are being cut

	// metrics are the Prometheus metrics (metrics.go); readiness is
	// /readyz's state; reload swaps roles and node rules (reload.go).
	metrics   *bastionMetrics
	readiness readiness
}

// New builds a bastion from the configuration: it reads the user CA,
// loads (or creates) the host key and its certificate, and parses the
// roles' node rules.
func New(cfg *config.Config, opts Options) (*Server, error) {
	if opts.Audit == nil {
		return nil, errors.New("new bastion: no audit emitter")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	b := cfg.Bastion
	cas, err := loadUserCAs(b.UserCA)
	if err != nil {
		return nil, err
	}
	hk, err := LoadHostKey(b.HostKey, b.HostCert, opts.Now())
	if err != nil {
		return nil, err
	}
	for _, w := range hk.Warnings {
		opts.Logger.Warn(w)
	}
	if hk.Generated {
		opts.Logger.Info("generated host key", "path", b.HostKey, "fingerprint", ssh.FingerprintSHA256(hk.Signer.PublicKey()))
	}
	policy, err := newPolicyBox(cfg, opts)
	if err != nil {
		return nil, err
	}
	m := newBastionMetrics()
	s := &Server{
		cfg:      b,
		log:      opts.Logger,
		audit:    metrics.CountingEmitter{Inner: opts.Audit, Errors: m.auditErrs, Observe: m.observe},
		metrics:  m,
		now:      opts.Now,
		policy:   policy,
		HostCert: hk.Cert,
		conns:    map[*connState]struct{}{},
	}
	s.krl = newWatcher(b, opts.KRLSource, s)
	s.auth = &authenticator{cas: cas, skew: b.ClockSkew.Duration, now: opts.Now, revoked: s.checkRevoked}
	if err := s.initRecording(cfg, hk); err != nil {
		return nil, err
	}
	s.registerRecordingMetrics()
	auditlog.RegisterMetrics(s.metrics.reg, opts.AuditStats)
	s.gs = &gliderssh.Server{
		Version:              "postern-" + version.Version,
		HostSigners:          gliderSigners(hk.Signers()),
		ConnCallback:         s.newConn,
		ServerConfigCallback: s.serverConfig,
		ChannelHandlers: map[string]gliderssh.ChannelHandler{
			"session":      s.handleSession,
			"direct-tcpip": s.handleDirectTCPIP,
			"default":      s.refuseChannel,
		},
		RequestHandlers: map[string]gliderssh.RequestHandler{
			"tcpip-forward":                   s.refuseGlobal,
			"cancel-tcpip-forward":            s.refuseGlobal,
			"streamlocal-forward@openssh.com": s.refuseGlobal,
		},
		SubsystemHandlers: map[string]gliderssh.SubsystemHandler{},
	}
	if err := s.initKube(cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// Serve accepts connections on ln until ctx is done, then shuts down
// gracefully: it stops accepting, refuses new channels, closes idle
// connections, lets open sessions run for up to shutdown_grace, then cuts
// them and writes their end events.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	// Revocations keep applying during the shutdown grace.
	stopRevocation := s.startRevocation(ctx)
	defer stopRevocation()
	// Uploads go on through the grace and get a last pass at the end.
	stopRecording := s.startRecording(ctx)
	defer stopRecording()
	ln, err := s.proxyListener(ln)
	if err != nil {
		return err
	}
	if err := s.startMetrics(ctx); err != nil {
		return err
	}
	errc := make(chan error, 1)
	sl := &startedListener{Listener: ln, started: make(chan struct{})}
	go func() { errc <- s.gs.Serve(sl) }()
	// gliderlabs registers the listener before its first Accept; shutting
	// down before that would race with it and leave the listener open.
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-sl.started:
	}
	s.readiness.serving.Store(true)
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	grace := s.cfg.ShutdownGrace.Duration
	s.log.Info("shutting down: no new connections", "grace", grace.String(), "open_sessions", s.openChannels())
	s.closing.Store(true)
	s.closeIdle()
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := s.gs.Shutdown(sctx); err != nil {
		s.log.Warn("shutdown grace over: closing open sessions", "open_sessions", s.openChannels())
		s.forced.Store(true)
		_ = s.gs.Close()
	}
	<-errc
	// Handlers write their end events once their copies notice the closed
	// connections; wait for them, but not forever.
	done := make(chan struct{})
	go func() { s.sessions.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.log.Error("sessions did not end after their connections were closed")
	}
	s.log.Info("bastion stopped")
	return nil
}

// startedListener closes started at the first Accept.
type startedListener struct {
	net.Listener
	once    sync.Once
	started chan struct{}
}

func (l *startedListener) Accept() (net.Conn, error) {
	l.once.Do(func() { close(l.started) })
	return l.Listener.Accept()
}

// openChannels counts channels open on all connections.
func (s *Server) openChannels() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		n += c.activeChannels()
	}
	return n
}

// closeIdle closes connections with no open channel (and, since closing is
// set, none to come).
func (s *Server) closeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.closeIfIdle()
	}
}

// emit writes an audit event; a failure is logged, never ignored silently.
func (s *Server) emit(ctx context.Context, e audit.Event) {
	revokedEvent(ctx, &e)
	if err := s.audit.Emit(ctx, e); err != nil {
		s.log.Error("write audit event", "event", e.Event, "err", err)
	}
}

// newID returns a random identifier for connections and sessions.
func newID() string {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b[:])
}

func gliderSigners(ss []ssh.Signer) []gliderssh.Signer {
	out := make([]gliderssh.Signer, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
