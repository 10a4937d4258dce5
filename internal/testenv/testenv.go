package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lockDir holds the flock(2) files that serialise work shared between
// concurrently running test processes (user creation, address leases).
const lockDir = "/run/postern-e2e"

// Strict reports whether missing prerequisites must fail the test instead of
// skipping it: CI=true or POSTERN_REQUIRE_E2E=1.
func Strict() bool {
	return os.Getenv("CI") == "true" || os.Getenv("POSTERN_REQUIRE_E2E") == "1"
}

// unavailable skips the test, or fails it when [Strict].
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if Strict() {
		t.Fatalf(format+" (CI/POSTERN_REQUIRE_E2E set: failing instead of skipping)", args...)
	}
	t.Skipf(format, args...)
}

// installHints says which package provides a program on Debian/Ubuntu.
var installHints = map[string]string{
	"sshd":       "apt-get install openssh-server",
	"ssh":        "apt-get install openssh-client",
	"ssh-agent":  "apt-get install openssh-client",
	"ssh-keygen": "apt-get install openssh-client",
	"ip":         "apt-get install iproute2",
	"useradd":    "apt-get install passwd",
	"go":         "install Go from https://go.dev/dl/",
}

// RequireBinary returns the absolute path of an external program, searching
// PATH plus /usr/sbin and /usr/local/sbin. A missing program skips the test,
// or fails it when [Strict], with a hint how to install it.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	if p, ok := findBinary(name, os.Getenv("PATH")); ok {
		return p
	}
	hint := installHints[name]
	if hint == "" {
		hint = "install it or add its directory to PATH"
	}
	unavailable(t, "testenv: %s not found in PATH, /usr/sbin or /usr/local/sbin; hint: %s", name, hint)
	return ""
}

func findBinary(name, path string) (string, bool) {
	dirs := append(filepath.SplitList(path), "/usr/sbin", "/usr/local/sbin", "/sbin")
	for _, dir := range dirs {
		if dir == "" {
			continue
		}
		p, err := filepath.Abs(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

type build struct {
	once sync.Once
	path string
	err  error
}

var (
	buildMu     sync.Mutex
	builds      = map[string]*build{}
	buildOnce   sync.Once
	buildDir    string
	buildDirErr error
)

// GoBuild builds a main package of this module (e.g. "./signer", relative to
// the module root) with -trimpath, once per test process, and returns the
// path of the binary. Binaries live in a per-process temporary directory;
// directories left by earlier, finished test processes are removed.
func GoBuild(t testing.TB, pkg string) string {
	t.Helper()
	goBin := RequireBinary(t, "go")
	buildMu.Lock()
	b := builds[pkg]
	if b == nil {
		b = &build{}
		builds[pkg] = b
	}
	buildMu.Unlock()
	b.once.Do(func() { b.path, b.err = goBuild(goBin, pkg) })
	if b.err != nil {
		t.Fatalf("testenv: %v", b.err)
	}
	return b.path
}

func goBuild(goBin, pkg string) (string, error) {
	buildOnce.Do(func() {
		sweepBuildDirs()
		buildDir, buildDirErr = os.MkdirTemp("", fmt.Sprintf("postern-e2e-bin-%d-", os.Getpid()))
	})
	if buildDirErr != nil {
		return "", fmt.Errorf("create build dir: %w", buildDirErr)
	}
	root, err := moduleRoot(goBin)
	if err != nil {
		return "", err
	}
	sub := strings.NewReplacer("/", "_", ".", "_").Replace(strings.Trim(pkg, "./"))
	out := filepath.Join(buildDir, sub, filepath.Base(pkg))
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

// moduleRoot returns the directory holding this module's go.mod.
func moduleRoot(goBin string) (string, error) {
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("run go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("find module root: not inside a module")
	}
	return filepath.Dir(gomod), nil
}

// sweepBuildDirs removes build directories of test processes that have ended.
func sweepBuildDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "postern-e2e-bin-*"))
	for _, d := range dirs {
		f := strings.SplitN(strings.TrimPrefix(filepath.Base(d), "postern-e2e-bin-"), "-", 2)
		pid, err := strconv.Atoi(f[0])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(d)
		}
	}
}

// Logs captures a process's output. At cleanup it is written with t.Log,
// only if the test failed. It is safe for concurrent use.
type Logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// NewLogs returns a Logs whose content is logged under name when t fails.
// Create it before starting the process so it is printed after the process
// is stopped (cleanups run last-in first-out).
func NewLogs(t testing.TB, name string) *Logs {
	l := &Logs{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, l.String())
		}
	})
	return l
}

// Write appends p to the log.
func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything written so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// flockFile opens (creating) path and takes an exclusive flock on it. With
// block false it returns ok=false if another holder has it. The lock is held
// until f is closed or the process exits.
func flockFile(path string, block bool) (f *os.File, ok bool, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, false, fmt.Errorf("create lock dir: %w", err)
	}
	f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("open lock %s: %w", path, err)
	}
	how := syscall.LOCK_EX
	if !block {
		how |= syscall.LOCK_NB
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, true, nil
}

// stopProcess sends SIGTERM to cmd's process group, then SIGKILL if it has
// not exited within a few seconds; done must be closed when cmd.Wait returns.
func stopProcess(cmd *exec.Cmd, done <-chan struct{}) {
	pid := cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		<-done
	}
}
