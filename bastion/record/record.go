package record

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/asciicast"
	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/sftpaudit"
	"github.com/postern-dev/postern/internal/sshrelay"
)

// Sink creates the file a recording is written to.
type Sink interface {
	Create(key string, meta map[string]string) (io.WriteCloser, error)
}

// Meta says whose session this is.
type Meta struct {
	SessionID  string
	Person     string
	Roles      []string
	Serial     uint64
	Login      string
	Node       string // the name asked for
	Target     string // host:port
	ClientAddr string
	Start      time.Time
}

// Options tune a Recorder.
type Options struct {
	RecordInput bool
	ExecLimit   int64
	// Emit writes an audit event (the caller fills writer fields).
	Emit   func(audit.Event)
	Now    func() time.Time
	Logger *slog.Logger
}

// Recorder records one relayed connection.
type Recorder struct {
	meta Meta
	opts Options
	sink Sink

	mu        sync.Mutex
	execBytes int64 // output of exec sessions recorded so far
	keys      []string
	wg        sync.WaitGroup
}

// New returns a Recorder for one connection.
func New(meta Meta, opts Options, sink Sink) *Recorder {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Emit == nil {
		opts.Emit = func(audit.Event) {}
	}
	return &Recorder{meta: meta, opts: opts, sink: sink}
}

// Keys returns the storage keys of the recordings made so far.
func (r *Recorder) Keys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.keys...)
}

// KeyFor is the storage key of session n of a connection.
func KeyFor(sessionID string, start time.Time, n int) string {
	return path.Join("recordings", start.UTC().Format("2006/01/02"), sessionID+"-"+strconv.Itoa(n)+".cast")
}

// Observer returns the relay observer that records into r.
func (r *Recorder) Observer() sshrelay.Observer {
	return sshrelay.Observer{
		Session: func(n int) sshrelay.SessionObserver {
			r.wg.Add(1)
			return &session{r: r, n: n}
		},
		Forward: r.forward,
	}
}

// Wait waits until every session's recording is closed.
func (r *Recorder) Wait() { r.wg.Wait() }

func (r *Recorder) event(name string) audit.Event {
	m := r.meta
	return audit.Event{Event: name, Person: m.Person, Roles: m.Roles, Serial: m.Serial, Login: m.Login,
		Node: m.Node, Target: m.Target, ClientAddr: m.ClientAddr, SessionID: m.SessionID}
}

func (r *Recorder) forward(f sshrelay.Forward) func(toNode, toClient int64, err error) {
	start := r.opts.Now()
	return func(in, out int64, err error) {
		e := r.event(audit.Port)
		e.Method = f.Kind
		e.Path = f.String()
		e.BytesIn, e.BytesOut = in, out
		e.DurationMS = r.opts.Now().Sub(start).Milliseconds()
		if f.Refused != "" {
			e.Reason = "refused: " + f.Refused
		}
		if err != nil {
			e.Error = err.Error()
		}
		r.opts.Emit(e)
	}
}

// session records one session channel.
type session struct {
	r *Recorder
	n int

	mu       sync.Mutex
	pty      *ptyReq
	kind     string // "shell", "exec", "subsystem"
	command  string
	cast     *asciicast.Writer
	file     io.WriteCloser
	key      string
	sinkErr  error
	sftp     *sftpaudit.Tracker
	out      int64
	trunc    bool
	status   *int
	signal   string
	started  time.Time
	finished bool
	// early holds node output that arrived before the relay told us the
	// node accepted the shell, exec or subsystem (the reply and the data
	// travel on different goroutines), up to maxEarly bytes.
	early  [][]byte
	earlyN int
}

// maxEarly bounds output held while a session's kind is not known yet.
const maxEarly = 1 << 20

type ptyReq struct {
	Term       string
	Cols, Rows uint32
	Width      uint32
	Height     uint32
	Modes      string
}

func (s *session) Request(name string, payload []byte, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch name {
	case "pty-req":
		var p ptyReq
		if ssh.Unmarshal(payload, &p) == nil && ok {
			s.pty = &p
		}
	case "window-change":
		var p struct{ Cols, Rows, Width, Height uint32 }
		if ssh.Unmarshal(payload, &p) == nil && s.cast != nil {
			s.note(s.cast.Resize(int(p.Cols), int(p.Rows)))
		}
	case "shell", "exec":
		if !ok || s.kind != "" {
			return
		}
		s.kind = name
		if name == "exec" {
			var p struct{ Command string }
			_ = ssh.Unmarshal(payload, &p)
			s.command = p.Command
		}
		s.open()
		s.flushEarly()
	case "subsystem":
		if !ok || s.kind != "" {
			return
		}
		var p struct{ Name string }
		_ = ssh.Unmarshal(payload, &p)
		s.kind, s.command = "subsystem", p.Name
		if p.Name == "sftp" {
			s.sftp = sftpaudit.New(s.sftpOp)
		}
		s.flushEarly()
	}
}

// open starts the asciicast for a shell or exec.
func (s *session) open() {
	r := s.r
	s.started = r.opts.Now()
	s.key = KeyFor(r.meta.SessionID, r.meta.Start, s.n)
	h := asciicast.Header{Command: s.command, Title: fmt.Sprintf("%s@%s (%s)", r.meta.Login, r.meta.Node, r.meta.Person)}
	if s.pty != nil {
		h.Width, h.Height = int(s.pty.Cols), int(s.pty.Rows)
		h.Env = map[string]string{"TERM": s.pty.Term}
	}
	meta := map[string]string{"session-id": r.meta.SessionID, "person": r.meta.Person, "node": r.meta.Node, "login": r.meta.Login}
	f, err := r.sink.Create(s.key, meta)
	if err != nil {
		s.note(err)
		return
	}
	w, err := asciicast.NewWriter(f, h, s.started)
	if err != nil {
		f.Close()
		s.note(err)
		return
	}
	w.Now = r.opts.Now
	s.file, s.cast = f, w
	r.mu.Lock()
	r.keys = append(r.keys, s.key)
	r.mu.Unlock()
}

