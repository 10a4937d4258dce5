package sftpaudit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// Limits.
const (
	MaxPacket  = 512 << 10
	MaxPending = 4096
	MaxHandles = 4096
)

// SFTP v3 packet types.
const (
	fxpInit     = 1
	fxpVersion  = 2
	fxpOpen     = 3
	fxpClose    = 4
	fxpRead     = 5
	fxpWrite    = 6
	fxpLstat    = 7
	fxpFstat    = 8
	fxpSetstat  = 9
	fxpFsetstat = 10
	fxpOpendir  = 11
	fxpReaddir  = 12
	fxpRemove   = 13
	fxpMkdir    = 14
	fxpRmdir    = 15
	fxpRealpath = 16
	fxpStat     = 17
	fxpRename   = 18
	fxpReadlink = 19
	fxpSymlink  = 20
	fxpStatus   = 101
	fxpHandle   = 102
	fxpData     = 103
	fxpName     = 104
	fxpAttrs    = 105
	fxpExtended = 200

	// opHardlink stands for the hardlink@openssh.com extended request.
	opHardlink = 255
)

// Open flags.
const (
	flagRead   = 0x01
	flagWrite  = 0x02
	flagAppend = 0x04
	flagCreat  = 0x08
	flagTrunc  = 0x10
)

// Op kinds.
const (
	OpRead       = "read"     // a file opened for reading, reported at close
	OpWrite      = "write"    // a file opened for writing, reported at close
	OpOpenFailed = "open"     // an open the server refused
	OpRemove     = "remove"   //
	OpRename     = "rename"   //
	OpMkdir      = "mkdir"    //
	OpRmdir      = "rmdir"    //
	OpSetstat    = "setstat"  //
	OpSymlink    = "symlink"  //
	OpHardlink   = "hardlink" //
	OpList       = "list"     // a directory opened for listing
	OpParseError = "sftp.unparsed"
)

// Op is one file operation.
type Op struct {
	Kind      string
	Path      string
	Target    string // rename and symlink: the second path
	BytesRead int64  // from the server to the client
	BytesWrit int64  // from the client to the server
	Flags     []string
	OK        bool   // the server answered with success
	Error     string // the server's status message, or the parse problem
}

// Tracker turns the two directions of an SFTP stream into Ops.
type Tracker struct {
	mu      sync.Mutex
	emit    func(Op)
	up      reader // client to server
	down    reader // server to client
	pending map[uint32]request
	handles map[string]*openFile
	dead    bool
}

type request struct {
	typ    byte
	path   string
	target string
	pflags uint32
	handle string
}

type openFile struct {
	path      string
	dir       bool
	pflags    uint32
	read, wrt int64
}

// New returns a Tracker that calls emit for each Op. emit is called with
// the Tracker's lock held: it must not call back into the Tracker.
func New(emit func(Op)) *Tracker {
	return &Tracker{emit: emit, pending: map[uint32]request{}, handles: map[string]*openFile{}}
}

// ClientWriter returns the writer to feed client-to-server bytes into,
// before they are forwarded.
func (t *Tracker) ClientWriter() writerFunc { return func(p []byte) { t.feed(&t.up, p, t.fromClient) } }

// ServerWriter returns the writer to feed server-to-client bytes into.
func (t *Tracker) ServerWriter() writerFunc {
	return func(p []byte) { t.feed(&t.down, p, t.fromServer) }
}

// Close reports files still open when the session ended.
func (t *Tracker) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for h, f := range t.handles {
		t.closeFile(f, true, "session ended with the file open")
		delete(t.handles, h)
	}
}

// writerFunc adapts a func to io.Writer; it never fails, so a relay's
// io.MultiWriter is never disturbed by the tracker.
type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

// reader reassembles length-prefixed packets.
type reader struct {
	buf []byte
}

