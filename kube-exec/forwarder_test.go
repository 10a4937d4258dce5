package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern-dev/postern/internal/testenv"
)

// copyExe copies the executable src into dir.
func copyExe(t *testing.T, src, dir string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// `kube-exec forwarder` runs postern-kube-forwarder from kube-exec's own
// directory with the same arguments, and says what is missing when there
// is no such binary.
func TestForwarderAlias(t *testing.T) {
	kubeExec := testenv.GoBuild(t, "./kube-exec")
	fwd := testenv.GoBuild(t, "./kube-exec/cmd/postern-kube-forwarder")
	emptyPath := "PATH=" + t.TempDir()

	// Side by side, as in a release archive or bin/ of a build.
	both := t.TempDir()
	ke := copyExe(t, kubeExec, both)
	copyExe(t, fwd, both)
	cmd := exec.Command(ke, "forwarder", "--version")
	cmd.Env = []string{emptyPath}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "postern-kube-forwarder ") {
		t.Errorf("kube-exec forwarder --version: %v: %q", err, out)
	}
	// The arguments reach the forwarder: its own refusal of a config
	// file that does not exist.
	cmd = exec.Command(ke, "forwarder", "--config", filepath.Join(both, "missing.toml"))
	cmd.Env = []string{emptyPath}
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "postern-kube-forwarder:") || !strings.Contains(string(out), "missing.toml") {
		t.Errorf("kube-exec forwarder --config missing: %v: %q", err, out)
	}

	// Alone: a clear error, with what to install.
	alone := t.TempDir()
	ke = copyExe(t, kubeExec, alone)
	cmd = exec.Command(ke, "forwarder", "--config", "x.toml")
	cmd.Env = []string{emptyPath}
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "postern-kube-forwarder") || !strings.Contains(string(out), "install") {
		t.Errorf("kube-exec forwarder without the binary: %v: %q", err, out)
	}

	// On PATH.
	cmd = exec.Command(ke, "forwarder", "--version")
	cmd.Env = []string{"PATH=" + filepath.Dir(fwd)}
	if out, err := cmd.CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "postern-kube-forwarder ") {
		t.Errorf("kube-exec forwarder with the forwarder on PATH: %v: %q", err, out)
	}
}

// The client binary does not link the forwarder's dependencies: they are
// what made every kubectl command through kube-exec start slowly.
func TestClientStaysLight(t *testing.T) {
	goBin := testenv.RequireBinary(t, "go")
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, heavy := range []string{"k8s.io/client-go", "k8s.io/apimachinery", "github.com/aws/", "github.com/prometheus/", "/kube-exec/forwarder"} {
			if strings.Contains(pkg, heavy) {
				t.Errorf("kube-exec links %s", pkg)
			}
		}
	}
}
