package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Defaults for Options.
const (
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = 60 * time.Second
)

// ErrClosed is returned by Emit after Close.
var ErrClosed = errors.New("audit log closed")

// Options configure a Writer. The zero value (plus Writer and WriterID)
// chains events but signs nothing.
type Options struct {
	// Writer and WriterID name the part and the process instance; together
	// they name the hash chain.
	Writer, WriterID string

	// KeyFile is the writer's Ed25519 audit key (OpenSSH format), created
	// with mode 0600 (and its .pub next to it) when missing. Key, when set,
	// is used instead. With neither, no checkpoints are written.
	KeyFile string
	Key     ed25519.PrivateKey

	// CheckpointEvery writes a signed checkpoint after that many events;
	// 0 means DefaultCheckpointEvery, negative never.
	CheckpointEvery int
	// CheckpointInterval writes one when events were written and that much
	// time passed; 0 means DefaultCheckpointInterval, negative never. A
	// checkpoint is also written at Close.
	CheckpointInterval time.Duration

	// SyncEvery makes every event durable against power loss (fsync(2) per
	// event) instead of at checkpoints only. See BenchmarkEmit for its cost.
	SyncEvery bool

	// Mirror, when set, receives every line (event and checkpoint) after it
	// was written to the log, one Write call per line with the exact bytes.
	// A mirror error is logged, never returned: the log is the record. It
	// is the attachment point for stdout and, later, the S3 spool.
	Mirror io.Writer

	// Logger reports background and mirror errors; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Writer writes events as JSON lines, each one carrying its writer's seq and
// the hash of the writer's previous line, with signed checkpoints.
type Writer struct {
	mu       sync.Mutex
	w        io.Writer
	f        *os.File // the log, when it is a file: locked, resynced, synced
	closer   io.Closer
	writer   string
	writerID string
	// Now is the clock; tests replace it before the first Emit.
	Now func() time.Time

	seq  uint64 // last seq of this chain
	last string // hash of the line holding seq
	end  int64  // size of the file after this process's last look at it
	// torn is an incomplete line found at the end of the log, to be
	// accounted for by a Recovered event before the next line.
	torn *Torn

	key      ed25519.PrivateKey
	keyFP    string
	every    int
	since    int    // events since this process's last checkpoint
	wrote    bool   // this process wrote an event
	cpFrom   uint64 // first seq the next checkpoint vouches for
	syncEach bool
	mirror   io.Writer
	log      *slog.Logger

	closed bool
	stop   chan struct{}
	done   chan struct{}
}

// NewWriter writes events to w, stamping them with the writer's component
// name and instance id. The chain starts at seq 1; nothing is signed.
func NewWriter(w io.Writer, writer, writerID string) *Writer {
	return NewWriterOptions(w, Options{Writer: writer, WriterID: writerID, CheckpointInterval: -1})
}

// NewWriterOptions writes to w with opt. It cannot read w back, so its
// chain starts at seq 1. A KeyFile is loaded (or created) only by OpenFile;
// here use Key. The interval timer runs only when CheckpointInterval > 0;
// call Close to stop it.
func NewWriterOptions(w io.Writer, opt Options) *Writer {
	wr := &Writer{
		w: w, writer: opt.Writer, writerID: opt.WriterID, Now: opt.Now,
		key: opt.Key, every: opt.CheckpointEvery, syncEach: opt.SyncEvery,
		mirror: opt.Mirror, log: opt.Logger, cpFrom: 1,
	}
	if wr.Now == nil {
		wr.Now = time.Now
	}
	if wr.log == nil {
		wr.log = slog.New(slog.DiscardHandler)
	}
	if wr.every == 0 {
		wr.every = DefaultCheckpointEvery
	}
	if wr.key != nil {
		wr.keyFP = Fingerprint(wr.key.Public().(ed25519.PublicKey))
		if opt.CheckpointInterval > 0 {
			wr.startTimer(opt.CheckpointInterval)
		}
	}
	return wr
}

// Open appends to the file at path (created 0600), or writes to stdout when
// path is "-". Checkpoints of a file log are signed with the key in the
// file audit_key next to it (created when missing); stdout is not signed.
// Use OpenFile for other settings.
func Open(path, writer, writerID string) (*Writer, error) {
	opt := Options{Writer: writer, WriterID: writerID}
	if path != "-" {
		opt.KeyFile = filepath.Join(filepath.Dir(path), "audit_key")
	}
	return OpenFile(path, opt)
}

// OpenFile appends to the log at path (created 0600), or writes to stdout
// when path is "-". It reads the end of an existing log to continue the
// writer's chain (seq and hash), and accounts for a torn last line a crash
// left with a Recovered event before the next event.
func OpenFile(path string, opt Options) (*Writer, error) {
	if opt.KeyFile != "" && opt.Key == nil {
		k, err := LoadOrCreateKey(opt.KeyFile)
		if err != nil {
			return nil, err
		}
		opt.Key = k
	}
	if opt.CheckpointInterval == 0 {
		opt.CheckpointInterval = DefaultCheckpointInterval
	}
	if path == "-" {
		return NewWriterOptions(os.Stdout, opt), nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	interval := opt.CheckpointInterval
	opt.CheckpointInterval = -1 // start the timer once the state is read
	w := NewWriterOptions(f, opt)
	w.f, w.closer = f, f
	if err := w.lock(); err != nil {
		f.Close()
		return nil, err
	}
	w.unlock()
	w.cpFrom = w.seq + 1
	if w.key != nil && interval > 0 {
		w.startTimer(interval)
	}
	return w, nil
}

func (w *Writer) startTimer(d time.Duration) {
	w.stop, w.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(w.done)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				w.mu.Lock()
				if !w.closed && w.since > 0 {
					if err := w.lockedCheckpoint("interval"); err != nil {
						w.log.Error("audit checkpoint", "err", err)
					}
				}
				w.mu.Unlock()
			}
		}
	}()
}

