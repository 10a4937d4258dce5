package bench

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Path is one way from the client to the node.
type Path struct {
	Name   string // "direct", "sshd-jump", "bastion", "bastion-rec"
	Jump   string // ssh -J argument; empty for direct
	Target string
}

// Paths measured, the sshd jump host first: it is the reference. UseNet
// sets the node's address in PathDirect and PathSSHDJump.
var (
	PathDirect     = Path{"direct", "", NodeIP}
	PathSSHDJump   = Path{"sshd-jump", "sshd-jump", NodeIP}
	PathBastion    = Path{"bastion", "bastion", NodeFwd}
	PathBastionRec = Path{"bastion-rec", "bastion", NodeRec}
	// The second bastion build of -bastion-b, on the same stack.
	PathBastionB    = Path{"bastion-b", "bastion-b", NodeFwd}
	PathBastionBRec = Path{"bastion-b-rec", "bastion-b", NodeRec}
)

// sshPaths are the paths of the ssh phases (throughput, connect,
// keystrokes): the sshd jump host first (the reference), the bastion's,
// those of -bastion-b when it runs, and direct.
func (s *Stack) sshPaths() []Path {
	ps := []Path{PathSSHDJump, PathBastion, PathBastionRec}
	if s.BastionB != nil {
		ps = append(ps, PathBastionB, PathBastionBRec)
	}
	return append(ps, PathDirect)
}

// Sample summarises repeated measurements of one quantity.
type Sample struct {
	N                     int
	Median, P10, P90, P99 float64
	Min, Max              float64
	Values                []float64 `json:"-"`
	Errors                int
	FirstError            string `json:",omitempty"`
}

// Summarise computes the order statistics of vs (nearest rank).
func Summarise(vs []float64) Sample {
	s := Sample{N: len(vs), Values: vs}
	if len(vs) == 0 {
		return s
	}
	v := slices.Clone(vs)
	slices.Sort(v)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(v)))) - 1
		return v[max(0, min(i, len(v)-1))]
	}
	s.Min, s.Max = v[0], v[len(v)-1]
	s.P10, s.P90, s.P99 = q(0.10), q(0.90), q(0.99)
	if len(v)%2 == 1 {
		s.Median = v[len(v)/2]
	} else {
		s.Median = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return s
}

// sshArgs is the ssh command line for path with config file cfg.
func sshArgs(cfg string, p Path, remote string) []string {
	a := []string{"ssh", "-F", cfg}
	if p.Jump != "" {
		a = append(a, "-J", p.Jump)
	}
	return append(a, p.Target, remote)
}

// Transfer moves size bytes through path, up (client to node) or down,
// and returns the wall time. The far end counts the bytes (wc -c), so a
// short transfer is an error, not a fast one.
func (s *Stack) Transfer(ctx context.Context, cfg string, p Path, up bool, size int64) (time.Duration, error) {
	var script string
	args := sshArgs(cfg, p, "")
	quoted := strings.Join(args[:len(args)-1], " ")
	if up {
		script = fmt.Sprintf("head -c %d /dev/zero | %s 'wc -c'", size, quoted)
	} else {
		script = fmt.Sprintf("%s 'head -c %d /dev/zero' | wc -c", quoted, size)
	}
	cmd := command(ctx, "bash", "-o", "pipefail", "-c", script)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("%s: %v: %s", p.Name, err, strings.TrimSpace(errb.String()))
	}
	n, err := strconv.ParseInt(strings.TrimSpace(out.String()), 10, 64)
	if err != nil || n != size {
		return d, fmt.Errorf("%s: moved %q bytes, want %d: %s", p.Name, strings.TrimSpace(out.String()), size, strings.TrimSpace(errb.String()))
	}
	return d, nil
}

// Connect runs `ssh … true` through path and returns the wall time.
func (s *Stack) Connect(ctx context.Context, cfg string, p Path) (time.Duration, error) {
	a := sshArgs(cfg, p, "true")
	cmd := command(ctx, a[0], a[1:]...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("%s: %v: %s", p.Name, err, strings.TrimSpace(errb.String()))
	}
	return d, nil
}

// command runs in its own process group, all of which is killed when ctx
// ends: ssh -J leaves a ProxyJump ssh holding the output pipes.
func command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// clockTick is USER_HZ, 100 on every Linux this runs on.
const clockTick = 100

// procCPU returns utime+stime of pid, plus cutime+cstime (reaped
// children) when children is set, in seconds.
func procCPU(pid int, children bool) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which may hold spaces: ") S ppid …"
	rest := string(b[bytes.LastIndexByte(b, ')')+2:])
	f := strings.Fields(rest)
	// f[0] is field 3 (state); utime is field 14 -> f[11].
	sum := 0.0
	idx := []int{11, 12}
	if children {
		idx = append(idx, 13, 14)
	}
	for _, i := range idx {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum / clockTick, nil
}

// childPids lists the children of pid (all threads).
func childPids(pid int) []int {
	var out []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// descendants lists pid's process tree below it.
func descendants(pid int) []int {
	var out []int
	for _, c := range childPids(pid) {
		out = append(out, c)
		out = append(out, descendants(c)...)
	}
	return out
}

// waitNoChildren waits until the sshd listener has reaped every
// per-connection process, so that their CPU is in its cutime/cstime.
func waitNoChildren(pid int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if len(childPids(pid)) == 0 {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// memKiB reads a "Key:   N kB" line from a /proc file.
func memKiB(path, key string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, key+":") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				v, _ := strconv.ParseFloat(f[1], 64)
				return v
			}
		}
	}
	return 0
}

// Memory of a process tree: RSS and PSS summed over pid and its
// descendants, in KiB, and the number of processes.
func treeMem(pid int) (rss, pss float64, procs int) {
	for _, p := range append([]int{pid}, descendants(pid)...) {
		rss += memKiB(fmt.Sprintf("/proc/%d/status", p), "VmRSS")
		pss += memKiB(fmt.Sprintf("/proc/%d/smaps_rollup", p), "Pss")
		procs++
	}
	return rss, pss, procs
}

// treeCPU is the CPU seconds of pid's live tree (each process's own time).
func treeCPU(pid int) float64 {
	sum := 0.0
	for _, p := range append([]int{pid}, descendants(pid)...) {
		v, _ := procCPU(p, false)
		sum += v
	}
	return sum
}

// failures counts the errors of each cell (a path, a cipher and
// direction, …) and keeps the first of each, for its Sample.
type failures[K comparable] map[K]*failure

type failure struct {
	n     int
	first string
}

// add counts err against k.
func (f failures[K]) add(k K, err error) {
	x := f[k]
	if x == nil {
		x = &failure{first: err.Error()}
		f[k] = x
	}
	x.n++
}

// into sets s's error count and first error to k's.
func (f failures[K]) into(k K, s *Sample) {
	if x := f[k]; x != nil {
		s.Errors, s.FirstError = x.n, x.first
	}
}
