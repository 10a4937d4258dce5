package menu

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/bastion/recordings"
	"github.com/postern-dev/postern/internal/asciicast"
)

const sid = "0123456789abcdef0123"

// fakeRecordings serves one session of alice's, refuses bob's and knows
// no other; a recording's events come from casts.
type fakeRecordings struct {
	casts  map[string]string // key -> asciicast
	listed recordings.ListOptions
	found  []string
	err    error
}

func (f *fakeRecordings) List(_ context.Context, o recordings.ListOptions) (recordings.Listing, error) {
	f.listed = o
	if f.err != nil {
		return recordings.Listing{}, f.err
	}
	start := time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)
	return recordings.Listing{Days: 7, Sessions: []recordings.Session{{
		ID: sid, Person: "alice@example.com", Node: "node1", Login: "ubuntu",
		Parts: []recordings.Part{
			{Key: "k1", N: 1, Start: start, Duration: 90 * time.Second},
			{Key: "k2", N: 2, Start: start.Add(time.Minute), Duration: time.Minute, Command: "cat /etc/motd\x1b]0;x\a"},
		},
	}}}, nil
}

func (f *fakeRecordings) Find(_ context.Context, id string, part int) (recordings.Session, error) {
	f.found = append(f.found, id)
	switch {
	case f.err != nil:
		return recordings.Session{}, f.err
	case id == "bbbbbbbbbbbbbbbbbbbb":
		return recordings.Session{ID: id, Person: "bob@example.com"}, recordings.ErrNotAllowed
	case id != sid:
		return recordings.Session{}, recordings.ErrNotFound
	}
	s := recordings.Session{ID: sid, Person: "alice@example.com", Node: "node1", Login: "ubuntu",
		Parts: []recordings.Part{{Key: "k1", N: 1}, {Key: "k2", N: 2, Command: "uptime"}}}
	if part > 0 {
		s.Parts = s.Parts[part-1 : part]
	}
	return s, nil
}

func (f *fakeRecordings) Open(_ context.Context, p recordings.Part) (*asciicast.Reader, io.Closer, error) {
	r, err := asciicast.NewReader(strings.NewReader(f.casts[p.Key]))
	return r, io.NopCloser(nil), err
}

func newFake() *fakeRecordings {
	return &fakeRecordings{casts: map[string]string{
		"k1": `{"version":2,"width":80,"height":24,"timestamp":1773133200}` + "\n" + `[0.01,"o","first\r\n"]` + "\n" + `[0.02,"i","typed"]` + "\n" + `[0.03,"m","exit 0"]` + "\n",
		"k2": `{"version":2,"width":80,"height":24,"timestamp":1773133260}` + "\n" + `[0.05,"o","second\n"]` + "\n",
	}}
}

func TestRecordingsCommand(t *testing.T) {
	tests := []struct {
		name     string
		cmd      string
		nilRecs  bool
		err      error
		code     int
		out, std []string
		want     recordings.ListOptions
	}{
		{name: "list", cmd: "recordings", out: []string{"SESSION", sid, "alice@example.com", "node1", "ubuntu", "2026-03-10 09:00:00", "2m0s", "shell; cat /etc/motd?]0;x?"},
			std: []string{"your own sessions", "ssh -t jump play SESSION_ID"}},
		{name: "options", cmd: "recordings --days 30 --limit=5", want: recordings.ListOptions{Days: 30, Limit: 5}},
		{name: "options capped", cmd: "recordings --days 1000", want: recordings.ListOptions{Days: recordings.MaxListDays}},
		{name: "bad number", cmd: "recordings --days x", code: ExitUsage, std: []string{"--days wants a positive number"}},
		{name: "unknown flag", cmd: "recordings --all", code: ExitUsage, std: []string{"usage: ssh jump recordings [--days N] [--limit N]"}},
		{name: "no store", cmd: "recordings", nilRecs: true, code: ExitFailed, std: []string{"keeps no recordings"}},
		{name: "store failure is not shown", cmd: "recordings", err: errors.New("s3: AccessDenied secret detail"), code: ExitFailed, std: []string{"could not read its recordings"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			f.err = tt.err
			env := Env{BastionName: "jump", Recordings: f}
			if tt.nilRecs {
				env.Recordings = nil
			}
			var o, e bytes.Buffer
			code := RunContext(context.Background(), tt.cmd, Stdio{Out: &o, Err: &e}, env)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %s", code, tt.code, e.String())
			}
			for _, w := range tt.out {
				if !strings.Contains(o.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, o.String())
				}
			}
			for _, w := range tt.std {
				if !strings.Contains(e.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, e.String())
				}
			}
			if tt.want != (recordings.ListOptions{}) && f.listed != tt.want {
				t.Errorf("listed with %+v, want %+v", f.listed, tt.want)
			}
			if strings.Contains(o.String()+e.String(), "\x1b") || strings.Contains(e.String(), "secret") {
				t.Errorf("escape or detail reached the client: %q %q", o.String(), e.String())
			}
		})
	}
}