// note records the first sink error; the session goes on unrecorded.
func (s *session) note(err error) {
	if err != nil && s.sinkErr == nil {
		s.sinkErr = err
		s.r.opts.Logger.Error("recording failed; the session goes on", "session_id", s.r.meta.SessionID, "err", err)
	}
}

func (s *session) ClientData(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sftp != nil {
		_, _ = s.sftp.ClientWriter().Write(p)
		return
	}
	if s.cast != nil && s.pty != nil && s.r.opts.RecordInput {
		s.note(s.cast.Input(p))
	}
}

func (s *session) NodeData(p []byte, _ bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kind == "" {
		if s.earlyN+len(p) <= maxEarly {
			s.early = append(s.early, append([]byte(nil), p...))
			s.earlyN += len(p)
		}
		return
	}
	s.nodeData(p)
}

// flushEarly records output held back before the session's kind was known.
func (s *session) flushEarly() {
	early := s.early
	s.early, s.earlyN = nil, 0
	for _, p := range early {
		s.nodeData(p)
	}
}

func (s *session) nodeData(p []byte) {
	if s.sftp != nil {
		_, _ = s.sftp.ServerWriter().Write(p)
		return
	}
	s.out += int64(len(p))
	if s.cast == nil {
		return
	}
	if s.pty == nil {
		// Without a terminal: bounded per connection.
		s.r.mu.Lock()
		room := s.r.opts.ExecLimit - s.r.execBytes
		take := min(int64(len(p)), max(room, 0))
		s.r.execBytes += take
		s.r.mu.Unlock()
		if take < int64(len(p)) {
			if take > 0 {
				s.note(s.cast.Output(p[:take]))
			}
			if !s.trunc {
				s.trunc = true
				s.note(s.cast.Mark(fmt.Sprintf("postern: output truncated at the %d-byte limit", s.r.opts.ExecLimit)))
			}
			return
		}
	}
	s.note(s.cast.Output(p))
}

func (s *session) Exit(status int, signal string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := status
	s.status, s.signal = &st, signal
	if s.cast != nil {
		label := "exit " + strconv.Itoa(status)
		if signal != "" {
			label = "killed by SIG" + signal
		}
		s.note(s.cast.Mark(label))
	}
}

func (s *session) Closed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished {
		return
	}
	s.finished = true
	defer s.r.wg.Done()
	if s.sftp != nil {
		s.sftp.Close()
	}
	if s.cast != nil {
		s.note(s.cast.Flush())
		s.note(s.file.Close())
	}
	if s.kind == "exec" || s.kind == "shell" {
		e := s.r.event(audit.Exec)
		if s.kind == "shell" {
			e.Event = audit.SessionRecorded
		}
		e.Command, e.Recording, e.Truncated, e.BytesOut = s.command, s.key, s.trunc, s.out
		e.ExitStatus = s.status
		if s.signal != "" {
			e.Reason = "signal " + s.signal
		}
		if s.pty != nil {
			e.Method = "pty"
		}
		if s.sinkErr != nil {
			e.Error = "recording incomplete: " + s.sinkErr.Error()
		}
		e.DurationMS = s.r.opts.Now().Sub(s.started).Milliseconds()
		s.r.opts.Emit(e)
	}
}

func (s *session) sftpOp(op sftpaudit.Op) {
	e := s.r.event(audit.SFTP)
	e.Op, e.Path, e.Path2, e.BytesIn, e.BytesOut, e.Error = op.Kind, op.Path, op.Target, op.BytesWrit, op.BytesRead, op.Error
	if op.Kind == sftpaudit.OpParseError {
		e.Reason = "sftp stream not understood; later operations are not itemised"
	}
	s.r.opts.Emit(e)
}

// Recovered is a spool file left by a bastion that stopped mid-session.
type Recovered interface {
	io.ReaderAt
	io.Writer
}

// CloseRecovered ends a recording cut short by a crash: it completes a
// partial last line and appends a marker at the time of the last event,
// so the file stays valid asciicast and says what happened.
func CloseRecovered(r Recovered, size int64) error {
	tail := make([]byte, min(size, 64<<10))
	if _, err := r.ReadAt(tail, size-int64(len(tail))); err != nil && err != io.EOF {
		return err
	}
	last := 0.0
	lines := strings.Split(string(tail), "\n")
	complete := lines[:len(lines)-1] // the part after the last newline is partial
	for i := len(complete) - 1; i >= 0; i-- {
		var ev []json.RawMessage
		if json.Unmarshal([]byte(complete[i]), &ev) == nil && len(ev) == 3 {
			_ = json.Unmarshal(ev[0], &last)
			break
		}
	}
	var b strings.Builder
	if size > 0 && !strings.HasSuffix(string(tail), "\n") {
		b.WriteString("\n") // the partial line stays as evidence; readers skip it
	}
	fmt.Fprintf(&b, "[%.6f, %q, %q]\n", last, asciicast.Marker, "postern: recording cut short (the bastion stopped mid-session)")
	_, err := io.WriteString(r, b.String())
	return err
}
