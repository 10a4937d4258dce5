package server

import (
	"bytes"
	"context"
	"io"

	gliderssh "github.com/gliderlabs/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/bastion/menu"
	"github.com/postern-dev/postern/internal/audit"
)

// handleSession serves a session on the bastion itself: exec runs a menu
// command, shell prints the help; everything else is refused. It replaces
// gliderlabs' default session handler, which would accept agent
// forwarding.
func (s *Server) handleSession(_ *gliderssh.Server, conn *ssh.ServerConn, nc ssh.NewChannel, ctx gliderssh.Context) {
	st := stateOf(ctx)
	p := st.identity(conn)
	if p == nil {
		nc.Reject(ssh.Prohibited, "not authenticated")
		return
	}
	if !st.beginChannel() {
		nc.Reject(ssh.ConnectionFailed, "postern: the bastion is shutting down")
		return
	}
	defer st.endChannel()
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	sid := newID()
	log := st.log.With("session_id", sid, "person", p.id.KeyID)
	pty := false
	for {
		var req *ssh.Request
		select {
		case req = <-reqs:
		case <-ctx.Done():
			return
		}
		if req == nil {
			return
		}
		switch req.Type {
		case "pty-req":
			pty = true
			req.Reply(true, nil)
		case "window-change":
			req.Reply(pty, nil)
		case "env":
			req.Reply(false, nil)
		case "shell", "exec":
			var cmd struct{ Command string }
			if req.Type == "exec" {
				if err := ssh.Unmarshal(req.Payload, &cmd); err != nil {
					req.Reply(false, nil)
					continue
				}
			}
			req.Reply(true, nil)
			go ssh.DiscardRequests(reqs)
			s.runMenu(ctx, st, p, sid, ch, req.Type == "shell", cmd.Command, pty)
			return
		case "subsystem", "x11-req", "auth-agent-req@openssh.com":
			what := req.Type
			if req.Type == "subsystem" {
				var sub struct{ Name string }
				_ = ssh.Unmarshal(req.Payload, &sub)
				what = "subsystem " + sub.Name
			}
			req.Reply(false, nil)
			e := st.baseEvent(audit.AccessDenied, p)
			e.SessionID, e.Method, e.Reason = sid, req.Type, what+" is not available on the bastion"
			if req.Type == "subsystem" {
				e.Command = what
			}
			log.Warn("session request refused", "request", what)
			s.emit(ctx, e)
			if req.Type == "subsystem" {
				io.WriteString(ch.Stderr(), "postern: no subsystems on the bastion; to reach a node use: sftp -J "+s.cfg.Name+" NODE\n")
				sendExit(ch, 1)
				return
			}
		default:
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
}

// runMenu runs one menu command (or the shell greeting) and exits.
func (s *Server) runMenu(ctx context.Context, st *connState, p *principal, sid string, ch ssh.Channel, shell bool, cmd string, pty bool) {
	// A long command (play) cut by revocation tells the person why.
	defer st.onRevoke(channelNotice(ch, pty))()
	rules, unknown := s.policy.Rules(p.id.Roles)
	env := menu.Env{
		Identity:     p.id,
		ClientAddr:   st.remote.String(),
		BastionID:    s.cfg.ID,
		BastionName:  s.cfg.Name,
		Now:          s.now(),
		Rules:        rules,
		UnknownRoles: unknown,
		Reachable:    s.policy.Reachable(p.id.Roles),
	}
	if !shell && s.play.serve(ctx, s, st, p, sid, ch, cmd, pty, env) {
		return
	}
	var stdout, stderr bytes.Buffer
	code := menu.ExitOK
	if shell {
		menu.Shell(&stdout, env)
	} else {
		code = menu.Run(cmd, &stdout, &stderr, env)
	}
	out, errOut := stdout.Bytes(), stderr.Bytes()
	if pty {
		out, errOut = crlf(out), crlf(errOut)
	}
	ch.Write(out)
	ch.Stderr().Write(errOut)

	e := st.baseEvent(audit.Command, p)
	e.SessionID, e.Method, e.ExitStatus = sid, "exec", &code
	e.Command = sanitizeCommand(cmd)
	if shell {
		e.Method = "shell"
	}
	if code != menu.ExitOK {
		e.Reason = "refused: not a bastion command"
	}
	st.log.Info("bastion command", "session_id", sid, "person", p.id.KeyID, "command", e.Command, "exit_status", code)
	s.emit(ctx, e)
	sendExit(ch, code)
}

// sendExit reports the exit status and closes the channel.
func sendExit(ch ssh.Channel, code int) {
	status := struct{ Status uint32 }{uint32(code)}
	_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(&status))
	_ = ch.CloseWrite()
	_ = ch.Close()
}

func crlf(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

// sanitizeCommand bounds and quotes an untrusted command for logs.
func sanitizeCommand(c string) string {
	if len(c) > 200 {
		c = c[:200] + "…"
	}
	var b bytes.Buffer
	for _, r := range c {
		if r < 0x20 || r == 0x7f {
			b.WriteString("?")
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
