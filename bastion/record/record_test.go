package record

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/audit"
)

type memSink struct {
	mu    sync.Mutex
	files map[string]*bytes.Buffer
}

type nopCloser struct{ *bytes.Buffer }

func (nopCloser) Close() error { return nil }

func (m *memSink) Create(key string, _ map[string]string) (io.WriteCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := &bytes.Buffer{}
	m.files[key] = b
	return nopCloser{b}, nil
}

func newRec(limit int64) (*Recorder, *memSink, *[]audit.Event) {
	sink := &memSink{files: map[string]*bytes.Buffer{}}
	var evs []audit.Event
	r := New(Meta{SessionID: "s1", Person: "alice@example.com", Node: "node1", Login: "ubuntu", Start: time.Unix(1_800_000_000, 0)},
		Options{ExecLimit: limit, Emit: func(e audit.Event) { evs = append(evs, e) }}, sink)
	return r, sink, &evs
}

// Output the node sends before the relay reports the exec request (they
// travel on different goroutines) is still recorded, first.
func TestEarlyOutputIsRecorded(t *testing.T) {
	r, sink, evs := newRec(1 << 20)
	s := r.Observer().Session(1)
	s.NodeData([]byte("early "), false)
	s.Request("exec", ssh.Marshal(struct{ Command string }{"echo hi"}), true)
	s.NodeData([]byte("late\n"), false)
	st := 0
	s.Exit(st, "")
	s.Closed()
	r.Wait()
	cast := sink.files[KeyFor("s1", time.Unix(1_800_000_000, 0), 1)].String()
	if !strings.Contains(cast, `"early "`) || strings.Index(cast, "early") > strings.Index(cast, "late") {
		t.Fatalf("recording lost or misordered early output:\n%s", cast)
	}
	if len(*evs) != 1 || (*evs)[0].Event != audit.Exec || (*evs)[0].BytesOut != 11 || (*evs)[0].Command != "echo hi" {
		t.Fatalf("events %+v", *evs)
	}
}

func TestExecOutputBoundedPerConnection(t *testing.T) {
	r, sink, evs := newRec(10)
	for n := 1; n <= 2; n++ {
		s := r.Observer().Session(n)
		s.Request("exec", ssh.Marshal(struct{ Command string }{"yes"}), true)
		s.NodeData([]byte("0123456789abcdef"), false)
		s.Closed()
	}
	r.Wait()
	first := sink.files[KeyFor("s1", time.Unix(1_800_000_000, 0), 1)].String()
	second := sink.files[KeyFor("s1", time.Unix(1_800_000_000, 0), 2)].String()
	if !strings.Contains(first, `"0123456789"`) || strings.Contains(first, "abcdef") || !strings.Contains(first, "truncated") {
		t.Fatalf("first: %s", first)
	}
	if strings.Contains(second, "0123") || !strings.Contains(second, "truncated") {
		t.Fatalf("the cap is per connection; second recording: %s", second)
	}
	for _, e := range *evs {
		if !e.Truncated || e.BytesOut != 16 {
			t.Fatalf("event %+v", e)
		}
	}
}
