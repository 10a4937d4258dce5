package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Event names.
const (
	CertIssued      = "cert.issued"
	CertRefused     = "cert.refused"
	HostCertIssued  = "hostcert.issued"
	HostCertRefused = "hostcert.refused"
	LoginStarted    = "login.started"
	LoginFailed     = "login.failed"
	SessionStart    = "session.start"
	SessionEnd      = "session.end"
	AccessDenied    = "access.denied"
	AuthFailed      = "auth.failed"
	Command         = "command"

	// ConnectFailed is an allowed hop whose node could not be reached.
	ConnectFailed = "connect.failed"

	// CertRevoked is a revocation added to the signer's revocation list;
	// CertUnrevoked one removed from it.
	CertRevoked = "cert.revoked"
	// CertDelegated is a short certificate a bastion got to log in to a
	// node as the person (recording mode).
	CertDelegated = "cert.delegated"
	CertUnrevoked = "cert.unrevoked"
)

// Event is one audit record. Empty fields are left out of the JSON.
type Event struct {
	Time   time.Time `json:"time"`
	Event  string    `json:"event"`
	Writer string    `json:"writer,omitempty"` // "signer", "bastion", …
	// WriterID names the process instance (bastion id, signer host).
	WriterID string `json:"writer_id,omitempty"`

	Person     string   `json:"person,omitempty"` // KeyId / IdP user
	Roles      []string `json:"roles,omitempty"`
	Groups     []string `json:"groups,omitempty"`
	Principals []string `json:"principals,omitempty"`
	Login      string   `json:"login,omitempty"`
	Serial     uint64   `json:"serial,omitempty"`
	KeyFP      string   `json:"key_fp,omitempty"`
	// ValidAfter and ValidBefore describe an issued certificate.
	ValidAfter  *time.Time `json:"valid_after,omitempty"`
	ValidBefore *time.Time `json:"valid_before,omitempty"`

	ClientAddr string `json:"client_addr,omitempty"`
	SessionID  string `json:"session_id,omitempty"`
	LoginID    string `json:"login_id,omitempty"`
	Method     string `json:"method,omitempty"` // login method, auth method
	Target     string `json:"target,omitempty"` // host:port asked for
	Resolved   string `json:"resolved,omitempty"`
	Command    string `json:"command,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Error      string `json:"error,omitempty"`

	// ConnID names one SSH connection to the bastion; the sessions and
	// refusals on it share it.
	ConnID string `json:"conn_id,omitempty"`
	// Node is the inventory node a target named; Rule the node rule that
	// allowed a hop.
	Node string `json:"node,omitempty"`
	Rule string `json:"rule,omitempty"`

	BytesIn    int64 `json:"bytes_in,omitempty"`  // client to target
	BytesOut   int64 `json:"bytes_out,omitempty"` // target to client
	DurationMS int64 `json:"duration_ms,omitempty"`
	ExitStatus *int  `json:"exit_status,omitempty"`
}

// Emitter records events. Implementations must be safe for concurrent use.
type Emitter interface {
	Emit(ctx context.Context, e Event) error
}

// Writer writes events as JSON lines.
type Writer struct {
	mu       sync.Mutex
	w        io.Writer
	closer   io.Closer
	writer   string
	writerID string
	// Now is the clock; tests replace it.
	Now func() time.Time
}

// NewWriter writes events to w, stamping them with the writer's component
// name and instance id.
func NewWriter(w io.Writer, writer, writerID string) *Writer {
	return &Writer{w: w, writer: writer, writerID: writerID, Now: time.Now}
}

// Open appends to the file at path (created 0600), or writes to stdout when
// path is "-".
func Open(path, writer, writerID string) (*Writer, error) {
	if path == "-" {
		return NewWriter(os.Stdout, writer, writerID), nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	w := NewWriter(f, writer, writerID)
	w.closer = f
	return w, nil
}

// Emit writes e as one line.
func (w *Writer) Emit(_ context.Context, e Event) error {
	if e.Time.IsZero() {
		e.Time = w.Now().UTC()
	}
	if e.Writer == "" {
		e.Writer = w.writer
	}
	if e.WriterID == "" {
		e.WriterID = w.writerID
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode audit event: %w", err)
	}
	b = append(b, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.w.Write(b); err != nil {
		return fmt.Errorf("write audit event: %w", err)
	}
	return nil
}

// Close flushes to stable storage and closes the file.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closer == nil {
		return nil
	}
	if f, ok := w.closer.(*os.File); ok {
		_ = f.Sync()
	}
	err := w.closer.Close()
	w.closer = nil
	return err
}

// ReadFile reads every event in a JSON-lines audit file.
func ReadFile(path string) ([]Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer f.Close()
	return Read(f)
}

// Read decodes JSON-lines events from r.
func Read(r io.Reader) ([]Event, error) {
	var out []Event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for n := 1; sc.Scan(); n++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return out, fmt.Errorf("decode audit line %d: %w", n, err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// Filter returns the events named name.
func Filter(events []Event, name string) []Event {
	var out []Event
	for _, e := range events {
		if e.Event == name {
			out = append(out, e)
		}
	}
	return out
}
