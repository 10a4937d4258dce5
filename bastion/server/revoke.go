package server

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/bastion/revocation"
	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/kubeproto"
)

// Revocation timing.
const (
	// firstKRLTimeout bounds the fetch of the first list before serving.
	firstKRLTimeout = 3 * time.Second
	// krlRequestTimeout bounds one request to the signer.
	krlRequestTimeout = 10 * time.Second
	// noticeTimeout bounds telling session channels before the connection
	// is cut.
	noticeTimeout = time.Second
)

// ErrRevoked refuses a certificate the KRL revokes (errors.Is also matches
// revocation.ErrRevoked and krl.ErrRevoked).
var ErrRevoked = revocation.ErrRevoked

// newWatcher builds the KRL watcher for [bastion] revocation, nil when off.
func newWatcher(b config.Bastion, src revocation.Source, s *Server) *revocation.Watcher {
	if src == nil {
		switch b.Revocation {
		case config.RevocationSigner:
			src = revocation.NewHTTPSource(b.SignerURL, b.SignerCA, krlRequestTimeout)
		case config.RevocationFile:
			src = &revocation.FileSource{Path: b.KRLFile}
		default:
			return nil
		}
	}
	return &revocation.Watcher{
		Source:   src,
		Interval: b.RevocationPoll.Duration,
		MaxStale: b.RevocationMaxStale.Duration,
		OnChange: s.sweepRevoked,
		Logger:   s.log.With("component", "revocation"),
		Now:      s.now,
	}
}

// startRevocation fetches the first list (briefly: a signer that is down
// must not keep the bastion from serving) and polls until the returned
// function is called.
func (s *Server) startRevocation(ctx context.Context) (stop func()) {
	if s.krl == nil {
		s.log.Warn("revocation is off: the bastion does not enforce the KRL; set [bastion] revocation")
		return func() {}
	}
	fctx, cancel := context.WithTimeout(ctx, firstKRLTimeout)
	if err := s.krl.Refresh(fctx); err != nil {
		s.log.Warn("no revocation list yet: serving without one until the next refresh", "err", err)
	}
	cancel()
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); s.krl.Run(rctx) }()
	return func() { cancel(); <-done }
}

// checkRevoked is the authenticator's revocation check: nil when
// revocation is off.
func (s *Server) checkRevoked(pub ssh.PublicKey) error {
	if s.krl == nil {
		return nil
	}
	return s.krl.Check(pub)
}

// sweepRevoked ends everything live that the new list revokes.
func (s *Server) sweepRevoked(cur, prev *revocation.List) {
	ended := s.revs.Sweep(func(c *ssh.Certificate) error { return cur.Check(c) })
	for _, e := range ended {
		s.log.Info("revocation: ending", "kind", e.Kind, "id", e.ID, "person", e.Cert.KeyId, "serial", e.Cert.Serial,
			"generation", cur.Generation, "reason", e.Cause.Error())
	}
}

// Revocations is the registry of everything live that a revocation must
// end: every authenticated SSH connection (track). What runs on a
// connection (hops, recording relays, kube channels, menu commands) ends
// with it; those that can tell the person why register a notice with
// onRevoke. Other holders may join with Add and remove themselves when
// they end.
func (s *Server) Revocations() *revocation.Registry { return &s.revs }

// revocationBanner is what a refused person is shown while authenticating.
func revocationBanner(err error) error {
	msg := revocation.Message + "\r\n"
	if errors.Is(err, revocation.ErrStale) {
		msg = "postern: the bastion cannot confirm access right now (revocation list out of date); try again later\r\n"
	}
	return &ssh.BannerError{Err: err, Message: msg}
}

// track registers an authenticated connection for revocation, then checks
// its certificate against the list in force: registering first means a
// list that arrives meanwhile either is seen here or sweeps the
// connection.
func (st *connState) track(p *principal) error {
	remove := st.srv.revs.Add(revocation.Entry{Cert: p.cert, Kind: "ssh", ID: st.id, End: st.revoke})
	if err := st.srv.checkRevoked(p.cert); err != nil {
		remove()
		return err
	}
	st.mu.Lock()
	st.untrack = remove
	st.mu.Unlock()
	return nil
}

