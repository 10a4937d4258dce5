package audit

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func emitN(t testing.TB, w *Writer, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := w.Emit(context.Background(), Event{Event: Command, Person: "alice@example.com", Serial: uint64(i)}); err != nil {
			t.Fatal(err)
		}
	}
}

func verifyFile(t testing.TB, path string, keys KeySet) *Report {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return VerifyBytes(b, VerifyOptions{Keys: keys})
}

// TestRestartContinuesChain: a second process run continues seq and hash,
// and the whole file verifies.
func TestRestartContinuesChain(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	for run := range 3 {
		w, err := Open(path, "bastion", "b1")
		if err != nil {
			t.Fatal(err)
		}
		before := w.Seq()
		emitN(t, w, run*10, 7)
		if w.Seq() != before+7 {
			t.Fatalf("run %d: seq %d after %d events from %d", run, w.Seq(), 7, before)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := ReadPublicKeys(filepath.Join(dir, "audit_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "audit_key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("audit_key: %v %v", fi.Mode(), err)
	}
	r := verifyFile(t, path, keys)
	if !r.OK(true) || r.Chains[0].Last != 24 || !r.Chains[0].Closed {
		t.Fatalf("findings:\n%s chains %+v", findings(r), r.Chains)
	}
	evs, err := ReadFile(path)
	if err != nil || len(Filter(evs, Command)) != 21 || len(Filter(evs, CheckpointEvent)) != 3 {
		t.Fatalf("ReadFile: %d events, %v", len(evs), err)
	}
}

// TestTornTailRecovered: a line a crash cut short stays in the file, is
// ended and accounted for by an audit.recovered event; verify reports it as
// a note and readers skip it.
func TestTornTailRecovered(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	w, err := Open(path, "bastion", "b1")
	if err != nil {
		t.Fatal(err)
	}
	emitN(t, w, 1, 3)
	w.Close()
	// A crash in the middle of writing seq 5, a complete JSON object
	// without its newline.
	torn := `{"time":"2025-01-01T00:00:00Z","event":"command","writer":"bastion","writer_id":"b1","seq":5}`
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(torn)
	f.Close()
	fi, _ := os.Stat(path)
	if _, err := ReadFile(path); err != nil {
		t.Fatalf("ReadFile with an incomplete last line: %v", err)
	}

	w, err = Open(path, "bastion", "b1")
	if err != nil {
		t.Fatal(err)
	}
	emitN(t, w, 4, 2)
	w.Close()
	evs, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rec := Filter(evs, Recovered)
	if len(rec) != 1 || rec[0].Torn.Offset != fi.Size()-int64(len(torn)) || rec[0].Torn.Length != int64(len(torn)) || rec[0].Seq != 5 {
		t.Fatalf("recovered = %+v", rec)
	}
	if b, _ := os.ReadFile(path); !bytes.Contains(b, []byte(torn+"\n")) {
		t.Fatal("the torn line is gone")
	}
	keys, _ := ReadPublicKeys(filepath.Join(dir, "audit_key.pub"))
	r := verifyFile(t, path, keys)
	if !r.OK(false) || len(r.Findings) != 1 || r.Findings[0].Kind != KindTorn {
		t.Fatalf("findings:\n%s", findings(r))
	}
	// Removing the torn line is a change verify names.
	b, _ := os.ReadFile(path)
	b = bytes.Replace(b, []byte(torn+"\n"), nil, 1)
	r = VerifyBytes(b, VerifyOptions{Keys: keys})
	if r.OK(false) || !strings.Contains(findings(r), "not in the log") {
		t.Fatalf("findings:\n%s", findings(r))
	}
}

// TestTwoProcessesOneWriter: a server and a one-shot command writing as the
// same writer to one file keep one chain (the file lock and re-reading).
func TestTwoProcessesOneWriter(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	a, err := Open(path, "signer", "s1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(path, "signer", "s1")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, w := range []*Writer{a, b, a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); emitN(t, w, 1, 50) }()
	}
	wg.Wait()
	b.Close()
	emitN(t, a, 1, 5)
	a.Close()
	keys, _ := ReadPublicKeys(filepath.Join(dir, "audit_key.pub"))
	r := verifyFile(t, path, keys)
	if !r.OK(true) || r.Chains[0].Last != 207 {
		t.Fatalf("findings:\n%s chains %+v", findings(r), r.Chains)
	}
}

func TestIntervalCheckpoint(t *testing.T) {
	var buf syncBuffer
	w := NewWriterOptions(&buf, Options{Writer: "bastion", WriterID: "b1", Key: testKey(1), CheckpointEvery: -1, CheckpointInterval: 10 * time.Millisecond})
	emitN(t, w, 1, 3)
	deadline := time.Now().Add(10 * time.Second)
	for !bytes.Contains(buf.Bytes(), []byte(`"reason":"interval"`)) {
		if time.Now().After(deadline) {
			t.Fatalf("no interval checkpoint:\n%s", buf.Bytes())
		}
		time.Sleep(5 * time.Millisecond)
	}
	w.Close()
	if err := w.Emit(context.Background(), Event{Event: Command}); err != ErrClosed {
		t.Fatalf("Emit after Close: %v", err)
	}
	if r := VerifyBytes(buf.Bytes(), VerifyOptions{Keys: keySet(testKey(1))}); !r.OK(true) {
		t.Fatalf("findings:\n%s", findings(r))
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// TestMirrorGetsEveryLine: the mirror sees exactly the bytes of the log.
func TestMirrorGetsEveryLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	var mirror bytes.Buffer
	w, err := OpenFile(path, Options{Writer: "bastion", WriterID: "b1", Key: testKey(1), CheckpointEvery: 4, Mirror: &mirror})
	if err != nil {
		t.Fatal(err)
	}
	emitN(t, w, 1, 10)
	w.Close()
	b, _ := os.ReadFile(path)
	if !bytes.Equal(b, mirror.Bytes()) {
		t.Fatalf("mirror differs:\n%s\nvs\n%s", mirror.Bytes(), b)
	}
}

// TestInvalidUTF8StaysCanonical: attacker-chosen bytes in a field never make
// a line look edited.
func TestInvalidUTF8StaysCanonical(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriterOptions(&buf, Options{Writer: "bastion", WriterID: "b1", Key: testKey(1)})
	for _, c := range []string{"rm -rf \xff\xfe /", "<script>&", "\u2028\x00\"\\"} {
		if err := w.Emit(context.Background(), Event{Event: Command, Command: c}); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	if r := VerifyBytes(buf.Bytes(), VerifyOptions{Keys: keySet(testKey(1))}); !r.OK(true) {
		t.Fatalf("findings:\n%s", findings(r))
	}
}

const crashHelperEnv = "POSTERN_AUDIT_CRASH_HELPER"

// TestCrashHelper is the process TestKillNine kills: it writes events from
// four goroutines as fast as it can and prints "serial seq" for each one
// Emit acknowledged.
func TestCrashHelper(t *testing.T) {
	path := os.Getenv(crashHelperEnv)
	if path == "" {
		t.Skip("helper process for TestKillNine")
	}
	w, err := OpenFile(path, Options{Writer: "bastion", WriterID: "b1", KeyFile: filepath.Join(filepath.Dir(path), "audit_key"),
		CheckpointEvery: 300, CheckpointInterval: 20 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	base, _ := strconv.ParseUint(os.Getenv(crashHelperEnv+"_BASE"), 10, 64)
	var mu sync.Mutex
	out := bufio.NewWriterSize(os.Stdout, 0)
	for g := range 4 {
		go func() {
			for i := uint64(g); ; i += 4 {
				if err := w.Emit(context.Background(), Event{Event: Command, Serial: base + i + 1, Command: strings.Repeat("x", int(i%300))}); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintf(out, "%d\n", base+i+1)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	select {}
}

// TestKillNine: kill -9 a process writing events as fast as it can. Every
// event it acknowledged is in the log, the log verifies (the part after the
// last checkpoint is an unsigned tail, not tampering), and a restarted writer
// continues the chain.
func TestKillNine(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a helper process")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.v=false")
		cmd.Env = append(os.Environ(), crashHelperEnv+"="+path, fmt.Sprintf("%s_BASE=%d", crashHelperEnv, round*1_000_000_000))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := map[uint64]bool{}
		sc := bufio.NewScanner(stdout)
		killed := false
		for sc.Scan() {
			n, err := strconv.ParseUint(sc.Text(), 10, 64)
			if err != nil {
				continue // go test's own output
			}
			acked[n] = true
			if len(acked) == 2000+round*777 && !killed {
				_ = cmd.Process.Signal(syscall.SIGKILL)
				killed = true
			}
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("helper: %v\n%s", err, stderr.String())
		}
		evs, err := ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		present := map[uint64]bool{}
		for _, e := range evs {
			if e.Event == Command && e.Seq > 0 {
				present[e.Serial] = true
			}
		}
		lost := 0
		for n := range acked {
			if !present[n] {
				lost++
			}
		}
		if lost > 0 {
			t.Fatalf("round %d: %d of %d acknowledged events are not in the log", round, lost, len(acked))
		}
		keys, err := ReadPublicKeys(filepath.Join(dir, "audit_key.pub"))
		if err != nil {
			t.Fatal(err)
		}
		r := verifyFile(t, path, keys)
		if !r.OK(false) {
			t.Fatalf("round %d: verify after kill -9:\n%s", round, findings(r))
		}
		for _, f := range r.Findings {
			if f.Kind != KindUnsigned && f.Kind != KindTruncated && f.Kind != KindTorn {
				t.Fatalf("round %d: unexpected finding %s", round, f)
			}
		}
		t.Logf("round %d: %d acknowledged, %d in the log, findings:\n%s", round, len(acked), len(present), findings(r))
	}
	// A clean restart continues the chain and signs the crashed tails.
	w, err := Open(path, "bastion", "b1")
	if err != nil {
		t.Fatal(err)
	}
	last := w.Seq()
	emitN(t, w, 1, 5)
	w.Close()
	keys, _ := ReadPublicKeys(filepath.Join(dir, "audit_key.pub"))
	r := verifyFile(t, path, keys)
	if !r.OK(false) || !r.Chains[0].Closed || r.Chains[0].Last < last+6 {
		t.Fatalf("after restart:\n%s %+v", findings(r), r.Chains)
	}
	for _, f := range r.Findings {
		if f.Kind != KindTorn {
			t.Fatalf("after restart: %s", f)
		}
	}
}
