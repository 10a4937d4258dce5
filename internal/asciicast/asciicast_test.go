package asciicast

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestWriterGolden(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	clk := &fakeClock{start}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{Width: 100, Height: 30, Title: "alice@example.com on node1", Env: map[string]string{"TERM": "xterm-256color"}}, start)
	if err != nil {
		t.Fatal(err)
	}
	w.Now = clk.now
	clk.t = start.Add(250 * time.Millisecond)
	must(t, w.Output([]byte("$ ")))
	clk.t = start.Add(time.Second)
	must(t, w.Input([]byte("ls\r")))
	must(t, w.Output([]byte("caf\xc3"))) // é split across writes
	must(t, w.Output([]byte("\xa9 \x1b[1mbold\x1b[0m\r\n")))
	clk.t = start.Add(1500 * time.Millisecond)
	must(t, w.Resize(120, 40))
	must(t, w.Output([]byte("bad \xff byte\r\n")))
	must(t, w.Mark("exit 0"))
	must(t, w.Flush())
	golden := filepath.Join("..", "..", "testdata", "golden", "session.cast")
	if *update {
		must(t, os.WriteFile(golden, buf.Bytes(), 0o644))
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if buf.String() != string(want) {
		t.Fatalf("recording differs from %s:\n%s", golden, buf.String())
	}
	// It reads back.
	r, err := NewReader(bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	if r.Header.Width != 100 || r.Header.Timestamp != start.Unix() {
		t.Fatalf("header %+v", r.Header)
	}
	var out strings.Builder
	n := 0
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		if e.Code == Output {
			out.WriteString(e.Data)
		}
	}
	if n != 7 || out.String() != "$ café \x1b[1mbold\x1b[0m\r\nbad \ufffd byte\r\n" {
		t.Fatalf("%d events, output %q", n, out.String())
	}
}

func TestPlayTiming(t *testing.T) {
	cast := "{\"version\":2,\"width\":80,\"height\":24}\n[0.5, \"o\", \"a\"]\n[10.5, \"o\", \"b\"]\n[11.0, \"i\", \"x\"]\n[11.5, \"o\", \"c\"]\n"
	r, err := NewReader(strings.NewReader(cast))
	if err != nil {
		t.Fatal(err)
	}
	var slept []time.Duration
	var out bytes.Buffer
	err = Play(context.Background(), &out, r, PlayOptions{Speed: 2, MaxIdle: time.Second, Sleep: func(_ context.Context, d time.Duration) error {
		slept = append(slept, d)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{250 * time.Millisecond, time.Second, 250 * time.Millisecond, 250 * time.Millisecond}
	if out.String() != "abc" || len(slept) != len(want) {
		t.Fatalf("out %q slept %v", out.String(), slept)
	}
	for i := range want {
		if slept[i] != want[i] {
			t.Fatalf("slept %v, want %v", slept, want)
		}
	}
}

func TestReaderRefusesGarbage(t *testing.T) {
	for name, in := range map[string]string{
		"empty":      "",
		"v1":         "{\"version\":1}\n",
		"not json":   "hello\n",
		"bad event":  "{\"version\":2}\n[1, \"o\"]\n",
		"negative":   "{\"version\":2}\n[-1, \"o\", \"x\"]\n",
		"wrong type": "{\"version\":2}\n[\"a\", \"o\", \"x\"]\n",
	} {
		r, err := NewReader(strings.NewReader(in))
		if err == nil {
			_, err = r.Next()
		}
		if err == nil || err == io.EOF {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzWriter: however the bytes are chunked, every line is valid JSON and
// the recorded output is the input decoded rune by rune.
func FuzzWriter(f *testing.F) {
	f.Add([]byte("hello \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"), uint8(3))
	f.Add([]byte("\xff\xfe\xc3"), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		size := int(chunk)%7 + 1
		var buf bytes.Buffer
		w, err := NewWriter(&buf, Header{}, time.Unix(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(data); i += size {
			end := min(i+size, len(data))
			if err := w.Output(data[i:end]); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		r, err := NewReader(&buf)
		if err != nil {
			t.Fatal(err)
		}
		var got strings.Builder
		for {
			e, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("unreadable line: %v", err)
			}
			got.WriteString(e.Data)
		}
		if want := string([]rune(string(data))); got.String() != want {
			t.Fatalf("recorded %q, want %q", got.String(), want)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