func TestPlayCommand(t *testing.T) {
	tests := []struct {
		name      string
		cmd       string
		terminal  bool
		code      int
		out       string
		std       []string
		findCalls int
	}{
		{name: "all parts", cmd: "play " + sid, out: "first\r\nsecond\n", std: []string{"session " + sid + ": alice@example.com on node1 as ubuntu", "part 2 of 2: uptime"}, findCalls: 1},
		{name: "flags after the id", cmd: "play " + sid + " --speed 100 --idle-limit 2s", out: "first\r\nsecond\n", std: []string{"played at 100x"}, findCalls: 1},
		{name: "flags first, upper case id", cmd: "play --speed=0.5 " + strings.ToUpper(sid), out: "first\r\nsecond\n", findCalls: 1},
		{name: "one part", cmd: "play " + sid + "-2", out: "second\n", findCalls: 1},
		{name: "terminal resets attributes", cmd: "play " + sid + "-1", terminal: true, out: "first\r\n\x1b[0m", std: []string{"Ctrl-C or q stops"}, findCalls: 1},
		{name: "refused", cmd: "play bbbbbbbbbbbbbbbbbbbb", code: ExitFailed, std: []string{"you may not view session bbbbbbbbbbbbbbbbbbbb", "none of your roles has view_recordings", "refusal was recorded"}, findCalls: 1},
		{name: "not found", cmd: "play cccccccccccccccccccc", code: ExitFailed, std: []string{"no recording of session cccccccccccccccccccc", "ssh jump recordings"}, findCalls: 1},
		{name: "not an id", cmd: "play ../../etc/passwd", code: ExitUsage, std: []string{"../../etc/passwd is not a session ID"}},
		{name: "control characters quoted", cmd: "play \x1b[2J", code: ExitUsage, std: []string{`"\x1b[2J" is not a session ID`}},
		{name: "no id", cmd: "play", code: ExitUsage, std: []string{"usage: ssh jump play SESSION_ID"}},
		{name: "two ids", cmd: "play " + sid + " " + sid, code: ExitUsage},
		{name: "bad speed", cmd: "play " + sid + " --speed 0", code: ExitUsage, std: []string{"--speed wants a number"}},
		{name: "speed not a number", cmd: "play " + sid + " --speed fast", code: ExitUsage},
		{name: "bad idle", cmd: "play " + sid + " --idle-limit -1s", code: ExitUsage, std: []string{"--idle-limit wants a duration"}},
		{name: "flag without value", cmd: "play " + sid + " --speed", code: ExitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			var o, e bytes.Buffer
			code := RunContext(context.Background(), tt.cmd, Stdio{Out: &o, Err: &e, Terminal: tt.terminal, In: strings.NewReader("")}, Env{BastionName: "jump", Recordings: f})
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %s", code, tt.code, e.String())
			}
			if o.String() != tt.out {
				t.Errorf("stdout = %q, want %q", o.String(), tt.out)
			}
			for _, w := range tt.std {
				if !strings.Contains(e.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, e.String())
				}
			}
			if len(f.found) != tt.findCalls {
				t.Errorf("Find called %d times, want %d", len(f.found), tt.findCalls)
			}
			if strings.ContainsRune(e.String(), '\x1b') {
				t.Errorf("raw escape reached the client: %q", e.String())
			}
		})
	}
}

// TestPlayStops: on a terminal, q stops a long playback at once.
func TestPlayStops(t *testing.T) {
	f := newFake()
	f.casts["k1"] = `{"version":2,"width":80,"height":24}` + "\n" + `[0.1,"o","before\r\n"]` + "\n" + `[3600,"o","after"]` + "\n"
	pr, pw := io.Pipe()
	var o, e bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- RunContext(context.Background(), "play "+sid+"-1", Stdio{In: pr, Out: &o, Err: &e, Terminal: true}, Env{Recordings: f})
	}()
	pw.Write([]byte("q"))
	select {
	case code := <-done:
		if code != ExitOK || strings.Contains(o.String(), "after") || !strings.Contains(e.String(), "playback stopped") {
			t.Errorf("exit %d, stdout %q, stderr %q", code, o.String(), e.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("q did not stop the playback")
	}
}