func (t *Tracker) feed(r *reader, p []byte, handle func([]byte) error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dead {
		return
	}
	r.buf = append(r.buf, p...)
	for len(r.buf) >= 4 {
		n := binary.BigEndian.Uint32(r.buf)
		if n == 0 || n > MaxPacket {
			t.fail(fmt.Errorf("packet length %d out of range", n))
			return
		}
		if uint32(len(r.buf)-4) < n {
			return
		}
		pkt := r.buf[4 : 4+n]
		if err := handle(pkt); err != nil {
			t.fail(err)
			return
		}
		r.buf = r.buf[4+n:]
	}
	if len(r.buf) == 0 {
		r.buf = nil // let a large buffer go
	}
}

func (t *Tracker) fail(err error) {
	t.dead = true
	t.up.buf, t.down.buf = nil, nil
	t.emit(Op{Kind: OpParseError, Error: err.Error()})
}

var errShort = errors.New("packet too short")

type pkt struct {
	b []byte
}

func (p *pkt) u8() (byte, error) {
	if len(p.b) < 1 {
		return 0, errShort
	}
	v := p.b[0]
	p.b = p.b[1:]
	return v, nil
}

func (p *pkt) u32() (uint32, error) {
	if len(p.b) < 4 {
		return 0, errShort
	}
	v := binary.BigEndian.Uint32(p.b)
	p.b = p.b[4:]
	return v, nil
}

func (p *pkt) u64() (uint64, error) {
	if len(p.b) < 8 {
		return 0, errShort
	}
	v := binary.BigEndian.Uint64(p.b)
	p.b = p.b[8:]
	return v, nil
}

func (p *pkt) str() (string, error) {
	n, err := p.u32()
	if err != nil {
		return "", err
	}
	if uint32(len(p.b)) < n {
		return "", errShort
	}
	s := string(p.b[:n])
	p.b = p.b[n:]
	return s, nil
}

func (t *Tracker) fromClient(b []byte) error {
	p := &pkt{b: b}
	typ, err := p.u8()
	if err != nil {
		return err
	}
	if typ == fxpInit {
		return nil
	}
	id, err := p.u32()
	if err != nil {
		return fmt.Errorf("request type %d: %w", typ, err)
	}
	r := request{typ: typ}
	switch typ {
	case fxpOpen:
		if r.path, err = p.str(); err == nil {
			r.pflags, err = p.u32()
		}
	case fxpOpendir, fxpRemove, fxpMkdir, fxpRmdir, fxpSetstat:
		r.path, err = p.str()
	case fxpRename, fxpSymlink:
		if r.path, err = p.str(); err == nil {
			r.target, err = p.str()
		}
	case fxpClose, fxpFsetstat:
		r.handle, err = p.str()
	case fxpWrite:
		var h, data string
		if h, err = p.str(); err == nil {
			if _, err = p.u64(); err == nil {
				data, err = p.str()
			}
		}
		if err == nil {
			if f := t.handles[h]; f != nil {
				f.wrt += int64(len(data))
			}
		}
		return wrap(typ, err)
	case fxpRead:
		r.handle, err = p.str()
	case fxpExtended:
		var name string
		if name, err = p.str(); err != nil {
			return wrap(typ, err)
		}
		switch name {
		case "posix-rename@openssh.com":
			r.typ = fxpRename
		case "hardlink@openssh.com":
			r.typ = opHardlink
		default:
			return nil
		}
		if r.path, err = p.str(); err == nil {
			r.target, err = p.str()
		}
	default:
		// Requests that change nothing (stat, realpath, readdir, …) are
		// not file operations; their answers are not tracked.
		return nil
	}
	if err != nil {
		return wrap(typ, err)
	}
	if len(t.pending) >= MaxPending {
		return errors.New("too many outstanding requests")
	}
	t.pending[id] = r
	return nil
}

func wrap(typ byte, err error) error {
	if err != nil {
		return fmt.Errorf("request type %d: %w", typ, err)
	}
	return nil
}

