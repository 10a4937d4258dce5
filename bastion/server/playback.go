package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/bastion/menu"
	"github.com/postern-dev/postern/bastion/recordings"
	"github.com/postern-dev/postern/internal/asciicast"
	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/storage"
)

// Playback: the menu's recordings and play commands read the store that
// recordings are uploaded to. Who may see what is bastion/recordings'
// decision; this file binds it to the authenticated person, audits every
// viewing and every refusal, and runs the commands on the session channel
// as they write.
//
// Wiring (three lines elsewhere): Server has a field `play *playback`;
// initRecording sets it with newPlayback once the store is open; runMenu
// hands streaming commands to s.play.serve before its buffered path.

// playback is the bastion's view of the stored recordings.
type playback struct {
	catalog *recordings.Catalog
}

// newPlayback reads view_recordings from the roles; store is where the
// uploader puts recordings.
func newPlayback(cfg *config.Config, store storage.Store, now func() time.Time) *playback {
	return &playback{catalog: &recordings.Catalog{Store: store, Policy: recordings.NewPolicy(cfg.Roles), Now: now}}
}

// serve runs cmd if it is a menu command that streams (recordings, play):
// output goes to the channel as it is produced, the session's input can
// stop a playback, and the command is audited as runMenu audits the
// others. It reports whether it ran the command. A nil playback serves
// nothing, and the menu then says the bastion keeps no recordings.
func (pb *playback) serve(ctx context.Context, s *Server, st *connState, p *principal, sid string, ch ssh.Channel, cmd string, pty bool, env menu.Env) bool {
	if pb == nil || !menu.Streams(cmd) {
		return false
	}
	env.Recordings = &personRecordings{pb: pb, s: s, st: st, p: p, cmd: sanitizeCommand(cmd)}
	stdio := menu.Stdio{In: ch, Out: ch, Err: ch.Stderr(), Terminal: pty}
	if pty {
		stdio.Out, stdio.Err = crlfWriter{ch}, crlfWriter{ch.Stderr()}
	}
	code := menu.RunContext(ctx, cmd, stdio, env)

	e := st.baseEvent(audit.Command, p)
	e.SessionID, e.Method, e.ExitStatus = sid, "exec", &code
	e.Command = sanitizeCommand(cmd)
	if code != menu.ExitOK {
		e.Reason = "refused or failed: see the events before"
	}
	st.log.Info("bastion command", "session_id", sid, "person", p.id.KeyID, "command", e.Command, "exit_status", code)
	s.emit(ctx, e)
	sendExit(ch, code)
	return true
}

// personRecordings is menu.Recordings for one authenticated person.
type personRecordings struct {
	pb  *playback
	s   *Server
	st  *connState
	p   *principal
	cmd string
}

var _ menu.Recordings = (*personRecordings)(nil)

func (r *personRecordings) viewer() recordings.Viewer {
	return recordings.Viewer{Person: r.p.id.KeyID, Roles: r.p.id.Roles}
}

func (r *personRecordings) List(ctx context.Context, o recordings.ListOptions) (recordings.Listing, error) {
	l, err := r.pb.catalog.List(ctx, r.viewer(), o)
	if err != nil {
		r.st.log.Error("list recordings", "person", r.p.id.KeyID, "err", err)
	}
	return l, err
}

// Find audits before it returns: access.denied for a refusal, one
// recording.viewed per part otherwise. If the viewing cannot be audited,
// it is refused.
func (r *personRecordings) Find(ctx context.Context, id string, part int) (recordings.Session, error) {
	sess, why, err := r.pb.catalog.Find(ctx, r.viewer(), id, part)
	switch {
	case errors.Is(err, recordings.ErrNotAllowed):
		e := r.st.baseEvent(audit.AccessDenied, r.p)
		e.SessionID, e.Node, e.Method, e.Command = id, sess.Node, "play", r.cmd
		e.Reason = fmt.Sprintf("recording of %s's session: %v", personName(sess.Person), err)
		r.st.log.Warn("recording refused", "person", r.p.id.KeyID, "recorded_session", id, "recorded_person", sess.Person)
		r.s.emit(ctx, e)
		return sess, err
	case errors.Is(err, recordings.ErrNotFound), errors.Is(err, recordings.ErrBadID):
		return sess, err
	case err != nil:
		r.st.log.Error("find recording", "person", r.p.id.KeyID, "recorded_session", id, "err", err)
		return sess, err
	}
	for _, pt := range sess.Parts {
		e := r.st.baseEvent(audit.RecordingViewed, r.p)
		e.SessionID, e.Node, e.Recording, e.Method, e.Command = sess.ID, sess.Node, pt.Key, "play", r.cmd
		e.Reason = fmt.Sprintf("session of %s as %s; allowed: %s", personName(sess.Person), sess.Login, why)
		if err := r.s.audit.Emit(ctx, e); err != nil {
			r.st.log.Error("write audit event; playback refused", "event", e.Event, "err", err)
			return recordings.Session{}, fmt.Errorf("audit recording.viewed: %w", err)
		}
	}
	r.st.log.Info("recording viewed", "person", r.p.id.KeyID, "recorded_session", sess.ID, "recorded_person", sess.Person, "allowed", why)
	return sess, nil
}

func (r *personRecordings) Open(ctx context.Context, p recordings.Part) (*asciicast.Reader, io.Closer, error) {
	rd, cl, err := r.pb.catalog.Open(ctx, p)
	if err != nil {
		r.st.log.Error("open recording", "key", p.Key, "err", err)
	}
	return rd, cl, err
}

func personName(p string) string {
	if p == "" {
		return "an unnamed person"
	}
	return p
}

// crlfWriter turns bare line feeds into CRLF for a client's terminal in
// raw mode (recordings made without a terminal have bare ones).
type crlfWriter struct{ w io.Writer }

func (c crlfWriter) Write(p []byte) (int, error) {
	if _, err := c.w.Write(crlf(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}
