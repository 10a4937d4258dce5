package recordings

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/postern-dev/postern/internal/asciicast"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/storage"
)

var now = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

// put stores an asciicast recording that started at start, ran for dur
// and printed out, under the key bastion/record would use.
func put(t *testing.T, st storage.Store, id string, n int, start time.Time, dur time.Duration, person, node, command, out string) string {
	t.Helper()
	key := Prefix + start.UTC().Format("2006/01/02") + "/" + id + "-" + string(rune('0'+n)) + ".cast"
	var b bytes.Buffer
	w, err := asciicast.NewWriter(&b, asciicast.Header{Width: 80, Height: 24, Command: command}, start)
	if err != nil {
		t.Fatal(err)
	}
	clock := start
	w.Now = func() time.Time { return clock }
	if err := w.Output([]byte(out)); err != nil {
		t.Fatal(err)
	}
	clock = start.Add(dur)
	if err := w.Mark("exit 0"); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	meta := map[string]string{MetaSessionID: id, MetaNode: node, MetaLogin: "ubuntu"}
	if person != "" {
		meta[MetaPerson] = person
	}
	if _, err := st.Put(context.Background(), key, bytes.NewReader(b.Bytes()), int64(b.Len()), meta); err != nil {
		t.Fatal(err)
	}
	// Stored when it ended (file times are too coarse to order puts).
	if l, ok := st.(*storage.Local); ok {
		stored := start.Add(dur)
		if err := os.Chtimes(filepath.Join(l.Dir(), filepath.FromSlash(key)), stored, stored); err != nil {
			t.Fatal(err)
		}
	}
	return key
}

const (
	alice = "alice@example.com"
	bob   = "bob@example.com"
)

func testCatalog(t *testing.T) *Catalog {
	t.Helper()
	st, err := storage.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	put(t, st, "aaaa000000000000000a", 1, now.Add(-2*time.Hour), 90*time.Second, alice, "node1", "", "alice shell\r\n")
	put(t, st, "aaaa000000000000000a", 2, now.Add(-2*time.Hour+time.Minute), time.Minute, alice, "node1", "uptime", "up\n")
	put(t, st, "bbbb000000000000000b", 1, now.Add(-1*time.Hour), 5*time.Second, bob, "node2", "echo bob", "bob\n")
	put(t, st, "cccc000000000000000c", 1, now.Add(-50*time.Hour), 3*time.Second, alice, "node2", "echo old", "old\n")
	put(t, st, "dddd000000000000000d", 1, now.Add(-20*24*time.Hour), time.Second, alice, "node1", "echo ancient", "x\n")
	put(t, st, "eeee000000000000000e", 1, now.Add(-30*time.Minute), time.Second, "", "node1", "echo nobody", "x\n")
	// Not recordings: ignored.
	if _, err := st.Put(context.Background(), Prefix+"2026/03/10/notes.txt", strings.NewReader("x"), 1, nil); err != nil {
		t.Fatal(err)
	}
	roles := []config.Role{{Name: "ops"}, {Name: "auditor", ViewRecordings: true}}
	return &Catalog{Store: st, Policy: NewPolicy(roles), Now: func() time.Time { return now }}
}

func ids(ss []Session) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.ID)
	}
	return out
}

func TestPolicy(t *testing.T) {
	p := NewPolicy([]config.Role{{Name: "ops"}, {Name: "auditor", ViewRecordings: true}})
	tests := []struct {
		name   string
		viewer Viewer
		person string
		why    string
		err    error
	}{
		{"own session", Viewer{Person: alice, Roles: []string{"ops"}}, alice, "own session", nil},
		{"own session without any role", Viewer{Person: alice}, alice, "own session", nil},
		{"another person's", Viewer{Person: bob, Roles: []string{"ops"}}, alice, "", ErrNotAllowed},
		{"auditor sees all", Viewer{Person: bob, Roles: []string{"ops", "auditor"}}, alice, "role auditor has view_recordings", nil},
		{"unknown role grants nothing", Viewer{Person: bob, Roles: []string{"root"}}, alice, "", ErrNotAllowed},
		{"recording without person is nobody's", Viewer{Person: "", Roles: []string{"ops"}}, "", "", ErrNotAllowed},
		{"auditor sees ownerless", Viewer{Person: bob, Roles: []string{"auditor"}}, "", "role auditor has view_recordings", nil},
		{"case matters", Viewer{Person: "Alice@example.com"}, alice, "", ErrNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			why, err := p.Allows(tt.viewer, tt.person)
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if why != tt.why {
				t.Errorf("why = %q, want %q", why, tt.why)
			}
		})
	}
}