func (t *Tracker) fromServer(b []byte) error {
	p := &pkt{b: b}
	typ, err := p.u8()
	if err != nil {
		return err
	}
	if typ == fxpVersion {
		return nil
	}
	id, err := p.u32()
	if err != nil {
		return fmt.Errorf("response type %d: %w", typ, err)
	}
	req, ok := t.pending[id]
	if !ok {
		return nil // an answer to a request we do not track
	}
	delete(t.pending, id)
	switch typ {
	case fxpHandle:
		h, err := p.str()
		if err != nil {
			return fmt.Errorf("handle response: %w", err)
		}
		if req.typ == fxpOpen || req.typ == fxpOpendir {
			if len(t.handles) >= MaxHandles {
				return errors.New("too many open handles")
			}
			t.handles[h] = &openFile{path: req.path, dir: req.typ == fxpOpendir, pflags: req.pflags}
		}
	case fxpData:
		data, err := p.str()
		if err != nil {
			return fmt.Errorf("data response: %w", err)
		}
		if f := t.handles[req.handle]; f != nil && req.typ == fxpRead {
			f.read += int64(len(data))
		}
	case fxpStatus:
		code, err := p.u32()
		if err != nil {
			return fmt.Errorf("status response: %w", err)
		}
		msg, _ := p.str() // optional in some servers' EOF answers
		t.status(req, code, msg)
	}
	return nil
}

// status completes a request the server answered with SSH_FXP_STATUS.
func (t *Tracker) status(req request, code uint32, msg string) {
	ok := code == 0
	if !ok && msg == "" {
		msg = fmt.Sprintf("status %d", code)
	}
	if ok {
		msg = ""
	}
	switch req.typ {
	case fxpClose:
		if f := t.handles[req.handle]; f != nil {
			delete(t.handles, req.handle)
			t.closeFile(f, ok, msg)
		}
	case fxpOpen:
		t.emit(Op{Kind: OpOpenFailed, Path: req.path, Flags: flagNames(req.pflags), Error: msg})
	case fxpOpendir:
		t.emit(Op{Kind: OpList, Path: req.path, Error: msg})
	case fxpRemove:
		t.emit(Op{Kind: OpRemove, Path: req.path, OK: ok, Error: msg})
	case fxpMkdir:
		t.emit(Op{Kind: OpMkdir, Path: req.path, OK: ok, Error: msg})
	case fxpRmdir:
		t.emit(Op{Kind: OpRmdir, Path: req.path, OK: ok, Error: msg})
	case fxpRename:
		t.emit(Op{Kind: OpRename, Path: req.path, Target: req.target, OK: ok, Error: msg})
	case opHardlink:
		t.emit(Op{Kind: OpHardlink, Path: req.path, Target: req.target, OK: ok, Error: msg})
	case fxpSymlink:
		t.emit(Op{Kind: OpSymlink, Path: req.path, Target: req.target, OK: ok, Error: msg})
	case fxpSetstat:
		t.emit(Op{Kind: OpSetstat, Path: req.path, OK: ok, Error: msg})
	case fxpFsetstat:
		if f := t.handles[req.handle]; f != nil {
			t.emit(Op{Kind: OpSetstat, Path: f.path, OK: ok, Error: msg})
		}
	}
}

func (t *Tracker) closeFile(f *openFile, ok bool, msg string) {
	op := Op{Path: f.path, BytesRead: f.read, BytesWrit: f.wrt, Flags: flagNames(f.pflags), OK: ok, Error: msg}
	switch {
	case f.dir:
		op.Kind = OpList
	case f.pflags&(flagWrite|flagAppend|flagCreat|flagTrunc) != 0 || f.wrt > 0:
		op.Kind = OpWrite
	default:
		op.Kind = OpRead
	}
	t.emit(op)
}

func flagNames(f uint32) []string {
	var out []string
	for _, x := range []struct {
		bit  uint32
		name string
	}{{flagRead, "read"}, {flagWrite, "write"}, {flagAppend, "append"}, {flagCreat, "create"}, {flagTrunc, "truncate"}} {
		if f&x.bit != 0 {
			out = append(out, x.name)
		}
	}
	return out
}
