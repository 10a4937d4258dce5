package auditlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/postern-dev/postern/internal/storage"
)

// S3URL is a parsed s3://BUCKET/PREFIX.
type S3URL struct {
	Bucket string
	// Prefix is "" or ends in "/".
	Prefix string
}

// String is the URL.
func (u S3URL) String() string { return "s3://" + u.Bucket + "/" + u.Prefix }

// ParseS3URL reads s3://BUCKET[/PREFIX]. The prefix is taken literally
// (no percent-decoding) and must be a valid key prefix; a missing trailing
// "/" is added, so s3://b/audit does not also match audit-old/.
func ParseS3URL(s string) (S3URL, error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return S3URL{}, fmt.Errorf("%q is not an s3://BUCKET/PREFIX URL", s)
	}
	bucket, prefix, _ := strings.Cut(rest, "/")
	if bucket == "" {
		return S3URL{}, fmt.Errorf("%q names no bucket", s)
	}
	if len(bucket) > 255 {
		return S3URL{}, fmt.Errorf("%q: bucket name too long", s)
	}
	for _, c := range []byte(bucket) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return S3URL{}, fmt.Errorf("%q: bad bucket name %q", s, bucket)
		}
	}
	prefix = dirPrefix(prefix)
	if prefix != "" {
		if err := storage.ValidateKey(strings.TrimSuffix(prefix, "/")); err != nil {
			return S3URL{}, fmt.Errorf("%q: bad prefix: %w", s, err)
		}
	}
	return S3URL{Bucket: bucket, Prefix: prefix}, nil
}

// RemoteLog is one log's batches in a store: the objects of one
// …/LOG_ID/ directory, in offset order.
type RemoteLog struct {
	// Dir is the key directory, ending in "LOG_ID/".
	Dir     string
	Objects []RemoteObject
}

// RemoteObject is one batch.
type RemoteObject struct {
	storage.ObjectInfo
	// Offset is the byte offset of the batch in the log file.
	Offset int64
	// lines: the log's lines before this batch, and in it, once read.
	linesBefore, lines int
	read               bool
	// noNewline: the object does not end with a newline.
	noNewline bool
}

// ErrNoLogs is returned by ListLogs when the prefix holds no audit batch.
var ErrNoLogs = errors.New("no audit log batches")

// ListLogs finds the logs under prefix: every object named like an audit
// batch, grouped by log, each log in offset order; logs in key order
// (writer, writer id, then time).
func ListLogs(ctx context.Context, st storage.Store, prefix string) ([]*RemoteLog, error) {
	objs, err := st.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	byDir := map[string]*RemoteLog{}
	var logs []*RemoteLog
	for _, o := range objs {
		dir, off, ok := parseObjectKey(o.Key)
		if !ok {
			continue
		}
		l := byDir[dir]
		if l == nil {
			l = &RemoteLog{Dir: dir}
			byDir[dir] = l
			logs = append(logs, l)
		}
		l.Objects = append(l.Objects, RemoteObject{ObjectInfo: o, Offset: off})
	}
	if len(logs) == 0 {
		return nil, fmt.Errorf("%w under %q (%d other object(s))", ErrNoLogs, prefix, len(objs))
	}
	sort.Slice(logs, func(i, j int) bool { return logs[i].Dir < logs[j].Dir })
	for _, l := range logs {
		sort.Slice(l.Objects, func(i, j int) bool { return l.Objects[i].Offset < l.Objects[j].Offset })
	}
	return logs, nil
}

// Gap is a stretch of the log with no batch, or two batches that overlap.
type Gap struct {
	// From and To: the bytes [From, To) of the log are missing; for an
	// overlap, To < From and [To, From) is held twice.
	From, To int64
	// Next is the batch after the gap.
	Next    string
	Overlap bool
}

// Gaps returns where the batches do not follow each other exactly: a batch
// removed from the bucket (or never stored, which the shipper does not
// allow), or batches that overlap (never written so by a shipper).
func (l *RemoteLog) Gaps() []Gap {
	var out []Gap
	var want int64
	for _, o := range l.Objects {
		switch {
		case o.Offset > want:
			out = append(out, Gap{From: want, To: o.Offset, Next: o.Key})
		case o.Offset < want:
			out = append(out, Gap{From: want, To: o.Offset, Next: o.Key, Overlap: true})
		}
		want = o.Offset + o.Size
	}
	return out
}

// Size is the log's length as far as its last batch reaches.
func (l *RemoteLog) Size() int64 {
	if len(l.Objects) == 0 {
		return 0
	}
	o := l.Objects[len(l.Objects)-1]
	return o.Offset + o.Size
}

// Open returns the log's batches read one after the other, as the bytes of
// the file they came from (with missing batches left out). Reading also
// counts each batch's lines, for Locate.
func (l *RemoteLog) Open(ctx context.Context, st storage.Store) io.ReadCloser {
	return &logReader{ctx: ctx, st: st, l: l}
}

// Locate names the batch holding line n (1-based, counted over the whole
// stream as Open returns it) and the line's number within the batch. It
// knows the batches read so far.
func (l *RemoteLog) Locate(n int) (key string, line int, ok bool) {
	for _, o := range l.Objects {
		last := o.linesBefore + o.lines
		if o.noNewline {
			last++ // its last line goes on in the next batch
		}
		if o.read && n > o.linesBefore && n <= last {
			return o.Key, n - o.linesBefore, true
		}
	}
	return "", 0, false
}

// Unterminated lists the batches that do not end with a newline (the
// shipper only stores whole lines), among those read.
func (l *RemoteLog) Unterminated() []string {
	var out []string
	for _, o := range l.Objects {
		if o.read && o.noNewline {
			out = append(out, o.Key)
		}
	}
	return out
}

type logReader struct {
	ctx   context.Context
	st    storage.Store
	l     *RemoteLog
	i     int
	cur   io.ReadCloser
	lines int // lines of the stream before the current batch
	last  byte
	n     int64
}

func (r *logReader) Read(p []byte) (int, error) {
	for {
		if r.cur == nil {
			if r.i >= len(r.l.Objects) {
				return 0, io.EOF
			}
			rc, err := r.st.Get(r.ctx, r.l.Objects[r.i].Key)
			if err != nil {
				return 0, err
			}
			r.cur, r.last, r.n = rc, 0, 0
			o := &r.l.Objects[r.i]
			o.linesBefore, o.lines = r.lines, 0
		}
		o := &r.l.Objects[r.i]
		n, err := r.cur.Read(p)
		if n > 0 {
			for _, c := range p[:n] {
				if c == '\n' {
					o.lines++
				}
			}
			r.last = p[n-1]
			r.n += int64(n)
		}
		if err == io.EOF {
			r.cur.Close()
			r.cur = nil
			o.read = true
			o.noNewline = r.n > 0 && r.last != '\n'
			r.lines += o.lines
			r.i++
			if n > 0 {
				return n, nil
			}
			continue
		}
		if err != nil {
			return n, fmt.Errorf("read %s: %w", o.Key, err)
		}
		return n, nil
	}
}

func (r *logReader) Close() error {
	if r.cur != nil {
		return r.cur.Close()
	}
	return nil
}
