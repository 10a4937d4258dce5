package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// KeystrokeResult is the echo time of single bytes typed into a pty
// session through one path (issue 7, item 5: recording on vs off).
type KeystrokeResult struct {
	Path string
	Ms   Sample
}

// keystrokeRemote puts the node's pty in raw mode without echo, says it
// is ready, and echoes every byte back: one byte in, the same byte out.
const keystrokeRemote = "stty raw -echo; echo READY; exec cat"

// Keystrokes measured per path and the pause between two, like typing.
const (
	keystrokesDefault = 300
	keystrokeWarmup   = 10
	keystrokeGap      = 10 * time.Millisecond
)

// term is one interactive `ssh -tt` session held open.
type term struct {
	p    Path
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	errb *bytes.Buffer
	dead bool // timed out: closed, its reader may still be blocked
}

// runKeystroke opens one pty session per path (ssh -tt, the real client)
// and then, in rounds with the path order reversed every other round,
// types one byte into each and times until its echo comes back. All
// sessions are open at once, so the paths share the machine's noise
// alike. The whole phase is bounded by 3 minutes.
func (s *Stack) runKeystroke(ctx context.Context, cfg Config) ([]KeystrokeResult, error) {
	conf, err := s.ClientConfig("", "")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	paths := s.sshPaths()
	var terms []*term
	defer func() {
		for _, t := range terms {
			t.close()
		}
	}()
	for _, p := range paths {
		t, err := openTerm(ctx, conf, p)
		if err != nil {
			return nil, err
		}
		terms = append(terms, t)
	}
	n := cfg.Keystrokes
	if n <= 0 {
		n = keystrokesDefault
	}
	ms := make([][]float64, len(terms))
	errs := failures[int]{}
	for i := range n + keystrokeWarmup {
		for j := range terms {
			k := j
			if i%2 == 1 {
				k = len(terms) - 1 - j
			}
			t := terms[k]
			b := byte('a' + i%26)
			d, err := t.keystroke(b)
			if err != nil {
				errs.add(k, err)
				if ctx.Err() != nil {
					return nil, fmt.Errorf("keystrokes through %s: %w", t.p.Name, err)
				}
				continue
			}
			if i >= keystrokeWarmup {
				ms[k] = append(ms[k], float64(d.Microseconds())/1000)
			}
			time.Sleep(keystrokeGap)
		}
	}
	var out []KeystrokeResult
	for k, t := range terms {
		r := KeystrokeResult{Path: t.p.Name, Ms: Summarise(ms[k])}
		errs.into(k, &r.Ms)
		cfg.Logf("keystroke %-11s median %.2f ms p99 %.2f ms errors %d", t.p.Name, r.Ms.Median, r.Ms.P99, r.Ms.Errors)
		out = append(out, r)
	}
	return out, nil
}

func openTerm(ctx context.Context, conf string, p Path) (*term, error) {
	a := sshArgs(conf, p, keystrokeRemote)
	// -tt: a pty on the node although stdin here is a pipe; -e none: no
	// escape character.
	a = append([]string{a[0], "-tt", "-e", "none"}, a[1:]...)
	cmd := command(ctx, a[0], a[1:]...)
	t := &term{p: p, cmd: cmd, errb: &bytes.Buffer{}}
	cmd.Stderr = t.errb
	var err error
	if t.in, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	t.out = bufio.NewReader(stdout)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start ssh: %w", p.Name, err)
	}
	ready := make(chan error, 1)
	go func() {
		for {
			l, err := t.out.ReadString('\n')
			if strings.Contains(l, "READY") {
				ready <- nil
				return
			}
			if err != nil {
				ready <- err
				return
			}
		}
	}()
	select {
	case err = <-ready:
	case <-time.After(30 * time.Second):
		err = errors.New("no READY within 30 s")
	}
	if err != nil {
		t.close()
		return nil, fmt.Errorf("%s: pty session: %v: %s", p.Name, err, strings.TrimSpace(t.errb.String()))
	}
	return t, nil
}

// keystroke writes b and waits for it to come back (5 s at most).
func (t *term) keystroke(b byte) (time.Duration, error) {
	type echo struct {
		c   byte
		err error
	}
	if t.dead {
		return 0, errors.New("session closed after an earlier timeout")
	}
	got := make(chan echo, 1)
	start := time.Now()
	if _, err := t.in.Write([]byte{b}); err != nil {
		return 0, err
	}
	go func() { c, err := t.out.ReadByte(); got <- echo{c, err} }()
	select {
	case e := <-got:
		d := time.Since(start)
		if e.err != nil {
			return d, e.err
		}
		if e.c != b {
			return d, fmt.Errorf("typed %q, echo %q", b, e.c)
		}
		return d, nil
	case <-time.After(5 * time.Second):
		// The reader is left blocked; closing the session ends it.
		t.dead = true
		t.close()
		return 0, fmt.Errorf("no echo within 5 s: %s", strings.TrimSpace(t.errb.String()))
	}
}

// close kills the session's process group (ssh and its ProxyJump ssh).
func (t *term) close() {
	if t.cmd.Process == nil || t.cmd.ProcessState != nil {
		return
	}
	_ = syscall.Kill(-t.cmd.Process.Pid, syscall.SIGKILL)
	_ = t.cmd.Wait()
}

// keystrokeMarkdown renders section 5.
func (r *Report) keystrokeMarkdown() string {
	if len(r.Keystroke) == 0 {
		return ""
	}
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	n := 0
	if len(r.Keystroke) > 0 {
		n = r.Keystroke[0].Ms.N
	}
	p("## 5. Per-keystroke latency\n\nOne `ssh -tt -e none -F cfg [-J JUMP] node '%s'` per path, all open at once; then %d rounds (after %d warm-up rounds), the path order reversed every other round: one byte written to ssh's stdin, timed until the same byte comes back on its stdout, %d ms between keystrokes. The echo comes from `cat` on the node's pty, so each keystroke crosses every hop twice; in recording mode the bastion also terminates both SSH connections and records the session. Milliseconds.\n\n", keystrokeRemote, n, keystrokeWarmup, keystrokeGap.Milliseconds())
	p("| path | median | p10 | p90 | p99 | max | × sshd jump (median) | errors |\n|---|---|---|---|---|---|---|---|\n")
	var ref float64
	for _, k := range r.Keystroke {
		if k.Path == PathSSHDJump.Name {
			ref = k.Ms.Median
		}
	}
	for _, k := range r.Keystroke {
		p("| %s | %s | %s | %s | %s | %s | %s | %d |\n", k.Path, f2(k.Ms.Median), f2(k.Ms.P10), f2(k.Ms.P90), f2(k.Ms.P99), f2(k.Ms.Max), f2(ratio(k.Ms.Median, ref)), k.Ms.Errors)
	}
	for _, k := range r.Keystroke {
		if k.Ms.FirstError != "" {
			p("\nFirst error (%s): `%s`\n", k.Path, k.Ms.FirstError)
		}
	}
	p("\n")
	return b.String()
}
