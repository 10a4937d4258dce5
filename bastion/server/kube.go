package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/kubeproto"
	"github.com/postern-dev/postern/internal/sshcert"
)

// Kubernetes refusals, for errors.Is.
var (
	// ErrKubeNotAllowed: none of the person's roles lists the cluster.
	ErrKubeNotAllowed = errors.New("cluster not allowed by your roles")
	// ErrKubeNoForwarder: no forwarder of the cluster is connected here.
	ErrKubeNoForwarder = errors.New("cluster not connected to this bastion")
	// ErrNotForwarder: a host certificate that does not certify a
	// forwarder, or one not signed by kube.forwarder_ca.
	ErrNotForwarder = errors.New("host certificate is not a kube forwarder certificate")
)

// kubeHub is the bastion's Kubernetes side: it authenticates forwarders
// (host certificates from kube.forwarder_ca naming kube-forwarder/CLUSTER),
// keeps their connections by cluster, and carries each allowed kube/CLUSTER
// subsystem to one of them.
type kubeHub struct {
	s         *Server
	cfg       *config.Config
	cas       []ssh.PublicKey // forwarder CAs; nil: no forwarder accepted
	keepAlive time.Duration
	session   gliderssh.ChannelHandler // the bastion's own session handler

	mu  sync.Mutex
	fwd map[string][]*forwarderConn
}

// forwarderConn is one registered forwarder connection.
type forwarderConn struct {
	conn    *ssh.ServerConn
	cluster string
	id      string
	since   time.Time
}

// initKube sets up Kubernetes access: forwarder certificates, the
// registration request, and kube/CLUSTER subsystems on session channels.
func (s *Server) initKube(cfg *config.Config) error {
	k := &kubeHub{s: s, cfg: cfg, keepAlive: cfg.Kube.KeepAlive.Duration, fwd: map[string][]*forwarderConn{}}
	data, err := os.ReadFile(cfg.Kube.ForwarderCA)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if slices.ContainsFunc(cfg.Roles, func(r config.Role) bool { return len(r.KubeClusters) > 0 }) {
			s.log.Warn("roles grant kube clusters but kube.forwarder_ca does not exist: no forwarder can connect", "forwarder_ca", cfg.Kube.ForwarderCA)
		}
	case err != nil:
		return fmt.Errorf("read kube forwarder CA: %w", err)
	default:
		if k.cas, err = parseCAKeys(cfg.Kube.ForwarderCA, data); err != nil {
			return err
		}
		s.auth.forwarder = k.checkForwarder
	}
	k.session = s.gs.ChannelHandlers["session"]
	s.gs.ChannelHandlers["session"] = k.handleSession
	s.gs.ChannelHandlers[kubeproto.ClientChannelType] = k.handleKubeChannel
	s.gs.RequestHandlers[kubeproto.RegisterRequest] = k.handleRegister
	s.kube = k
	return nil
}

func parseCAKeys(path string, data []byte) ([]ssh.PublicKey, error) {
	var cas []ssh.PublicKey
	for rest := data; len(bytes.TrimSpace(rest)) > 0; {
		k, _, _, r, err := ssh.ParseAuthorizedKey(rest)
		if err != nil {
			return nil, fmt.Errorf("parse kube forwarder CA %s: %w", path, err)
		}
		if _, ok := k.(*ssh.Certificate); ok {
			return nil, fmt.Errorf("parse kube forwarder CA %s: a certificate is not a CA key", path)
		}
		cas = append(cas, k)
		rest = r
	}
	if len(cas) == 0 {
		return nil, fmt.Errorf("parse kube forwarder CA %s: no keys", path)
	}
	return cas, nil
}

