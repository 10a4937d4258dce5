package menu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/postern-dev/postern/bastion/recordings"
	"github.com/postern-dev/postern/internal/asciicast"
)

// Recordings is the caller's view of the bastion's recordings. The
// server binds it to the person and writes the audit events: Find emits
// access.denied for a refused session and recording.viewed for each part
// of an allowed one, before it returns.
type Recordings interface {
	List(ctx context.Context, o recordings.ListOptions) (recordings.Listing, error)
	Find(ctx context.Context, id string, part int) (recordings.Session, error)
	Open(ctx context.Context, p recordings.Part) (*asciicast.Reader, io.Closer, error)
}

// Bounds of play's options.
const (
	maxSpeed = 1000
	minSpeed = 0.01
)

// errText is what the person is told about a failure that is not theirs;
// the detail is in the bastion's log.
const errText = "the bastion could not read its recordings (its log has the detail)"

func listRecordings(ctx context.Context, args []string, s Stdio, e Env) int {
	var o recordings.ListOptions
	for len(args) > 0 {
		name, val, rest, ok := flagValue(args)
		if !ok {
			return ExitUsage
		}
		args = rest
		if name != "--days" && name != "--limit" {
			return ExitUsage
		}
		n, err := strconv.Atoi(val)
		if err != nil || n <= 0 {
			fmt.Fprintf(s.Err, "postern-bastion: recordings: %s wants a positive number, got %s\n", name, quote(val))
			return ExitUsage
		}
		switch name {
		case "--days":
			o.Days = min(n, recordings.MaxListDays)
		default:
			o.Limit = min(n, recordings.MaxListLimit)
		}
	}
	if e.Recordings == nil {
		fmt.Fprintln(s.Err, "postern-bastion: recordings: this bastion keeps no recordings")
		return ExitFailed
	}
	l, err := e.Recordings.List(ctx, o)
	if err != nil {
		fmt.Fprintf(s.Err, "postern-bastion: recordings: %s\n", errText)
		return ExitFailed
	}
	if len(l.Sessions) == 0 {
		fmt.Fprintf(s.Out, "No recordings you may view from the last %d days.\n", l.Days)
	} else {
		tw := tabwriter.NewWriter(s.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SESSION\tPERSON\tNODE\tLOGIN\tSTART (UTC)\tDURATION\tWHAT")
		for _, r := range l.Sessions {
			start, dur := "-", "-"
			if t := r.Start(); !t.IsZero() {
				start = t.UTC().Format("2006-01-02 15:04:05")
				dur = r.Duration().Truncate(time.Second).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, orNone(r.Person), quote(r.Node), quote(r.Login), start, dur, what(r))
		}
		tw.Flush()
	}
	if l.Incomplete {
		fmt.Fprintf(s.Err, "postern-bastion: the search stopped after %d recordings; use --days to look at fewer days\n", recordings.MaxExamined)
	}
	if !l.ViewAll {
		fmt.Fprintln(s.Err, "postern-bastion: you see recordings of your own sessions; roles with view_recordings see everyone's")
	}
	if len(l.Sessions) > 0 {
		fmt.Fprintf(s.Err, "postern-bastion: replay one with: ssh -t %s play SESSION_ID\n", e.bastionName())
	}
	return ExitOK
}

func play(ctx context.Context, args []string, s Stdio, e Env) int {
	opts := asciicast.PlayOptions{Speed: 1}
	var ids []string
	for len(args) > 0 {
		if !strings.HasPrefix(args[0], "-") {
			ids, args = append(ids, args[0]), args[1:]
			continue
		}
		name, val, rest, ok := flagValue(args)
		if !ok {
			return ExitUsage
		}
		args = rest
		switch name {
		case "--speed":
			f, err := strconv.ParseFloat(strings.TrimSuffix(val, "x"), 64)
			if err != nil || !(f >= minSpeed && f <= maxSpeed) {
				fmt.Fprintf(s.Err, "postern-bastion: play: --speed wants a number from %g to %d, got %s\n", minSpeed, maxSpeed, quote(val))
				return ExitUsage
			}
			opts.Speed = f
		case "--idle-limit":
			d, err := parseSeconds(val)
			if err != nil {
				fmt.Fprintf(s.Err, "postern-bastion: play: --idle-limit wants a duration such as 2s or 500ms, got %s\n", quote(val))
				return ExitUsage
			}
			opts.MaxIdle = d
		default:
			return ExitUsage
		}
	}
	if len(ids) != 1 {
		return ExitUsage
	}
	id, part, err := recordings.ParseID(ids[0])
	if err != nil {
		fmt.Fprintf(s.Err, "postern-bastion: play: %s is not a session ID; ssh %s recordings lists them\n", quote(ids[0]), e.bastionName())
		return ExitUsage
	}
	if e.Recordings == nil {
		fmt.Fprintln(s.Err, "postern-bastion: play: this bastion keeps no recordings")
		return ExitFailed
	}
	sess, err := e.Recordings.Find(ctx, id, part)
	switch {
	case errors.Is(err, recordings.ErrNotAllowed):
		fmt.Fprintf(s.Err, "postern-bastion: play: you may not view session %s: it is another person's session and none of your roles has view_recordings\n", id)
		fmt.Fprintln(s.Err, "postern-bastion: hint: the refusal was recorded; ask a postern administrator for a role that may view recordings")
		return ExitFailed
	case errors.Is(err, recordings.ErrNotFound):
		what := "session " + id
		if part > 0 {
			what = fmt.Sprintf("part %d of session %s", part, id)
		}
		fmt.Fprintf(s.Err, "postern-bastion: play: no recording of %s in the last %d days\n", what, recordings.DefaultFindDays)
		fmt.Fprintf(s.Err, "postern-bastion: hint: ssh %s recordings lists the sessions you may view\n", e.bastionName())
		return ExitFailed
	case err != nil:
		fmt.Fprintf(s.Err, "postern-bastion: play: %s\n", errText)
		return ExitFailed
	}

	if s.Terminal && s.In != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go stopOnKey(s.In, cancel)
	}
	start := "an unknown time"
	if t := sess.Start(); !t.IsZero() {
		start = t.UTC().Format("2006-01-02 15:04:05Z")
	}
	fmt.Fprintf(s.Err, "postern-bastion: session %s: %s on %s as %s, started %s, %s", sess.ID, orNone(sess.Person), quote(sess.Node), quote(sess.Login),
		start, sess.Duration().Truncate(time.Second))
	if opts.Speed != 1 {
		fmt.Fprintf(s.Err, ", played at %gx", opts.Speed)
	}
	if s.Terminal {
		fmt.Fprint(s.Err, " (Ctrl-C or q stops)")
	}
	fmt.Fprintln(s.Err)
	for i, p := range sess.Parts {
		if len(sess.Parts) > 1 {
			if i > 0 && s.Terminal {
				io.WriteString(s.Out, "\x1b[0m\r\n")
			}
			fmt.Fprintf(s.Err, "postern-bastion: part %d of %d: %s\n", i+1, len(sess.Parts), partWhat(p))
		}
		r, cl, err := e.Recordings.Open(ctx, p)
		if err != nil {
			fmt.Fprintf(s.Err, "postern-bastion: play: %s\n", errText)
			return ExitFailed
		}
		err = asciicast.Play(ctx, s.Out, r, opts)
		cl.Close()
		if ctx.Err() != nil {
			if s.Terminal {
				io.WriteString(s.Out, "\x1b[0m\r\n")
			}
			fmt.Fprintln(s.Err, "postern-bastion: playback stopped")
			return ExitOK
		}
		if err != nil {
			fmt.Fprintf(s.Err, "postern-bastion: play: the recording is damaged after this point\n")
			return ExitFailed
		}
	}
	if s.Terminal {
		// Whatever the recording left set, the viewer gets plain text back.
		io.WriteString(s.Out, "\x1b[0m")
	}
	return ExitOK
}