func TestList(t *testing.T) {
	c := testCatalog(t)
	ctx := context.Background()
	tests := []struct {
		name    string
		viewer  Viewer
		opts    ListOptions
		want    []string
		viewAll bool
	}{
		{"own sessions of the last week", Viewer{Person: alice, Roles: []string{"ops"}}, ListOptions{},
			[]string{"aaaa000000000000000a", "cccc000000000000000c"}, false},
		{"bob sees only his", Viewer{Person: bob, Roles: []string{"ops"}}, ListOptions{}, []string{"bbbb000000000000000b"}, false},
		{"auditor sees all, newest first", Viewer{Person: "carol@example.com", Roles: []string{"auditor"}}, ListOptions{},
			[]string{"eeee000000000000000e", "bbbb000000000000000b", "aaaa000000000000000a", "cccc000000000000000c"}, true},
		{"limit", Viewer{Person: "carol@example.com", Roles: []string{"auditor"}}, ListOptions{Limit: 2},
			[]string{"eeee000000000000000e", "bbbb000000000000000b"}, true},
		{"days", Viewer{Person: alice}, ListOptions{Days: 30}, []string{"aaaa000000000000000a", "cccc000000000000000c", "dddd000000000000000d"}, false},
		{"today only", Viewer{Person: alice}, ListOptions{Days: 1}, []string{"aaaa000000000000000a"}, false},
		{"stranger sees nothing", Viewer{Person: "mallory@example.com", Roles: []string{"ops"}}, ListOptions{}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := c.List(ctx, tt.viewer, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, ids(l.Sessions)); diff != "" {
				t.Errorf("sessions (-want +got):\n%s", diff)
			}
			if l.ViewAll != tt.viewAll {
				t.Errorf("ViewAll = %v", l.ViewAll)
			}
		})
	}

	l, err := c.List(ctx, Viewer{Person: alice}, ListOptions{Days: 1})
	if err != nil {
		t.Fatal(err)
	}
	s := l.Sessions[0]
	if s.Person != alice || s.Node != "node1" || s.Login != "ubuntu" || len(s.Parts) != 2 {
		t.Fatalf("session = %+v", s)
	}
	if !s.Start().Equal(now.Add(-2*time.Hour)) || s.Duration() != 2*time.Minute {
		t.Errorf("start %v duration %v, want %v 2m0s", s.Start(), s.Duration(), now.Add(-2*time.Hour))
	}
	if s.Parts[0].Command != "" || s.Parts[1].Command != "uptime" || s.Parts[1].N != 2 || s.Parts[0].Width != 80 {
		t.Errorf("parts = %+v", s.Parts)
	}
}

func TestFind(t *testing.T) {
	c := testCatalog(t)
	ctx := context.Background()
	tests := []struct {
		name   string
		viewer Viewer
		id     string
		part   int
		parts  int
		why    string
		err    error
	}{
		{"own", Viewer{Person: alice}, "aaaa000000000000000a", 0, 2, "own session", nil},
		{"one part", Viewer{Person: alice}, "aaaa000000000000000a", 2, 1, "own session", nil},
		{"missing part", Viewer{Person: alice}, "aaaa000000000000000a", 3, 0, "", ErrNotFound},
		{"old", Viewer{Person: alice}, "dddd000000000000000d", 0, 1, "own session", nil},
		{"another's refused", Viewer{Person: bob, Roles: []string{"ops"}}, "aaaa000000000000000a", 0, 0, "", ErrNotAllowed},
		{"auditor", Viewer{Person: bob, Roles: []string{"auditor"}}, "aaaa000000000000000a", 0, 2, "role auditor has view_recordings", nil},
		{"unknown", Viewer{Person: alice}, "ffff000000000000000f", 0, 0, "", ErrNotFound},
		{"prefix of an id is not the id", Viewer{Person: alice}, "aaaa0000", 0, 0, "", ErrNotFound},
		{"bad id", Viewer{Person: alice}, "../../etc", 0, 0, "", ErrBadID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, why, err := c.Find(ctx, tt.viewer, tt.id, tt.part)
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if why != tt.why || len(s.Parts) != tt.parts {
				t.Errorf("why %q parts %d, want %q %d", why, len(s.Parts), tt.why, tt.parts)
			}
			if errors.Is(err, ErrNotAllowed) && (s.Person != alice || s.Node != "node1") {
				t.Errorf("a refused session should still name whose it is (for the audit event): %+v", s)
			}
		})
	}

	s, _, err := c.Find(ctx, Viewer{Person: alice}, "aaaa000000000000000a", 1)
	if err != nil {
		t.Fatal(err)
	}
	r, cl, err := c.Open(ctx, s.Parts[0])
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out bytes.Buffer
	if err := asciicast.Play(ctx, &out, r, asciicast.PlayOptions{Sleep: func(context.Context, time.Duration) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "alice shell\r\n" {
		t.Errorf("played %q", out.String())
	}
}

func TestParseID(t *testing.T) {
	tests := []struct {
		in   string
		id   string
		part int
		err  bool
	}{
		{in: "0123456789abcdef0123", id: "0123456789abcdef0123"},
		{in: "0123456789ABCDEF0123", id: "0123456789abcdef0123"},
		{in: "0123456789abcdef0123-2", id: "0123456789abcdef0123", part: 2},
		{in: "0123456789abcdef0123-0", err: true},
		{in: "0123", err: true},
		{in: "0123456789abcdef0123/x", err: true},
		{in: "", err: true},
		{in: "0123456789abcdef012g", err: true},
		{in: "0123456789abcdef0123-\n", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			id, part, err := ParseID(tt.in)
			if (err != nil) != tt.err || id != tt.id || part != tt.part {
				t.Errorf("ParseID(%q) = %q, %d, %v", tt.in, id, part, err)
			}
			if err != nil && !errors.Is(err, ErrBadID) {
				t.Errorf("err %v is not ErrBadID", err)
			}
		})
	}
}
