package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testKey is a fixed audit key so that logs are reproducible.
func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func keySet(k ed25519.PrivateKey) KeySet {
	pub := k.Public().(ed25519.PublicKey)
	return KeySet{Fingerprint(pub): pub}
}

// tickClock returns a clock that advances a millisecond per call.
func tickClock() func() time.Time {
	t := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	return func() time.Time { t = t.Add(time.Millisecond); return t }
}

// makeLog writes n events as bastion/b1 with a checkpoint every 5 events
// and closes the writer. With n=20 the seqs are: events 1-5, checkpoint 6,
// events 7-11, checkpoint 12, 13-17, checkpoint 18, 19-23, checkpoint 24,
// closing checkpoint 25.
func makeLog(t testing.TB, n int) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := OpenFile(path, Options{Writer: "bastion", WriterID: "b1", Key: testKey(1), CheckpointEvery: 5, CheckpointInterval: -1, Now: tickClock()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := w.Emit(context.Background(), Event{Event: SessionStart, Person: fmt.Sprintf("user%02d@example.com", i+1), Serial: uint64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func lines(b []byte) []string {
	return strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
}

func join(ls []string) []byte {
	s := strings.Join(ls, "")
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return []byte(s)
}

func TestVerifyCleanLog(t *testing.T) {
	b := makeLog(t, 20)
	if n := len(lines(b)); n != 25 {
		t.Fatalf("%d lines, want 25:\n%s", n, b)
	}
	r := VerifyBytes(b, VerifyOptions{Keys: keySet(testKey(1))})
	if !r.OK(true) || len(r.Findings) != 0 {
		t.Fatalf("clean log: %v", r.Findings)
	}
	want := ChainSummary{Chain: "bastion/b1", First: 1, Last: 25, Events: 25, Checkpoints: 5, SignedTo: 24, Closed: true}
	if len(r.Chains) != 1 || r.Chains[0] != want {
		t.Fatalf("chains = %+v, want %+v", r.Chains, want)
	}
}

func TestVerifyNamesTampering(t *testing.T) {
	clean := makeLog(t, 20)
	other := testKey(2)
	tests := []struct {
		name    string
		tamper  func(ls []string) []string
		keys    KeySet
		kind    string
		seq     uint64
		problem bool // a problem (else a note only)
		msg     string
	}{
		{"edit one byte", func(ls []string) []string {
			ls[2] = strings.Replace(ls[2], "user03", "user04", 1)
			return ls
		}, nil, KindChanged, 3, true, "line 3 was changed"},
		{"edit one byte of the last event before a checkpoint", func(ls []string) []string {
			ls[4] = strings.Replace(ls[4], "user05", "user55", 1)
			return ls
		}, nil, KindChanged, 5, true, "signed checkpoint seq 6"},
		{"edit so it no longer parses", func(ls []string) []string {
			ls[2] = strings.Replace(ls[2], `"person":"`, `"person:"`, 1)
			return ls
		}, nil, KindChanged, 3, true, "no longer parses"},
		{"edit a key name", func(ls []string) []string {
			ls[2] = strings.Replace(ls[2], `"person"`, `"Person"`, 1)
			return ls
		}, nil, KindChanged, 3, true, "canonical"},
		{"delete one event", func(ls []string) []string {
			return append(ls[:2:2], ls[3:]...)
		}, nil, KindRemoved, 3, true, "1 event(s) missing between seq 2 (line 2) and seq 4 (line 3)"},
		{"delete the first event", func(ls []string) []string {
			return ls[1:]
		}, nil, KindRemoved, 1, true, "chain starts there"},
		{"reorder two", func(ls []string) []string {
			ls[2], ls[3] = ls[3], ls[2]
			return ls
		}, nil, KindReordered, 4, true, "belongs between seq 3"},
		{"move one later", func(ls []string) []string {
			moved := ls[1]
			ls = append(ls[:1:1], ls[2:]...)
			return append(ls[:4:4], append([]string{moved}, ls[4:]...)...)
		}, nil, KindReordered, 2, true, "out of order"},
		{"insert one", func(ls []string) []string {
			forged := strings.Replace(ls[3], "user04", "mallory", 1)
			return append(ls[:3:3], append([]string{forged}, ls[3:]...)...)
		}, nil, KindInserted, 4, true, "line 4 was inserted"},
		{"insert one that links", func(ls []string) []string {
			forged := strings.Replace(ls[3], "user04", "mallory", 1)
			return append(ls[:4:4], append([]string{forged}, ls[4:]...)...)
		}, nil, KindInserted, 4, true, "line 5 was inserted"},
		{"insert a copy", func(ls []string) []string {
			return append(ls[:5:5], append([]string{ls[2]}, ls[5:]...)...)
		}, nil, KindInserted, 3, true, "copy of line 3"},
		{"insert a line of another seq", func(ls []string) []string {
			forged := strings.Replace(ls[10], "user10", "mallory", 1)
			return append(ls[:3:3], append([]string{forged}, ls[3:]...)...)
		}, nil, KindInserted, 11, true, "not part of the chain"},
		{"truncate the tail at a line", func(ls []string) []string {
			return ls[:len(ls)-3]
		}, nil, KindUnsigned, 19, false, "after the last valid checkpoint (seq 18)"},
		{"truncate the tail inside a line", func(ls []string) []string {
			ls[len(ls)-1] = ls[len(ls)-1][:40]
			return ls
		}, nil, KindTruncated, 0, false, "ends in an incomplete line"},
		{"tamper a checkpoint signature", func(ls []string) []string {
			i := strings.Index(ls[5], `"sig":"`) + 10
			c := byte('A')
			if ls[5][i] == 'A' {
				c = 'B'
			}
			ls[5] = ls[5][:i] + string(c) + ls[5][i+1:]
			return ls
		}, nil, KindSignature, 6, true, "bad signature"},
		{"tamper a checkpoint count", func(ls []string) []string {
			ls[5] = strings.Replace(ls[5], `"count":5`, `"count":4`, 1)
			return ls
		}, nil, KindSignature, 6, true, "bad signature"},
		{"wrong pubkey", func(ls []string) []string { return ls }, keySet(other), KindSignature, 6, true, "not a trusted audit key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ls := tt.tamper(lines(clean))
			b := []byte(strings.Join(ls, ""))
			if !strings.HasSuffix(tt.name, "inside a line") {
				b = join(ls)
			}
			keys := tt.keys
			if keys == nil {
				keys = keySet(testKey(1))
			}
			r := VerifyBytes(b, VerifyOptions{Keys: keys})
			var found bool
			for _, f := range r.Findings {
				if f.Kind == tt.kind && f.Seq == tt.seq && f.Problem == tt.problem && strings.Contains(f.String(), tt.msg) {
					found = true
				}
			}
			if !found {
				t.Errorf("want %s at seq %d (%q, problem %v); got:\n%s", tt.kind, tt.seq, tt.msg, tt.problem, findings(r))
			}
			if r.OK(true) {
				t.Errorf("strict verification passed")
			}
			if r.OK(false) == tt.problem {
				t.Errorf("OK(false) = %v, want %v", r.OK(false), !tt.problem)
			}
			// Exactly one problem per tampering, bar the wrong key (one per
			// checkpoint) and a changed checkpoint (also a broken link).
			if tt.keys == nil && !strings.Contains(tt.name, "checkpoint") && len(r.Problems(false)) > 1 {
				t.Errorf("more than one problem:\n%s", findings(r))
			}
		})
	}
}

func findings(r *Report) string {
	var b strings.Builder
	for _, f := range r.Findings {
		fmt.Fprintln(&b, f)
	}
	return b.String()
}

// TestVerifyEveryByte flips each byte of a closed log in turn: strict
// verification must fail every time, and plain verification too unless the
// flip only cut the last line short.
func TestVerifyEveryByte(t *testing.T) {
	clean := makeLog(t, 8)
	keys := keySet(testKey(1))
	for i := range clean {
		b := bytes.Clone(clean)
		b[i] ^= 0x01
		r := VerifyBytes(b, VerifyOptions{Keys: keys})
		if r.OK(true) {
			t.Fatalf("byte %d (%q in line %q) flipped: verification passed", i, clean[i], lineAt(clean, i))
		}
		if i < len(clean)-1 && r.OK(false) {
			t.Fatalf("byte %d (%q in line %q) flipped: only notes:\n%s", i, clean[i], lineAt(clean, i), findings(r))
		}
	}
}

func lineAt(b []byte, i int) string {
	s := bytes.LastIndexByte(b[:i], '\n') + 1
	e := bytes.IndexByte(b[i:], '\n')
	if e < 0 {
		return string(b[s:])
	}
	return string(b[s : i+e])
}

// TestVerifyInterleaved: two writers' chains in one file verify separately.
func TestVerifyInterleaved(t *testing.T) {
	var buf bytes.Buffer
	a := NewWriterOptions(&buf, Options{Writer: "signer", WriterID: "s1", Key: testKey(1), CheckpointEvery: 3})
	b := NewWriterOptions(&buf, Options{Writer: "bastion", WriterID: "b1", Key: testKey(2), CheckpointEvery: 4})
	for i := range 10 {
		w := a
		if i%3 == 0 {
			w = b
		}
		if err := w.Emit(context.Background(), Event{Event: Command, Command: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	b.Close()
	keys := keySet(testKey(1))
	for k, v := range keySet(testKey(2)) {
		keys[k] = v
	}
	r := VerifyBytes(buf.Bytes(), VerifyOptions{Keys: keys})
	if !r.OK(true) || len(r.Chains) != 2 {
		t.Fatalf("findings:\n%s chains %+v", findings(r), r.Chains)
	}
	// Signer's key does not vouch for the bastion.
	r = VerifyBytes(buf.Bytes(), VerifyOptions{Keys: keySet(testKey(1))})
	if r.OK(false) || !strings.Contains(findings(r), "bastion/b1 seq") {
		t.Fatalf("bastion checkpoints accepted without its key:\n%s", findings(r))
	}
}