// stopOnKey cancels when the viewer types Ctrl-C, Ctrl-D or q.
func stopOnKey(in io.Reader, cancel context.CancelFunc) {
	buf := make([]byte, 64)
	for {
		n, err := in.Read(buf)
		for _, b := range buf[:n] {
			if b == 0x03 || b == 0x04 || b == 'q' || b == 'Q' {
				cancel()
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// flagValue takes "--name value" or "--name=value" off the front of args.
func flagValue(args []string) (name, val string, rest []string, ok bool) {
	name = args[0]
	if !strings.HasPrefix(name, "--") {
		return "", "", nil, false
	}
	if n, v, found := strings.Cut(name, "="); found {
		return n, v, args[1:], true
	}
	if len(args) < 2 {
		return "", "", nil, false
	}
	return name, args[1], args[2:], true
}

// parseSeconds reads a Go duration, or a bare number of seconds.
func parseSeconds(v string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f < 0 || f > 86400 {
			return 0, errors.New("out of range")
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, errors.New("bad duration")
	}
	return d, nil
}

func what(s recordings.Session) string {
	parts := make([]string, len(s.Parts))
	for i, p := range s.Parts {
		parts[i] = partWhat(p)
	}
	return clip(strings.Join(parts, "; "), 60)
}

func partWhat(p recordings.Part) string {
	if p.Command == "" {
		return "shell"
	}
	return clip(printable(p.Command), 60)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return quote(s)
}

// printable replaces control characters, so a recorded command line
// cannot drive the viewer's terminal from a listing.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