// checkForwarder is the authenticator's check for host certificates: one
// from kube.forwarder_ca, valid now, naming at least one cluster, with no
// critical options and not revoked. The principal it returns has no roles.
func (k *kubeHub) checkForwarder(cert *ssh.Certificate, _ netip.Addr) (*ssh.Permissions, *ssh.Certificate, error) {
	isCA := false
	for _, ca := range k.cas {
		if bytes.Equal(ca.Marshal(), cert.SignatureKey.Marshal()) {
			isCA = true
		}
	}
	if !isCA {
		return nil, cert, fmt.Errorf("%w: not signed by kube.forwarder_ca", ErrHostCert)
	}
	clusters := kubeproto.ForwarderClusters(cert.ValidPrincipals)
	if len(clusters) == 0 {
		return nil, cert, fmt.Errorf("%w: no principal %s", ErrNotForwarder, kubeproto.ForwarderPrincipal("CLUSTER"))
	}
	if len(cert.CriticalOptions) > 0 {
		return nil, cert, fmt.Errorf("%w: critical options on a forwarder certificate", ErrCertInvalid)
	}
	a := k.s.auth
	now := a.now()
	after, before := int64(cert.ValidAfter), int64(cert.ValidBefore)
	if cert.ValidAfter > 1<<62 || now.Add(a.skew).Unix() < after {
		return nil, cert, ErrNotYetValid
	}
	if cert.ValidBefore != ssh.CertTimeInfinity && (cert.ValidBefore > 1<<62 || now.Add(-a.skew).Unix() >= before) {
		return nil, cert, fmt.Errorf("%w at %s", ErrExpired, time.Unix(min(before, 1<<40), 0).UTC().Format(time.RFC3339))
	}
	checker := ssh.CertChecker{Clock: func() time.Time { return clamp(now, after, before) }}
	if err := checker.CheckCert(kubeproto.ForwarderPrincipal(clusters[0]), cert); err != nil {
		return nil, cert, fmt.Errorf("%w: %v", ErrCertInvalid, err)
	}
	if a.revoked != nil {
		if err := a.revoked(cert); err != nil {
			return nil, cert, revocationBanner(err)
		}
	}
	id := sshcert.IdentityOf(cert)
	id.Roles, id.Groups = nil, nil // a forwarder holds no role, whatever its certificate says
	p := &principal{cert: cert, id: id, keyFP: ssh.FingerprintSHA256(cert.Key)}
	return &ssh.Permissions{ExtraData: map[any]any{principalKey{}: p}}, cert, nil
}

// isForwarder tells a forwarder's principal from a person's.
func isForwarder(p *principal) bool { return p.cert.CertType == ssh.HostCert }

// handleRegister serves a forwarder's registration: its certificate must
// name the cluster it registers for. The connection then carries kube
// channels until it closes.
func (k *kubeHub) handleRegister(ctx gliderssh.Context, _ *gliderssh.Server, req *ssh.Request) (bool, []byte) {
	st := stateOf(ctx)
	conn, _ := ctx.Value(gliderssh.ContextKeyConn).(*ssh.ServerConn)
	if st == nil || conn == nil {
		return false, nil
	}
	p := st.identity(conn)
	if p == nil {
		return false, nil
	}
	var reg kubeproto.Register
	err := json.Unmarshal(req.Payload, &reg)
	switch {
	case !isForwarder(p):
		err = errors.New("only a forwarder's host certificate may register")
	case err != nil:
		err = fmt.Errorf("bad registration: %w", err)
	case !slices.Contains(kubeproto.ForwarderClusters(p.cert.ValidPrincipals), reg.Cluster):
		err = fmt.Errorf("certificate does not name %s", kubeproto.ForwarderPrincipal(sanitizeCommand(reg.Cluster)))
	}
	if err != nil {
		e := st.baseEvent(audit.AccessDenied, p)
		e.Method, e.Target, e.Reason = kubeproto.RegisterRequest, "kube/"+sanitizeCommand(reg.Cluster), err.Error()
		st.log.Warn("kube forwarder registration refused", "reason", err.Error())
		k.s.emit(ctx, e)
		return false, []byte(err.Error())
	}
	fc := &forwarderConn{conn: conn, cluster: reg.Cluster, id: sanitizeCommand(reg.ID), since: k.s.now()}
	k.mu.Lock()
	k.fwd[reg.Cluster] = append(k.fwd[reg.Cluster], fc)
	n := len(k.fwd[reg.Cluster])
	k.mu.Unlock()
	st.log.Info("kube forwarder registered", "cluster", reg.Cluster, "forwarder_id", fc.id, "serial", p.cert.Serial, "forwarders", n)
	go k.watchForwarder(ctx, st, fc)
	return true, nil
}