// revoke ends the connection because its certificate was revoked: session
// channels that asked to be told are told, then the connection is closed.
// Every session.end of the connection then carries reason "revoked" (see
// revokedEvent).
func (st *connState) revoke(cause error) {
	st.mu.Lock()
	if st.revokedBy != nil {
		st.mu.Unlock()
		return
	}
	st.revokedBy = cause
	notices := make([]func(string), 0, len(st.notices))
	for _, n := range st.notices {
		notices = append(notices, n)
	}
	active := st.active
	var person string
	var serial uint64
	if st.authed != nil {
		person, serial = st.authed.id.KeyID, st.authed.id.Serial
	}
	st.mu.Unlock()
	st.log.Warn("access revoked: closing connection", "person", person, "serial", serial,
		"open_channels", active, "reason", cause.Error())
	if len(notices) > 0 {
		var wg sync.WaitGroup
		for _, n := range notices {
			wg.Add(1)
			go func() { defer wg.Done(); n(revocation.Message) }()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(noticeTimeout):
			st.log.Debug("revocation notices not all delivered in time")
		}
	}
	st.raw.Close()
}

// onRevoke registers fn to be called with the message for the person when
// the connection is revoked, before it is closed; fn should write it and
// return promptly. The returned function unregisters fn. Session channels
// the bastion terminates (recording relays) use it with channelNotice.
func (st *connState) onRevoke(fn func(msg string)) (remove func()) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.notices == nil {
		st.notices = map[*noticeKey]func(string){}
	}
	k := new(noticeKey)
	st.notices[k] = fn
	return func() {
		st.mu.Lock()
		delete(st.notices, k)
		st.mu.Unlock()
	}
}

type noticeKey struct{ _ byte }

// tellKubeClientOnRevoke makes a revocation of the connection send
// kubeproto.RevokedRequest on it before it is closed (once per connection,
// however many kube channels it carries): kube-exec then stops its
// command and does not reconnect, even when no channel is open at that
// moment.
func (st *connState) tellKubeClientOnRevoke(conn ssh.Conn) {
	st.mu.Lock()
	told := st.kubeClient
	st.kubeClient = true
	st.mu.Unlock()
	if told {
		return
	}
	st.onRevoke(func(msg string) {
		// The reply (or the connection's end) is what the notice waits
		// for: kube-exec has taken note before the connection is closed.
		_, _, _ = conn.SendRequest(kubeproto.RevokedRequest, true, ssh.Marshal(kubeproto.Revoked{Message: msg}))
	})
}

// channelNotice tells a session channel's client: the message on stderr
// (CRLF with a terminal), exit status 255 like ssh's own fatal errors,
// and the channel closed.
func channelNotice(ch ssh.Channel, pty bool) func(string) {
	return func(msg string) {
		eol := "\n"
		if pty {
			eol = "\r\n"
		}
		_, _ = io.WriteString(ch.Stderr(), eol+msg+eol)
		sendExit(ch, 255)
	}
}

// revokedCause returns why the connection was revoked, nil if it was not.
func (st *connState) revokedCause() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.revokedBy
}

// revokedEvent makes every session.end of a revoked connection name the
// revocation: reason "revoked", the list's entry in error. Handlers
// compute their reason from how the copy ended ("client disconnected");
// emit rewrites it here so that every kind of session gets it alike.
func revokedEvent(ctx context.Context, e *audit.Event) {
	if e.Event != audit.SessionEnd || ctx == nil {
		return
	}
	st, _ := ctx.Value(connStateKey{}).(*connState)
	if st == nil {
		return
	}
	if cause := st.revokedCause(); cause != nil {
		e.Reason, e.Error = revocation.Reason, cause.Error()
	}
}

// authedPrincipal returns the connection's verified identity, nil before
// authentication.
func (st *connState) authedPrincipal() *principal {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.authed
}