// Seq returns the seq of the writer's last event.
func (w *Writer) Seq() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seq
}

// Emit writes e as one line, with the writer's name, id, the next seq and
// the previous line's hash. A nil error means the event is acknowledged:
// the whole line was handed to the operating system in one write(2), so it
// survives a crash of this process; it survives a power loss once the next
// checkpoint (or, with SyncEvery, this event) was fsynced.
func (w *Writer) Emit(_ context.Context, e Event) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if err := w.lock(); err != nil {
		return err
	}
	defer w.unlock()
	if e.Time.IsZero() {
		e.Time = w.Now().UTC()
	}
	if err := w.append(&e); err != nil {
		return err
	}
	w.since++
	w.wrote = true
	if w.key != nil && w.every > 0 && w.since >= w.every {
		// The event is written; a failed checkpoint is retried at the next
		// one and does not un-acknowledge it.
		if err := w.checkpoint("count"); err != nil {
			w.log.Error("audit checkpoint", "err", err)
		}
	}
	return nil
}

// Checkpoint writes a signed checkpoint now (if there is a key and anything
// to vouch for) and syncs the log.
func (w *Writer) Checkpoint(context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	return w.lockedCheckpoint("request")
}

func (w *Writer) lockedCheckpoint(reason string) error {
	if err := w.lock(); err != nil {
		return err
	}
	defer w.unlock()
	return w.checkpoint(reason)
}

// checkpoint writes a signed checkpoint and syncs. w.mu and the file lock
// are held.
func (w *Writer) checkpoint(reason string) error {
	if w.key == nil || w.seq == 0 {
		return w.sync()
	}
	from := w.cpFrom
	if from > w.seq {
		from = w.seq
	}
	e := Event{Time: w.Now().UTC(), Event: CheckpointEvent, Writer: w.writer, WriterID: w.writerID, Seq: w.seq + 1}
	e.Checkpoint = &Checkpoint{From: from, To: w.seq, Count: w.seq - from + 1, Hash: w.last, Reason: reason, Key: w.keyFP}
	e.Checkpoint.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(w.key, SignedMessage(&e)))
	if err := w.append(&e); err != nil {
		return err
	}
	w.since = 0
	w.cpFrom = w.seq + 1
	return w.sync()
}

func (w *Writer) sync() error {
	if w.f == nil {
		return nil
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("sync audit log: %w", err)
	}
	return nil
}

// append writes e as the chain's next line, preceded by a Recovered event
// when a torn line must be accounted for. w.mu and the file lock are held.
func (w *Writer) append(e *Event) error {
	if w.torn != nil {
		r := Event{Time: w.Now().UTC(), Event: Recovered, Torn: w.torn,
			Reason: "incomplete line at the end of the log, left by a write a crash cut short; ended with a newline, kept as evidence"}
		if err := w.writeLine(&r, true); err != nil {
			return err
		}
		w.torn = nil
		w.since++
	}
	return w.writeLine(e, false)
}

func (w *Writer) writeLine(e *Event, newlineFirst bool) error {
	e.Writer, e.WriterID = w.writer, w.writerID
	e.Seq = w.seq + 1
	e.Prev = ""
	if w.seq > 0 {
		e.Prev = w.last
	}
	line, err := marshalLine(e)
	if err != nil {
		return err
	}
	buf := line
	if newlineFirst {
		buf = append([]byte{'\n'}, line...)
	}
	n, err := w.w.Write(buf)
	if err != nil {
		if w.f == nil && n > 0 && n < len(buf) {
			// A partial line in a stream: end it and account for it before
			// the next line. (For a file, the next lock finds it.)
			w.torn = &Torn{Offset: -1, Length: int64(n), SHA256: LineHash(buf[:n])}
		}
		return fmt.Errorf("write audit event: %w", err)
	}
	w.seq++
	w.last = LineHash(line)
	w.end += int64(len(buf))
	if w.syncEach {
		if err := w.sync(); err != nil {
			return err
		}
	}
	if w.mirror != nil {
		if _, err := w.mirror.Write(line); err != nil {
			w.log.Error("audit mirror", "err", err)
		}
	}
	return nil
}

