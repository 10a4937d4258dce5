package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/bastion/authz"
	"github.com/postern-dev/postern/internal/audit"
)

// directTCPIP is the payload of a direct-tcpip channel open (RFC 4254 7.2).
type directTCPIP struct {
	Host     string
	Port     uint32
	OrigHost string
	OrigPort uint32
}

// handleDirectTCPIP authorises and forwards one hop (ssh -J, ssh -W, -L).
func (s *Server) handleDirectTCPIP(_ *gliderssh.Server, conn *ssh.ServerConn, nc ssh.NewChannel, ctx gliderssh.Context) {
	st := stateOf(ctx)
	p := st.identity(conn)
	if p == nil {
		nc.Reject(ssh.Prohibited, "not authenticated")
		return
	}
	var req directTCPIP
	if err := ssh.Unmarshal(nc.ExtraData(), &req); err != nil {
		nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	if isForwarder(p) {
		s.refuseForwarderChannel(ctx, st, p, nc, net.JoinHostPort(sanitizeCommand(req.Host), strconv.FormatUint(uint64(req.Port), 10)))
		return
	}
	if !st.beginChannel() {
		nc.Reject(ssh.ConnectionFailed, "postern: the bastion is shutting down")
		return
	}
	defer st.endChannel()
	sid := newID()
	log := st.log.With("session_id", sid, "person", p.id.KeyID)

	dec, err := s.policy.Decide(ctx, p.id.Roles, req.Host, req.Port)
	if err != nil {
		var den *authz.Denial
		if !errors.As(err, &den) {
			den = &authz.Denial{Err: authz.ErrNotAllowed, Target: "?", Detail: err.Error()}
		}
		e := st.baseEvent(audit.AccessDenied, p)
		e.SessionID, e.Method, e.Target = sid, "direct-tcpip", den.Target
		e.Reason, e.Error = den.Err.Error(), den.Detail
		log.Warn("hop refused", "target", den.Target, "reason", den.Err.Error(), "detail", den.Detail)
		s.emit(ctx, e)
		nc.Reject(ssh.Prohibited, den.UserMessage())
		return
	}
	target := dec.Target.String()
	log = log.With("target", target)

	tcp, err := s.dial(ctx, dec)
	if err != nil {
		e := st.baseEvent(audit.ConnectFailed, p)
		e.SessionID, e.Method, e.Target, e.Node, e.Rule = sid, "direct-tcpip", target, dec.Node, dec.Rule
		e.Error = err.Error()
		log.Warn("connect to node failed", "err", err)
		s.emit(ctx, e)
		nc.Reject(ssh.ConnectionFailed, "postern: cannot connect to "+target)
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		tcp.Close()
		log.Warn("accept channel", "err", err)
		return
	}
	go ssh.DiscardRequests(reqs)

	recorded, input := s.recordingFor(p, dec)
	method := "direct-tcpip"
	if recorded {
		method = "record"
	}
	start := s.now()
	e := st.baseEvent(audit.SessionStart, p)
	e.SessionID, e.Method, e.Target, e.Node, e.Rule = sid, method, target, dec.Node, dec.Rule
	e.Resolved = tcp.RemoteAddr().String()
	log.Info("session start", "resolved", e.Resolved, "rule", dec.Rule, "mode", method)
	s.emit(ctx, e)

	var in, out int64
	var reason string
	if recorded {
		in, out, reason = s.recordHop(ctx, st, p, dec, req.Host, ch, tcp, sid, input, log)
	} else {
		in, out, reason = s.splice(ctx, ch, tcp)
	}

	dur := s.now().Sub(start)
	e.Event, e.Time = audit.SessionEnd, time.Time{}
	e.BytesIn, e.BytesOut, e.DurationMS, e.Reason = in, out, dur.Milliseconds(), reason
	log.Info("session end", "bytes_in", in, "bytes_out", out, "duration", dur.Round(time.Millisecond).String(), "reason", reason)
	s.emit(context.WithoutCancel(ctx), e)
}

// dial connects to the first reachable checked address.
func (s *Server) dial(ctx context.Context, dec authz.Decision) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: s.cfg.DialTimeout.Duration, KeepAlive: 30 * time.Second}
	var errs []error
	for _, a := range dec.Addrs {
		c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(a, dec.Target.Port).String())
		if err == nil {
			return c.(*net.TCPConn), nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// Close reasons of a forwarded session.
const (
	ReasonClientClosed = "client closed"
	ReasonNodeClosed   = "node closed"
	ReasonDisconnected = "client disconnected"
	ReasonShutdown     = "shutdown"
)

// splice copies bytes both ways with half-close until both directions are
// done or the connection ends. It returns bytes client→node, node→client
// and why the session ended.
//
// An idle hop is mostly goroutine stacks, so splice uses one goroutine
// besides the caller's: node→client is copied here, client→node in a
// goroutine, and the end of the SSH connection is watched with
// context.AfterFunc (no goroutine until it fires).
func (s *Server) splice(ctx context.Context, ch ssh.Channel, tcp *net.TCPConn) (in, out int64, reason string) {
	type result struct {
		n      int64
		err    error
		toNode bool
	}
	var (
		mu   sync.Mutex
		done []result // in the order the directions ended
		cut  bool
	)
	finish := func(r result) {
		mu.Lock()
		done = append(done, r)
		mu.Unlock()
		if r.err != nil {
			// A broken direction ends the session.
			tcp.Close()
			ch.Close()
		}
	}
	// The SSH connection ending (client gone, shutdown) must unblock a
	// copy waiting on a quiet node.
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		cut = true
		mu.Unlock()
		tcp.Close()
		ch.Close()
	})
	defer stop()
	toNode := make(chan struct{})
	go func() {
		defer close(toNode)
		n, err := copyBuffered(tcp, ch)
		// Noted before the half-close: the node cannot answer the EOF
		// (and end its direction) before this direction is on record.
		finish(result{n: n, err: err, toNode: true})
		tcp.CloseWrite()
	}()
	n, err := copyBuffered(ch, withQuickAck(tcp))
	finish(result{n: n, err: err})
	ch.CloseWrite()
	<-toNode
	tcp.Close()
	ch.Close()

	mu.Lock()
	first, wasCut := done[0], cut
	for _, r := range done {
		if r.toNode {
			in = r.n
		} else {
			out = r.n
		}
	}
	mu.Unlock()
	switch {
	case s.forced.Load():
		reason = ReasonShutdown
	case wasCut:
		reason = ReasonDisconnected
	case first.err != nil:
		reason = "error: " + first.err.Error()
	case first.toNode:
		reason = ReasonClientClosed
	default:
		reason = ReasonNodeClosed
	}
	return in, out, reason
}

