package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
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
	// RecordingStored is a recording confirmed stored (S3 or local dir).
	RecordingStored = "recording.stored"
	// RecordingViewed is a recording played back to a person (ssh
	// BASTION play); its session_id is the recorded session's.
	RecordingViewed = "recording.viewed"
	CertUnrevoked   = "cert.unrevoked"

	// Exec is a command run without a terminal through a recorded session;
	// SessionRecorded a recorded session (terminal or exec) that ended, with
	// its recording; SFTP one SFTP file operation; Port one forwarded
	// connection inside a recorded SSH connection.
	Exec            = "exec"
	SessionRecorded = "session.recorded"
	SFTP            = "sftp"
	Port            = "port"

	// CheckpointEvent is a signed checkpoint of a writer's chain: its
	// Checkpoint field holds the seq range, the running hash and the
	// signature.
	CheckpointEvent = "audit.checkpoint"
	// Recovered records that a writer found an incomplete (torn) line at the
	// end of the log, left by a write that a crash cut short; its Torn field
	// names that line so a verifier can tell it from tampering.
	Recovered = "audit.recovered"

	// KubeRequest is one Kubernetes API request made through a forwarder
	// (a watch or an upgraded exec/attach/port-forward is one, at its end).
	KubeRequest = "kube.request"
)

// Event is one audit record. Empty fields are left out of the JSON.
type Event struct {
	Time   time.Time `json:"time"`
	Event  string    `json:"event"`
	Writer string    `json:"writer,omitempty"` // "signer", "bastion", …
	// WriterID names the process instance (bastion id, signer host).
	// Writer and WriterID together name the hash chain the event is in.
	WriterID string `json:"writer_id,omitempty"`
	// Seq numbers the writer's events from 1, without gaps, across
	// restarts.
	Seq uint64 `json:"seq,omitempty"`
	// Prev is the hex SHA-256 of the exact bytes of the line (newline
	// included) holding this writer's event Seq-1; empty for Seq 1.
	Prev string `json:"prev,omitempty"`

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

	// Cluster, KubeUser, Verb … Status describe a kube.request: the
	// cluster, the Kubernetes user acted as (groups in Groups), what the
	// request did and the API server's HTTP status.
	Cluster       string `json:"cluster,omitempty"`
	KubeUser      string `json:"kube_user,omitempty"`
	Verb          string `json:"verb,omitempty"`
	APIGroup      string `json:"api_group,omitempty"`
	Resource      string `json:"resource,omitempty"`
	Subresource   string `json:"subresource,omitempty"`
	KubeNamespace string `json:"namespace,omitempty"`
	KubeName      string `json:"name,omitempty"`
	Status        int    `json:"status,omitempty"`

	BytesIn    int64 `json:"bytes_in,omitempty"`  // client to target
	BytesOut   int64 `json:"bytes_out,omitempty"` // target to client
	DurationMS int64 `json:"duration_ms,omitempty"`
	ExitStatus *int  `json:"exit_status,omitempty"`

	// Op is an SFTP operation (open, read, write, rename, …); Path the file
	// it is about (for Port, the forwarded address); Path2 the second path
	// of a rename or symlink.
	Op    string `json:"op,omitempty"`
	Path  string `json:"path,omitempty"`
	Path2 string `json:"path2,omitempty"`
	// Recording is the storage key of a session's recording; Truncated says
	// output beyond the recording limit was counted, not stored.
	Recording string `json:"recording,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`

	// Checkpoint is set on CheckpointEvent events only.
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
	// Torn is set on Recovered events only.
	Torn *Torn `json:"torn,omitempty"`
}

