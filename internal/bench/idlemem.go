package bench

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// settledMem reads the memory of pid's process tree once it has stopped
// moving after the sessions were opened: at least 2 s, then every second
// until two readings 1 s apart agree within 1 % (at most 10 s in all). A
// Go process keeps the garbage of the connection burst until it collects
// (the bastion does when it goes quiet, see bastion/idlegc.go); sshd's
// children settle at once. It returns the last reading and how long it
// waited.
func settledMem(pid int) (rss, pss float64, procs int, waited time.Duration) {
	start := time.Now()
	time.Sleep(2 * time.Second)
	rss, pss, procs = treeMem(pid)
	for time.Since(start) < 10*time.Second {
		time.Sleep(time.Second)
		r, p, n := treeMem(pid)
		stable := math.Abs(r-rss) <= 0.01*rss
		rss, pss, procs = r, p, n
		if stable {
			break
		}
	}
	return rss, pss, procs, time.Since(start)
}

// idle10k is the target row for 10,000 concurrent idle sessions: the
// bastion's largest N of at least 10,000, or what was tried.
func (r *Report) idle10k(maxIdle int) Target {
	t := Target{What: "10,000 concurrent idle sessions without errors", Want: "0 errors",
		Measured: fmt.Sprintf("largest N tried: %d", maxIdle), Verdict: "not measured"}
	for _, i := range r.Idle {
		if i.Jump != JumpBastion || i.N < 10000 || i.N != maxIdle {
			continue
		}
		t.Measured = fmt.Sprintf("N=%d: %d opened, %d errors, %.1f KiB RSS per session (sshd: %s)", i.N, i.Opened, i.Errors, i.RSSPerSession(), r.idleOf(JumpSSHD, i.N))
		t.Verdict = verdict(i.Errors == 0 && i.Opened == i.N)
		if need := uint64(2*i.N + 64); i.Errors > 0 && i.NoFile > 0 && i.NoFile < need {
			t.Measured += fmt.Sprintf("; the bastion's open-file limit here is %d, below the ~%d descriptors (2 per session) %d sessions need", i.NoFile, need, i.N)
		}
	}
	return t
}

// idleOf sums up one jump host's idle row for N.
func (r *Report) idleOf(jump string, n int) string {
	for _, i := range r.Idle {
		if i.Jump == jump && i.N == n {
			if i.Skipped != "" {
				return "not tried"
			}
			return fmt.Sprintf("%d opened, %d errors", i.Opened, i.Errors)
		}
	}
	return "not tried"
}

// benchNoFile is the open-file limit the bench wants for itself and the
// processes it starts: 10,000 idle sessions are 20,000 descriptors in the
// bastion (client and node side) and 10,000 in this process and in the
// sink, more than the usual hard limit of 20,000 or less.
const benchNoFile = 65536

// noFileLimit is the soft limit to set: benchNoFile, or the hard limit if
// that is higher, within fs.nr_open (the most root may raise the hard
// limit to).
func noFileLimit(hard uint64) uint64 {
	want := uint64(benchNoFile)
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n < want {
			want = n
		}
	}
	return max(want, hard)
}

// noFileOf reads the soft open-file limit of pid (0 if unknown).
func noFileOf(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "Max open files"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				n, _ := strconv.ParseUint(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}