// watchForwarder unregisters fc when its connection ends, and closes the
// connection when keepalives go unanswered.
func (k *kubeHub) watchForwarder(ctx gliderssh.Context, st *connState, fc *forwarderConn) {
	tick := time.NewTicker(k.keepAlive)
	defer tick.Stop()
	done := make(chan struct{})
	go func() { _ = fc.conn.Wait(); close(done) }()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-done:
			break loop
		case <-tick.C:
			res := make(chan error, 1)
			go func() {
				_, _, err := fc.conn.SendRequest("keepalive@openssh.com", true, nil)
				res <- err
			}()
			select {
			case err := <-res:
				if err != nil {
					break loop
				}
			case <-time.After(3 * k.keepAlive):
				st.log.Warn("kube forwarder unresponsive: closing", "cluster", fc.cluster)
				fc.conn.Close()
				break loop
			case <-done:
				break loop
			}
		}
	}
	k.mu.Lock()
	k.fwd[fc.cluster] = slices.DeleteFunc(k.fwd[fc.cluster], func(c *forwarderConn) bool { return c == fc })
	k.mu.Unlock()
	st.log.Info("kube forwarder gone", "cluster", fc.cluster, "forwarder_id", fc.id)
}

// forwarders returns the cluster's forwarders, newest first after a
// random one (spreading load across forwarders of one cluster).
func (k *kubeHub) forwarders(cluster string) []*forwarderConn {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := slices.Clone(k.fwd[cluster])
	slices.Reverse(out)
	if len(out) > 1 {
		i := rand.IntN(len(out))
		out[0], out[i] = out[i], out[0]
	}
	return out
}

// person is who opened nc: an authenticated person, not a forwarder (whose
// channel is refused and audited here). ok false means nc was rejected.
func (k *kubeHub) person(ctx gliderssh.Context, conn *ssh.ServerConn, nc ssh.NewChannel) (*connState, *principal, bool) {
	st := stateOf(ctx)
	p := st.identity(conn)
	if p == nil {
		nc.Reject(ssh.Prohibited, "not authenticated")
		return st, nil, false
	}
	if isForwarder(p) {
		k.s.refuseForwarderChannel(ctx, st, p, nc, "")
		return st, p, false
	}
	return st, p, true
}