// Checkpoint is the body of an audit.checkpoint event. The checkpoint event
// is itself an event of the chain (it has its own Seq and Prev); it vouches
// for every event of its writer up to seq To.
type Checkpoint struct {
	// From and To are the first and last seq this checkpoint is the first
	// to vouch for; Count = To-From+1.
	From  uint64 `json:"from"`
	To    uint64 `json:"to"`
	Count uint64 `json:"count"`
	// Hash is the running hash: the hash of the line holding seq To, which
	// by the chain commits to every earlier line. It equals the checkpoint
	// event's Prev.
	Hash string `json:"hash"`
	// Reason is why it was written: "count", "interval", "close" or
	// "request".
	Reason string `json:"reason"`
	// Key is the SHA256 fingerprint of the writer's audit public key, as
	// ssh-keygen -l prints it.
	Key string `json:"key"`
	// Sig is the base64 Ed25519 signature of SignedMessage.
	Sig string `json:"sig"`
}

// Torn describes an incomplete line a Recovered event accounts for.
type Torn struct {
	// Offset is the byte offset of the line in the file when it was found.
	Offset int64 `json:"offset"`
	// Length is its length without the newline the writer appended to end it.
	Length int64 `json:"length"`
	// SHA256 is the hex SHA-256 of those Length bytes.
	SHA256 string `json:"sha256"`
}

// Emitter records events. Implementations must be safe for concurrent use.
type Emitter interface {
	Emit(ctx context.Context, e Event) error
}

// LineHash is the chain hash of a line: the hex SHA-256 of its bytes,
// newline included. The next event of the same writer carries it as Prev.
func LineHash(line []byte) string {
	s := sha256.Sum256(line)
	return hex.EncodeToString(s[:])
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

// maxLine is the longest line readers accept.
const maxLine = 4 * 1024 * 1024

// Read decodes JSON-lines events from r. An incomplete last line (a write in
// progress, or one a crash cut short) is left out, and so are the torn lines
// that audit.recovered events account for; any other line that is not an
// event is an error naming its line number.
func Read(r io.Reader) ([]Event, error) {
	var out []Event
	type bad struct {
		n   int
		sum string
		err error
	}
	var bads []bad
	claimed := map[string]bool{}
	err := Scan(r, func(n int, line []byte, e *Event, err error) error {
		if err != nil {
			if len(bads) < 1000 {
				bads = append(bads, bad{n, fragmentHash(line), err})
			}
			return nil
		}
		if e.Event == Recovered && e.Torn != nil {
			claimed[e.Torn.SHA256] = true
		}
		out = append(out, *e)
		return nil
	})
	for _, b := range bads {
		if !claimed[b.sum] {
			return out, fmt.Errorf("decode audit line %d: %w", b.n, b.err)
		}
	}
	return out, err
}

// fragmentHash is the hash a Torn record carries for line: of its bytes
// without the newline.
func fragmentHash(line []byte) string {
	return LineHash(bytes.TrimSuffix(line, []byte{'\n'}))
}

// Scan calls fn for each complete line of r with its 1-based line number,
// the line's bytes (newline included; valid only during the call) and the
// decoded event or the decoding error. Empty lines are skipped, and so is an
// incomplete last line. An error from fn stops the scan and is returned.
func Scan(r io.Reader, fn func(n int, line []byte, e *Event, err error) error) error {
	br := bufio.NewReaderSize(r, 64*1024)
	var long []byte
	for n := 1; ; n++ {
		chunk, err := br.ReadSlice('\n')
		line := chunk
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], chunk...)
			for errors.Is(err, bufio.ErrBufferFull) {
				chunk, err = br.ReadSlice('\n')
				if len(long) <= maxLine {
					long = append(long, chunk...)
				}
			}
			line = long
		}
		if err == io.EOF {
			return nil // an incomplete last line, or none
		}
		if err != nil {
			return fmt.Errorf("read audit log: %w", err)
		}
		if len(line) == 1 {
			continue
		}
		if len(line) > maxLine {
			if err := fn(n, nil, nil, fmt.Errorf("line longer than %d bytes", maxLine)); err != nil {
				return err
			}
			continue
		}
		var e Event
		if derr := json.Unmarshal(line, &e); derr != nil {
			err = fn(n, line, nil, derr)
		} else {
			err = fn(n, line, &e, nil)
		}
		if err != nil {
			return err
		}
	}
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
