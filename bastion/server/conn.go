package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/sshcert"
)

// maxRefusalEvents bounds auth.failed events per connection.
const maxRefusalEvents = 4

type connStateKey struct{}

// refusal is one refused credential.
type refusal struct {
	keyFP string
	cert  *ssh.Certificate
	err   error
}

// connState is what the bastion tracks about one TCP connection, from
// accept to close.
type connState struct {
	srv    *Server
	id     string
	remote net.Addr
	raw    net.Conn
	log    *slog.Logger
	start  time.Time
	timer  *time.Timer

	mu        sync.Mutex
	login     string
	refusals  []refusal
	methods   []string // other methods tried and refused
	authed    *principal
	active    int
	closeOnce sync.Once
	// Revocation (revoke.go): why the connection was revoked, who is to be
	// told, and how to leave the registry.
	revokedBy error
	notices   map[*noticeKey]func(string)
	untrack   func()
	// kubeClient: the connection carried a kube channel, so kube-exec is
	// told of a revocation (tellKubeClientOnRevoke).
	kubeClient bool
}

// stateOf returns the connection state stored by newConn.
func stateOf(ctx gliderssh.Context) *connState {
	st, _ := ctx.Value(connStateKey{}).(*connState)
	return st
}

// newConn is gliderlabs' ConnCallback: it registers the connection and
// arms the handshake timeout.
func (s *Server) newConn(ctx gliderssh.Context, c net.Conn) net.Conn {
	if !proxyHandshake(c) {
		return nil // refused, logged and counted by the proxy listener
	}
	if s.closing.Load() {
		s.metrics.refused.Inc(refusedShutdown)
		c.Close()
		return nil
	}
	st := &connState{srv: s, id: newID(), remote: c.RemoteAddr(), raw: c, start: s.now()}
	st.log = s.log.With("conn_id", st.id, "client", c.RemoteAddr().String())
	ctx.SetValue(connStateKey{}, st)
	s.mu.Lock()
	s.conns[st] = struct{}{}
	s.mu.Unlock()
	st.timer = time.AfterFunc(s.cfg.HandshakeTimeout.Duration, func() {
		st.mu.Lock()
		authed := st.authed != nil
		st.mu.Unlock()
		if !authed {
			st.log.Info("handshake timeout: closing connection")
			c.Close()
		}
	})
	return &trackedConn{Conn: withQuickAck(c), st: st}
}

// trackedConn reports the end of the connection.
type trackedConn struct {
	net.Conn
	st *connState
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.st.closed()
	return err
}

// closed runs once when the connection ends: it unregisters it and audits
// refused credentials of connections that never authenticated.
func (st *connState) closed() {
	st.closeOnce.Do(func() {
		st.timer.Stop()
		st.srv.mu.Lock()
		delete(st.srv.conns, st)
		st.srv.mu.Unlock()
		st.mu.Lock()
		authed, refusals, methods, login, untrack := st.authed, st.refusals, st.methods, st.login, st.untrack
		st.mu.Unlock()
		if untrack != nil {
			untrack()
		}
		if authed != nil {
			st.log.Debug("connection closed", "person", authed.id.KeyID)
			return
		}
		st.auditRefusals(refusals, methods, login)
	})
}

// auditRefusals writes auth.failed: one event per refused certificate (at
// most maxRefusalEvents), or one for the connection when no certificate
// was refused but something else was (plain keys, passwords, …).
func (st *connState) auditRefusals(refusals []refusal, methods []string, login string) {
	base := audit.Event{Event: audit.AuthFailed, ClientAddr: st.remote.String(), ConnID: st.id, Login: login}
	n := 0
	for _, r := range refusals {
		if r.cert == nil || n == maxRefusalEvents {
			continue
		}
		n++
		e := base
		e.Method = "publickey"
		e.Person = r.cert.KeyId
		e.Serial = r.cert.Serial
		e.Principals = r.cert.ValidPrincipals
		e.Roles = sshcert.SplitList(r.cert.Extensions[sshcert.ExtRoles])
		e.KeyFP = r.keyFP
		e.Reason = r.err.Error()
		st.log.Warn("certificate refused", "person", r.cert.KeyId, "serial", r.cert.Serial, "reason", e.Reason)
		st.srv.emit(context.Background(), e)
	}
	if n > 0 || (len(refusals) == 0 && len(methods) == 0) {
		return
	}
	e := base
	switch {
	case len(refusals) > 0:
		e.Method = "publickey"
		e.KeyFP = refusals[0].keyFP
		e.Reason = refusals[0].err.Error()
		if len(refusals) > 1 {
			e.Error = "and " + strconv.Itoa(len(refusals)-1) + " more keys refused"
		}
	default:
		e.Method = methods[len(methods)-1]
		e.Reason = "no certificate offered: only user certificates are accepted"
		if e.Method != "none" {
			e.Reason = "method " + e.Method + " not allowed: only user certificates are accepted"
		}
	}
	st.log.Warn("authentication refused", "method", e.Method, "reason", e.Reason)
	st.srv.emit(context.Background(), e)
}