// marshalLine encodes e as one canonical JSON line: re-encoding the decoded
// line gives the same bytes, which verifiers check.
func marshalLine(e *Event) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode audit event: %w", err)
	}
	if bytes.Contains(b, []byte(`\ufffd`)) {
		// Invalid UTF-8 was replaced by an escape that decodes to U+FFFD,
		// which re-encodes as the raw rune: encode the decoded form.
		var d Event
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("encode audit event: %w", err)
		}
		if b, err = json.Marshal(&d); err != nil {
			return nil, fmt.Errorf("encode audit event: %w", err)
		}
	}
	return append(b, '\n'), nil
}

// Close writes a final "close" checkpoint (when this process wrote any
// event), syncs and closes the file. A log whose chain ends in one was shut
// down cleanly.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	var errs []error
	if w.wrote || w.torn != nil {
		errs = append(errs, w.lockedCheckpoint("close"))
	} else if w.f != nil {
		errs = append(errs, w.sync())
	}
	w.closed = true
	if w.closer != nil {
		errs = append(errs, w.closer.Close())
		w.closer = nil
	}
	w.mu.Unlock()
	if w.stop != nil {
		close(w.stop)
		<-w.done
	}
	return errors.Join(errs...)
}

// lock takes the file lock and, when the file changed since this process
// last looked (another process wrote, or a write of ours failed half way),
// re-reads the new part: the chain's latest seq and hash, and a torn last
// line.
func (w *Writer) lock() error {
	if w.f == nil {
		return nil
	}
	if err := lockFile(w.f); err != nil {
		return fmt.Errorf("lock audit log: %w", err)
	}
	fi, err := w.f.Stat()
	if err != nil {
		w.unlock()
		return fmt.Errorf("stat audit log: %w", err)
	}
	if size := fi.Size(); size != w.end {
		if err := w.resync(size); err != nil {
			w.unlock()
			return err
		}
	}
	return nil
}

func (w *Writer) unlock() {
	if w.f != nil {
		_ = unlockFile(w.f)
	}
}

// resync reads the log from w.end to size.
func (w *Writer) resync(size int64) error {
	if size < w.end {
		// Truncated under us: read it all again.
		w.end, w.seq, w.last = 0, 0, ""
	}
	complete, err := completeEnd(w.f, w.end, size)
	if err != nil {
		return err
	}
	if complete < size {
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(w.f, complete, size-complete)); err != nil {
			return fmt.Errorf("read audit log: %w", err)
		}
		w.torn = &Torn{Offset: complete, Length: size - complete, SHA256: hex.EncodeToString(h.Sum(nil))}
	}
	if seq, hash, ok, err := findLast(w.f, w.end, complete, w.writer, w.writerID); err != nil {
		return err
	} else if ok {
		w.seq, w.last = seq, hash
	}
	w.end = size
	return nil
}

// completeEnd returns the offset just after the last newline in
// [from, size), or from when there is none.
func completeEnd(f *os.File, from, size int64) (int64, error) {
	buf := make([]byte, 64*1024)
	for pos := size; pos > from; {
		n := min(int64(len(buf)), pos-from)
		pos -= n
		if _, err := f.ReadAt(buf[:n], pos); err != nil {
			return 0, fmt.Errorf("read audit log: %w", err)
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return pos + int64(i) + 1, nil
		}
	}
	return from, nil
}

// tailEvent is what findLast decodes of a line.
type tailEvent struct {
	Event    string `json:"event"`
	Writer   string `json:"writer"`
	WriterID string `json:"writer_id"`
	Seq      uint64 `json:"seq"`
	Torn     *Torn  `json:"torn"`
}

// findLast reads the complete lines of [from, to) backwards and returns the
// seq and line hash of the last event of the chain (writer, id), skipping
// torn lines that a later Recovered event accounts for.
func findLast(f *os.File, from, to int64, writer, id string) (uint64, string, bool, error) {
	claimed := map[string]bool{}
	var carry []byte // the start of a line whose beginning is not read yet
	buf := make([]byte, 64*1024)
	for pos := to; pos > from; {
		n := min(int64(len(buf)), pos-from)
		pos -= n
		if _, err := f.ReadAt(buf[:n], pos); err != nil {
			return 0, "", false, fmt.Errorf("read audit log: %w", err)
		}
		data := append(append([]byte(nil), buf[:n]...), carry...)
		// data ends with a newline; its first line may begin before pos.
		end := len(data)
		for end > 0 {
			i := bytes.LastIndexByte(data[:end-1], '\n')
			if i < 0 && pos > from {
				break
			}
			line := data[i+1 : end]
			end = i + 1
			var t tailEvent
			if json.Unmarshal(line, &t) != nil {
				continue
			}
			if claimed[fragmentHash(line)] {
				continue
			}
			if t.Event == Recovered && t.Torn != nil && len(claimed) < 10000 {
				claimed[t.Torn.SHA256] = true
			}
			if t.Writer == writer && t.WriterID == id && t.Seq > 0 {
				return t.Seq, LineHash(line), true, nil
			}
		}
		carry = data[:end]
		if len(carry) > maxLine {
			carry = nil // a line too long to be an event; skip it
		}
	}
	return 0, "", false, nil
}
