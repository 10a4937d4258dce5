package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// netnsSlots is the number of /30 networks in 10.213.0.0/16.
const netnsSlots = 1 << 14

// Netns is a network namespace created by the test, joined to the host
// namespace by a veth pair: the host end has HostIP, the namespace end NodeIP
// (a /30 out of 10.213.0.0/16), and lo is up inside. It is removed at
// cleanup.
type Netns struct {
	Name   string // namespace name, as used by ip netns
	HostIP string // address of the host end of the veth pair
	NodeIP string // address of the namespace end of the veth pair

	ip string // absolute path of ip(8)
}

var invalidNameChars = regexp.MustCompile(`[^a-zA-Z0-9_-]+`)

// NewNetns creates a namespace named prefix-N. Its /30 is leased through a
// flock(2)ed file per slot under /run/postern-e2e, so concurrently running
// test processes never share one, and a crashed process's lease ends with
// it; leftovers of a crashed holder of the same slot are deleted first.
// It needs root: otherwise the test is skipped (failed when [Strict]).
func NewNetns(t testing.TB, prefix string) *Netns {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "testenv: network namespaces need root (run the e2e tests as root, e.g. in the CI container)")
	}
	ipBin := RequireBinary(t, "ip")
	prefix = invalidNameChars.ReplaceAllString(prefix, "-")
	if prefix == "" {
		prefix = "pe2e"
	}

	// Scan from slot 0 so that lock files stay few (one per concurrent user).
	for slot := range netnsSlots {
		lock, ok, err := flockFile(filepath.Join(lockDir, "netns", fmt.Sprintf("%d.lock", slot)), false)
		if err != nil {
			t.Fatalf("testenv: lease netns slot: %v", err)
		}
		if !ok {
			continue
		}
		n := &Netns{
			Name:   fmt.Sprintf("%s-%d", prefix, slot),
			HostIP: fmt.Sprintf("10.213.%d.%d", slot/64, slot%64*4+1),
			NodeIP: fmt.Sprintf("10.213.%d.%d", slot/64, slot%64*4+2),
			ip:     ipBin,
		}
		hostIf, nodeIf := fmt.Sprintf("pe2e%dh", slot), fmt.Sprintf("pe2e%dn", slot)
		// We hold the lease: anything left under these names is a crashed
		// holder's. Deleting the host end deletes the pair synchronously;
		// ip netns del alone frees the veth only asynchronously.
		_ = exec.Command(ipBin, "link", "del", hostIf).Run()
		_ = exec.Command(ipBin, "netns", "del", n.Name).Run()

		t.Cleanup(func() {
			_ = exec.Command(ipBin, "link", "del", hostIf).Run()
			if out, err := exec.Command(ipBin, "netns", "del", n.Name).CombinedOutput(); err != nil {
				t.Errorf("testenv: delete netns %s: %v: %s", n.Name, err, out)
			}
			lock.Close()
		})
		steps := [][]string{
			{"netns", "add", n.Name},
			{"link", "add", hostIf, "type", "veth", "peer", "name", nodeIf},
			{"link", "set", nodeIf, "netns", n.Name},
			{"addr", "add", n.HostIP + "/30", "dev", hostIf},
			{"link", "set", hostIf, "up"},
			{"netns", "exec", n.Name, "ip", "addr", "add", n.NodeIP + "/30", "dev", nodeIf},
			{"netns", "exec", n.Name, "ip", "link", "set", nodeIf, "up"},
			{"netns", "exec", n.Name, "ip", "link", "set", "lo", "up"},
		}
		for j, args := range steps {
			out, err := exec.Command(ipBin, args...).CombinedOutput()
			if err == nil {
				continue
			}
			msg := fmt.Sprintf("testenv: ip %s: %v: %s", strings.Join(args, " "), err, out)
			if j == 0 {
				// No namespace support here (e.g. an unprivileged container).
				unavailable(t, "%s", msg)
			}
			t.Fatal(msg)
		}
		return n
	}
	t.Fatalf("testenv: no free netns slot in 10.213.0.0/16")
	return nil
}

// Command returns a command that runs name inside the namespace
// (ip netns exec NAME name args...).
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, n.ip, append([]string{"netns", "exec", n.Name, name}, args...)...)
}
