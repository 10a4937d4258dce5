package server

import (
	"errors"

	gliderssh "github.com/gliderlabs/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/audit"
)

// refuseChannel rejects channel types the bastion does not offer
// (direct-streamlocal, x11 and anything unknown) and audits it.
func (s *Server) refuseChannel(_ *gliderssh.Server, conn *ssh.ServerConn, nc ssh.NewChannel, ctx gliderssh.Context) {
	st := stateOf(ctx)
	p := st.identity(conn)
	kind := sanitizeCommand(nc.ChannelType())
	nc.Reject(ssh.Prohibited, "postern: "+kind+" channels are not allowed")
	if p == nil {
		return
	}
	e := st.baseEvent(audit.AccessDenied, p)
	e.Method, e.Reason = kind, "channel type not allowed"
	st.log.Warn("channel refused", "type", kind, "person", p.id.KeyID)
	s.emit(ctx, e)
}

// refuseGlobal rejects remote forwarding requests (ssh -R) and audits them.
func (s *Server) refuseGlobal(ctx gliderssh.Context, _ *gliderssh.Server, req *ssh.Request) (bool, []byte) {
	st := stateOf(ctx)
	conn, _ := ctx.Value(gliderssh.ContextKeyConn).(*ssh.ServerConn)
	if st == nil || conn == nil {
		return false, nil
	}
	p := st.identity(conn)
	if p == nil {
		return false, nil
	}
	if req.Type == "cancel-tcpip-forward" {
		return false, nil
	}
	var fwd struct {
		Addr string
		Port uint32
	}
	_ = ssh.Unmarshal(req.Payload, &fwd)
	e := st.baseEvent(audit.AccessDenied, p)
	e.Method, e.Reason = req.Type, "remote forwarding is not allowed"
	e.Target = sanitizeCommand(fwd.Addr)
	st.log.Warn("remote forwarding refused", "request", req.Type, "person", p.id.KeyID)
	s.emit(ctx, e)
	return false, nil
}

// ErrForwarderChannel refuses a channel a forwarder's connection opens: a
// forwarder only answers the kube channels the bastion opens to it; it
// never gets a session on the bastion nor a hop through it.
var ErrForwarderChannel = errors.New("a kube forwarder's connection opens no channels")

// refuseForwarderChannel rejects and audits a channel opened by a
// forwarder; target is the hop asked for, if any.
func (s *Server) refuseForwarderChannel(ctx gliderssh.Context, st *connState, p *principal, nc ssh.NewChannel, target string) {
	kind := sanitizeCommand(nc.ChannelType())
	nc.Reject(ssh.Prohibited, "postern: "+ErrForwarderChannel.Error())
	e := st.baseEvent(audit.AccessDenied, p)
	e.Method, e.Target, e.Reason = kind, target, ErrForwarderChannel.Error()
	st.log.Warn("forwarder channel refused", "type", kind, "target", target, "forwarder", p.id.KeyID)
	s.emit(ctx, e)
}
