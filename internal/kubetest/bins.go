package kubetest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/postern-dev/postern/internal/testenv"
)

// Version is the Kubernetes release the tests run. It must equal the
// k8s.io/kubernetes version in build/go.mod (a test checks); change both
// with build/update.sh.
const Version = "v1.37.2"

// Binaries are the programs a cluster runs.
type Binaries struct {
	APIServer string
	Etcd      string
	Kubectl   string
	// TestKubelet serves a node's exec, attach and port-forward endpoints
	// (build/cmd/testkubelet; see [Cluster.StartNode]).
	TestKubelet string
}

var (
	binsOnce sync.Once
	bins     Binaries
	binsLog  string
	binsErr  error
)

// FindBinaries returns kube-apiserver, etcd, kubectl and testkubelet,
// building them on first use (see the package documentation). When they
// cannot be had the test is skipped, or failed under testenv.Strict.
func FindBinaries(t testing.TB) Binaries {
	t.Helper()
	if dir := os.Getenv("POSTERN_KUBE_BIN_DIR"); dir != "" {
		b, err := binariesIn(dir)
		if err != nil {
			t.Fatalf("kubetest: POSTERN_KUBE_BIN_DIR: %v", err)
		}
		return b
	}
	goBin := testenv.RequireBinary(t, "go")
	binsOnce.Do(func() { bins, binsLog, binsErr = build(goBin) })
	if binsErr != nil {
		msg := fmt.Sprintf("kubetest: kubernetes %s unavailable: %v\nhint: run `make kube-bins` (it needs the Go module proxy), or set POSTERN_KUBE_BIN_DIR to a directory with kube-apiserver, etcd, kubectl and testkubelet", Version, binsErr)
		if testenv.Strict() {
			t.Fatalf("%s (CI/POSTERN_REQUIRE_E2E set: failing instead of skipping)", msg)
		}
		t.Skip(msg)
	}
	if binsLog != "" {
		t.Logf("kubetest: %s", binsLog)
	}
	return bins
}

// CachedBinaries returns the binaries without building them: those in
// POSTERN_KUBE_BIN_DIR when it is set, else those build/build.sh left in
// its cache directory (${POSTERN_CACHE:-${XDG_CACHE_HOME:-~/.cache}/postern}/kube-VERSION/bin).
// It is for programs that must not start a 10-minute build (make bench).
func CachedBinaries() (Binaries, error) {
	if dir := os.Getenv("POSTERN_KUBE_BIN_DIR"); dir != "" {
		return binariesIn(dir)
	}
	base := os.Getenv("POSTERN_CACHE")
	if base == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return Binaries{}, fmt.Errorf("find the cache directory: %w", err)
			}
			cache = filepath.Join(home, ".cache")
		}
		base = filepath.Join(cache, "postern")
	}
	return binariesIn(filepath.Join(base, "kube-"+Version, "bin"))
}

// KubectlPath returns the kubectl binary of [Version].
func KubectlPath(t testing.TB) string {
	t.Helper()
	return FindBinaries(t).Kubectl
}

// build runs build/build.sh, which builds the binaries unless its stamp says
// they are current, and prints their directory as its last line.
func build(goBin string) (b Binaries, log string, err error) {
	root, err := moduleRoot(goBin)
	if err != nil {
		return Binaries{}, "", err
	}
	script := filepath.Join(root, "internal", "kubetest", "build", "build.sh")
	if _, err := os.Stat(script); err != nil {
		return Binaries{}, "", fmt.Errorf("find build script: %w", err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("bash", script)
	cmd.Env = append(os.Environ(), "GO="+goBin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return Binaries{}, "", fmt.Errorf("run %s: %w\n%s", script, err, tail(stderr.String(), 40))
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if b, err = binariesIn(lines[len(lines)-1]); err != nil {
		return Binaries{}, "", err
	}
	if strings.Contains(stderr.String(), "kube-bins: built ") {
		log = strings.TrimSpace(stderr.String())
	}
	return b, log, nil
}

// BinariesIn returns the binaries in dir, checking that they are there.
func BinariesIn(dir string) (Binaries, error) { return binariesIn(dir) }

func binariesIn(dir string) (Binaries, error) {
	b := Binaries{
		APIServer:   filepath.Join(dir, "kube-apiserver"),
		Etcd:        filepath.Join(dir, "etcd"),
		Kubectl:     filepath.Join(dir, "kubectl"),
		TestKubelet: filepath.Join(dir, "testkubelet"),
	}
	for _, p := range []string{b.APIServer, b.Etcd, b.Kubectl, b.TestKubelet} {
		fi, err := os.Stat(p)
		if err != nil {
			return Binaries{}, fmt.Errorf("find binary: %w", err)
		}
		if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			return Binaries{}, fmt.Errorf("find binary: %s is not an executable file", p)
		}
	}
	return b, nil
}

// moduleRoot returns the directory holding postern's go.mod; tests run in
// their package's directory, inside the module.
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

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
