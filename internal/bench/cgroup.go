package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cpuGroup accounts the CPU time of a process and everything it forks,
// including processes that have exited: sshd's per-connection processes
// are not all reaped by the listener, so its cutime misses them. It is a
// cgroup v2 directory (cpu.stat) or a v1 cpuacct one (cpuacct.usage).
type cpuGroup struct {
	dir string
	v2  bool
}

// newCPUGroup creates the group; nil when neither hierarchy is writable.
func newCPUGroup(name string) *cpuGroup {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		d := filepath.Join("/sys/fs/cgroup", fmt.Sprintf("postern-bench-%d-%s", netID, name))
		if os.Mkdir(d, 0o755) == nil || isDir(d) {
			return &cpuGroup{dir: d, v2: true}
		}
	}
	if isDir("/sys/fs/cgroup/cpuacct") {
		d := filepath.Join("/sys/fs/cgroup/cpuacct", fmt.Sprintf("postern-bench-%d-%s", netID, name))
		if os.Mkdir(d, 0o755) == nil || isDir(d) {
			return &cpuGroup{dir: d}
		}
	}
	return nil
}

func isDir(p string) bool { fi, err := os.Stat(p); return err == nil && fi.IsDir() }

func (g *cpuGroup) add(pid int) error {
	return os.WriteFile(filepath.Join(g.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
}

// seconds is the group's CPU time so far.
func (g *cpuGroup) seconds() (float64, error) {
	if g.v2 {
		b, err := os.ReadFile(filepath.Join(g.dir, "cpu.stat"))
		if err != nil {
			return 0, err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "usage_usec "); ok {
				n, err := strconv.ParseFloat(v, 64)
				return n / 1e6, err
			}
		}
		return 0, fmt.Errorf("no usage_usec in %s/cpu.stat", g.dir)
	}
	b, err := os.ReadFile(filepath.Join(g.dir, "cpuacct.usage"))
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	return n / 1e9, err
}

// remove deletes the group once its processes are gone.
func (g *cpuGroup) remove() { _ = os.Remove(g.dir) }