// bufPool holds copy buffers: 32 KiB is the SSH maximum packet payload.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// smallBuf is what copyBuffered waits on: enough for a keystroke or a
// line of output.
const smallBuf = 512

// copyBuffered is io.Copy with pooled buffers and without the
// ReaderFrom/WriterTo detours. A read ending in EOF is a clean finish.
//
// It waits on a small buffer and takes a 32 KiB one from the pool only
// once a read fills the small one, and gives it back after two reads in
// a row small enough for the small one: a hop idle or typing holds 512
// bytes per direction, one moving bulk data a pooled 32 KiB (the
// benchmarks' memory per idle session). One short read in the middle of
// a download (the node briefly behind) keeps the big buffer: dropping it
// there made the next reads, and the SSH packets they become, 512 bytes.
func copyBuffered(dst io.Writer, src io.Reader) (int64, error) {
	small := make([]byte, smallBuf)
	buf := small
	var bp *[]byte
	defer func() {
		if bp != nil {
			bufPool.Put(bp)
		}
	}()
	var n int64
	smallReads := 0 // in a row, with the big buffer
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
			if nw != nr {
				return n, io.ErrShortWrite
			}
		}
		switch {
		case bp == nil && nr == len(small):
			bp = bufPool.Get().(*[]byte)
			buf = *bp
		case bp != nil && nr <= len(small):
			if smallReads++; smallReads == 2 {
				bufPool.Put(bp)
				bp, buf = nil, small
				smallReads = 0
			}
		case bp != nil:
			smallReads = 0
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}
