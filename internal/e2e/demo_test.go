package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern-dev/postern/internal/testenv"
)

// TestDemo runs the README's make demo script with its self-check (login
// through the test IdP, postern config, ssh -J node1 hostname) and no wait.
func TestDemo(t *testing.T) {
	for _, b := range []string{"ssh", "ssh-agent", "ssh-keygen", "sshd", "unshare"} {
		testenv.RequireBinary(t, b)
	}
	bin := t.TempDir()
	for name, pkg := range map[string]string{
		"postern-signer": "./signer", "postern": "./agent-helper", "postern-bastion": "./bastion",
		"postern-testidp": "./internal/testidp/cmd/postern-testidp",
	} {
		if err := os.Symlink(testenv.GoBuild(t, pkg), filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	port := func() string { return strings.TrimPrefix(freeAddr(t), "127.0.0.1:") }
	dir := filepath.Join(t.TempDir(), "demo")
	cmd := exec.Command("bash", "../demo/demo.sh")
	cmd.Env = append(os.Environ(), "DEMO_DIR="+dir, "BIN="+bin, "DEMO_WAIT=0",
		"SIGNER_PORT="+port(), "IDP_PORT="+port(), "BASTION_PORT="+port(),
		"DEMO_NS_PREFIX=pe2e-demo", "DEMO_VETH=pt", "DEMO_NET=10.215", "SSH_AUTH_SOCK=", "POSTERN_HOME=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		logs, _ := exec.Command("sh", "-c", "tail -n 20 "+dir+"/logs/*.log").CombinedOutput()
		t.Fatalf("demo failed: %v\n%s\nlogs:\n%s", err, out, logs)
	}
	if !strings.Contains(string(out), "self-check passed") || !strings.Contains(string(out), "printed 'node1'") && os.Geteuid() == 0 {
		t.Fatalf("demo output:\n%s", out)
	}
	// The hop was recorded (recording is on by default) and kept locally.
	casts, _ := filepath.Glob(filepath.Join(dir, "recordings", "recordings", "*", "*", "*", "*.cast"))
	if len(casts) == 0 {
		t.Fatalf("the demo's hop left no recording in %s/recordings", dir)
	}
}