// serverConfig is gliderlabs' ServerConfigCallback: the x/crypto config for
// one connection, with its authentication callbacks bound to the
// connection's state.
func (s *Server) serverConfig(ctx gliderssh.Context) *ssh.ServerConfig {
	st := stateOf(ctx)
	cfg := &ssh.ServerConfig{
		Config:       ssh.Config{KeyExchanges: KeyExchanges},
		MaxAuthTries: maxAuthTries,
		// gliderlabs sets NoClientAuth because none of its own handlers is
		// set; this callback keeps "none" refused.
		NoClientAuthCallback: func(ssh.ConnMetadata) (*ssh.Permissions, error) {
			return nil, errors.New("authentication required")
		},
	}
	if st == nil { // cannot happen: newConn runs first
		cfg.PublicKeyCallback = func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) {
			return nil, errors.New("no connection state")
		}
		return cfg
	}
	cfg.PublicKeyCallback = st.publicKey
	cfg.VerifiedPublicKeyCallback = st.verified
	cfg.AuthLogCallback = st.authLog
	return cfg
}

// publicKey runs for every key offered, signed or not. It must not record
// identity anywhere but in the Permissions it returns.
func (st *connState) publicKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	perms, cert, err := st.srv.auth.check(key, addrOf(meta.RemoteAddr()))
	if err != nil {
		fp := ssh.FingerprintSHA256(key)
		if cert != nil {
			fp = ssh.FingerprintSHA256(cert.Key)
		}
		st.mu.Lock()
		st.login = meta.User()
		dup := false
		for _, r := range st.refusals {
			if r.keyFP == fp && (r.cert == nil) == (cert == nil) {
				dup = true
			}
		}
		if !dup && len(st.refusals) < 16 {
			st.refusals = append(st.refusals, refusal{keyFP: fp, cert: cert, err: err})
		}
		st.mu.Unlock()
		return nil, err
	}
	return perms, nil
}

// verified runs once the client proved it holds key. perms are the ones
// publicKey returned for this very key.
func (st *connState) verified(meta ssh.ConnMetadata, key ssh.PublicKey, perms *ssh.Permissions, _ string) (*ssh.Permissions, error) {
	if perms == nil || perms.ExtraData == nil {
		return nil, errors.New("no identity for verified key")
	}
	p, ok := perms.ExtraData[principalKey{}].(*principal)
	if !ok || !bytes.Equal(p.cert.Marshal(), key.Marshal()) {
		return nil, errors.New("identity does not belong to the verified key")
	}
	if err := st.track(p); err != nil {
		// Revoked between the key check and the signature: refused and
		// audited like any refused certificate.
		st.mu.Lock()
		st.login = meta.User()
		if len(st.refusals) < 16 {
			st.refusals = append(st.refusals, refusal{keyFP: p.keyFP, cert: p.cert, err: err})
		}
		st.mu.Unlock()
		return nil, revocationBanner(err)
	}
	p.verified = true
	st.mu.Lock()
	st.authed = p
	st.login = meta.User()
	st.mu.Unlock()
	st.timer.Stop()
	st.log.Info("authenticated", "person", p.id.KeyID, "serial", p.id.Serial, "roles", p.id.Roles, "login", meta.User())
	return perms, nil
}

// authLog notes methods other than publickey, which the bastion never
// accepts ("none" included: a client with no certificate sends only that),
// for the connection's auth.failed event.
func (st *connState) authLog(meta ssh.ConnMetadata, method string, err error) {
	if err == nil || method == "publickey" {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.login = meta.User()
	for _, m := range st.methods {
		if m == method {
			return
		}
	}
	st.methods = append(st.methods, method)
}

// beginChannel counts an open channel; false when shutting down.
func (st *connState) beginChannel() bool {
	if st.srv.closing.Load() {
		return false
	}
	st.mu.Lock()
	st.active++
	st.mu.Unlock()
	st.srv.sessions.Add(1)
	return true
}

// endChannel uncounts a channel; during shutdown the last one closes the
// connection.
func (st *connState) endChannel() {
	st.mu.Lock()
	st.active--
	idle := st.active == 0
	st.mu.Unlock()
	st.srv.sessions.Done()
	if idle && st.srv.closing.Load() {
		st.raw.Close()
	}
}

func (st *connState) activeChannels() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.active
}

func (st *connState) closeIfIdle() {
	if st.activeChannels() == 0 {
		st.raw.Close()
	}
}

// identity returns the verified principal of an authenticated connection
// from its Permissions, closing the connection if there is none.
func (st *connState) identity(conn *ssh.ServerConn) *principal {
	p := principalOf(conn.Permissions)
	if p == nil {
		st.log.Error("connection without a verified identity: closing")
		conn.Close()
	}
	return p
}

// baseEvent fills the fields every event about this connection carries.
func (st *connState) baseEvent(name string, p *principal) audit.Event {
	e := audit.Event{Event: name, ClientAddr: st.remote.String(), ConnID: st.id}
	st.mu.Lock()
	e.Login = st.login
	st.mu.Unlock()
	if p != nil {
		e.Person = p.id.KeyID
		e.Roles = p.id.Roles
		e.Serial = p.id.Serial
		e.KeyFP = p.keyFP
	}
	return e
}