// handleSession looks at the first request of a session channel: a
// kube/CLUSTER subsystem is served here, anything else goes to the
// bastion's own session handler unchanged.
func (k *kubeHub) handleSession(srv *gliderssh.Server, conn *ssh.ServerConn, nc ssh.NewChannel, ctx gliderssh.Context) {
	st, p, ok := k.person(ctx, conn, nc)
	if !ok {
		return
	}
	if k.s.closing.Load() {
		k.session(srv, conn, nc, ctx)
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	var first *ssh.Request
	select {
	case first = <-reqs:
	case <-ctx.Done():
		ch.Close()
		return
	}
	if first != nil && first.Type == "subsystem" {
		var sub struct{ Name string }
		if ssh.Unmarshal(first.Payload, &sub) == nil {
			if cluster, ok, err := kubeproto.ParseSubsystem(sub.Name); ok {
				k.serve(ctx, st, p, conn, &kubeSubsystem{ch: ch, reqs: reqs, req: first}, cluster, err)
				return
			}
		}
	}
	k.session(srv, conn, &acceptedChannel{ch: ch, reqs: replay(ctx, first, reqs)}, ctx)
}

// handleKubeChannel serves a kube-exec channel naming its cluster in the
// channel open: the kube/CLUSTER subsystem in one round trip.
func (k *kubeHub) handleKubeChannel(_ *gliderssh.Server, conn *ssh.ServerConn, nc ssh.NewChannel, ctx gliderssh.Context) {
	st, p, ok := k.person(ctx, conn, nc)
	if !ok {
		return
	}
	var open kubeproto.ClientOpen
	var cluster string
	err := ssh.Unmarshal(nc.ExtraData(), &open)
	if err != nil {
		err = fmt.Errorf("%w: malformed channel open", kubeproto.ErrBadCluster)
	} else if err = kubeproto.ValidCluster(open.Cluster); err == nil {
		cluster = open.Cluster
	}
	k.serve(ctx, st, p, conn, &kubeChannel{nc: nc}, cluster, err)
}

// kubeStream is the person's side of one stream to a cluster: a session
// channel that asked for the kube subsystem, or a kube channel not yet
// accepted.
type kubeStream interface {
	// refuse tells the client why and ends the stream.
	refuse(reason ssh.RejectionReason, msg string)
	// accept returns the stream to carry.
	accept() (ssh.Channel, error)
}

// kubeSubsystem answers a subsystem request on an accepted session.
type kubeSubsystem struct {
	ch   ssh.Channel
	reqs <-chan *ssh.Request
	req  *ssh.Request
}

func (s *kubeSubsystem) refuse(_ ssh.RejectionReason, msg string) {
	refuseKube(s.ch, s.req, msg)
	s.ch.Close()
}

func (s *kubeSubsystem) accept() (ssh.Channel, error) {
	s.req.Reply(true, nil)
	go ssh.DiscardRequests(s.reqs)
	return s.ch, nil
}

// kubeChannel accepts or rejects a kube channel open.
type kubeChannel struct{ nc ssh.NewChannel }

func (c *kubeChannel) refuse(reason ssh.RejectionReason, msg string) { c.nc.Reject(reason, msg) }

func (c *kubeChannel) accept() (ssh.Channel, error) {
	ch, reqs, err := c.nc.Accept()
	if err != nil {
		return nil, err
	}
	go ssh.DiscardRequests(reqs)
	return ch, nil
}

// serve carries one stream to a forwarder of the cluster; conn is the
// person's connection (told of a revocation before it is cut).
func (k *kubeHub) serve(ctx gliderssh.Context, st *connState, p *principal, conn ssh.Conn, cl kubeStream, cluster string, parseErr error) {
	if !st.beginChannel() {
		cl.refuse(ssh.ResourceShortage, "postern: the bastion is shutting down")
		return
	}
	defer st.endChannel()
	sid := newID()
	target := kubeproto.Subsystem(cluster)
	log := st.log.With("session_id", sid, "person", p.id.KeyID, "target", target)
	deny := func(name string, sentinel error, reason ssh.RejectionReason, detail, userMsg string) {
		e := st.baseEvent(name, p)
		e.SessionID, e.Method, e.Target, e.Cluster = sid, "kube", target, cluster
		e.Reason, e.Error = sentinel.Error(), detail
		log.Warn("kube subsystem refused", "reason", sentinel.Error(), "detail", detail)
		k.s.emit(ctx, e)
		cl.refuse(reason, userMsg)
	}
	if parseErr != nil {
		target = "kube/?"
		deny(audit.AccessDenied, kubeproto.ErrBadCluster, ssh.Prohibited, parseErr.Error(), "postern: "+parseErr.Error())
		return
	}
	access, ok := k.s.policy.state().cfg.KubeAccessFor(p.id.Roles, cluster)
	if !ok {
		deny(audit.AccessDenied, ErrKubeNotAllowed, ssh.Prohibited, fmt.Sprintf("no role of %v lists cluster %s", p.id.Roles, cluster),
			fmt.Sprintf("postern: access to cluster %s denied: not allowed by your roles", cluster))
		return
	}
	users := access.Users
	if len(users) == 0 {
		users = []string{p.id.KeyID}
	}
	id := kubeproto.Identity{
		Person: p.id.KeyID, Cluster: cluster, Users: users, Groups: access.Groups, Roles: access.Roles,
		SessionID: sid, ConnID: st.id, ClientAddr: st.remote.String(), Bastion: k.s.cfg.ID,
	}
	var fch ssh.Channel
	var errs []error
	for _, f := range k.forwarders(cluster) {
		c, freqs, err := f.conn.OpenChannel(kubeproto.ChannelType, id.Marshal())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		go ssh.DiscardRequests(freqs)
		fch = c
		break
	}
	if fch == nil {
		detail := "no forwarder connected"
		if len(errs) > 0 {
			detail = errors.Join(errs...).Error()
		}
		deny(audit.ConnectFailed, ErrKubeNoForwarder, ssh.ConnectionFailed, detail,
			fmt.Sprintf("postern: cluster %s is not reachable through this bastion right now (its forwarder is not connected)", cluster))
		return
	}
	defer fch.Close()
	ch, err := cl.accept()
	if err != nil {
		return
	}
	defer ch.Close()
	// A revocation tells kube-exec on the connection, and this channel's
	// client on its stderr, before the connection is cut.
	st.tellKubeClientOnRevoke(conn)
	defer st.onRevoke(channelNotice(ch, false))()

	start := k.s.now()
	e := st.baseEvent(audit.SessionStart, p)
	e.SessionID, e.Method, e.Target, e.Cluster = sid, "kube", target, cluster
	e.KubeUser, e.Groups = users[0], access.Groups
	log.Info("kube session start", "kube_users", users, "kube_groups", access.Groups)
	k.s.emit(ctx, e)

	in, out, reason := spliceChannels(ctx, ch, fch)

	dur := k.s.now().Sub(start)
	e.Event, e.Time = audit.SessionEnd, time.Time{}
	e.BytesIn, e.BytesOut, e.DurationMS, e.Reason = in, out, dur.Milliseconds(), reason
	if k.s.forced.Load() {
		e.Reason = ReasonShutdown
	}
	log.Info("kube session end", "bytes_in", in, "bytes_out", out, "duration", dur.Round(time.Millisecond).String(), "reason", e.Reason)
	k.s.emit(context.WithoutCancel(ctx), e)
}

// refuseKube tells the client why on stderr, refuses the subsystem and
// ends the channel with exit status 1.
func refuseKube(ch ssh.Channel, req *ssh.Request, msg string) {
	io.WriteString(ch.Stderr(), msg+"\n")
	req.Reply(false, nil)
	sendExit(ch, 1)
}

// spliceChannels copies both ways with half-close; it returns bytes
// client→forwarder, forwarder→client and why it ended.
func spliceChannels(ctx context.Context, client, fwd ssh.Channel) (in, out int64, reason string) {
	type result struct {
		n     int64
		err   error
		toFwd bool
	}
	res := make(chan result, 2)
	go func() {
		n, err := copyBuffered(fwd, client)
		fwd.CloseWrite()
		res <- result{n, err, true}
	}()
	go func() {
		n, err := copyBuffered(client, fwd)
		client.CloseWrite()
		res <- result{n, err, false}
	}()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			client.Close()
			fwd.Close()
		case <-stop:
		}
	}()
	first := <-res
	if first.err != nil || !first.toFwd {
		// The forwarder ending its side ends the exchange: an HTTP
		// connection has nothing to say after the server closed.
		client.Close()
		fwd.Close()
	}
	second := <-res
	for _, r := range []result{first, second} {
		if r.toFwd {
			in = r.n
		} else {
			out = r.n
		}
	}
	switch {
	case ctx.Err() != nil:
		reason = ReasonDisconnected
	case first.err != nil:
		reason = "error: " + first.err.Error()
	case first.toFwd:
		reason = ReasonClientClosed
	default:
		reason = "forwarder closed"
	}
	return in, out, reason
}

// acceptedChannel hands an already accepted session channel to the
// bastion's session handler as if it were new, with its first request
// replayed.
type acceptedChannel struct {
	ch   ssh.Channel
	reqs <-chan *ssh.Request
}

func (a *acceptedChannel) Accept() (ssh.Channel, <-chan *ssh.Request, error) {
	return a.ch, a.reqs, nil
}
func (a *acceptedChannel) Reject(_ ssh.RejectionReason, msg string) error {
	if msg != "" {
		io.WriteString(a.ch.Stderr(), msg+"\n")
	}
	return a.ch.Close()
}
func (a *acceptedChannel) ChannelType() string { return "session" }
func (a *acceptedChannel) ExtraData() []byte   { return nil }

// replay returns a request stream that yields first, then the rest of
// reqs.
func replay(ctx context.Context, first *ssh.Request, reqs <-chan *ssh.Request) <-chan *ssh.Request {
	out := make(chan *ssh.Request)
	go func() {
		defer close(out)
		if first == nil {
			return
		}
		select {
		case out <- first:
		case <-ctx.Done():
			return
		}
		for r := range reqs {
			select {
			case out <- r:
			case <-ctx.Done():
				if r.WantReply {
					r.Reply(false, nil)
				}
			}
		}
	}()
	return out
}
