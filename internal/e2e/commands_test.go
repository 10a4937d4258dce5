package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern-dev/postern/internal/testenv"
)

// runFail runs a binary that must fail and returns its stderr.
func runFail(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("%s %s succeeded, want failure:\n%s", filepath.Base(bin), strings.Join(args, " "), out)
	}
	return string(out)
}

func TestSignerCommands(t *testing.T) {
	signer := testenv.GoBuild(t, "./signer")
	keygen := testenv.RequireBinary(t, "ssh-keygen")
	dir := t.TempDir()

	if out := run(t, signer, "--version"); !strings.HasPrefix(out, "postern-signer ") {
		t.Errorf("--version: %q", out)
	}
	if out := run(t, signer, "--help"); !strings.Contains(out, "postern-signer init --dir DIR") {
		t.Errorf("--help: %q", out)
	}
	out := runFail(t, signer)
	if !strings.Contains(out, "postern-signer: error: no configuration file given") || !strings.Contains(out, "postern-signer: hint: run postern-signer init") {
		t.Errorf("no args: %q", out)
	}

	run(t, signer, "init", "--dir", dir, "--key-type", "ecdsa")
	for _, f := range []string{"user_ca", "host_ca"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, fi, err)
		}
	}
	before := readFile(t, filepath.Join(dir, "user_ca"))
	if out := run(t, signer, "init", "--dir", dir); !strings.Contains(out, "kept existing") {
		t.Errorf("second init: %q", out)
	}
	if after := readFile(t, filepath.Join(dir, "user_ca")); string(after) != string(before) {
		t.Fatal("init overwrote an existing CA key")
	}
	// ssh-keygen reads the CA key postern wrote.
	if out := run(t, keygen, "-y", "-f", filepath.Join(dir, "user_ca")); !strings.HasPrefix(out, "ecdsa-sha2-nistp256 ") {
		t.Errorf("ssh-keygen -y: %q", out)
	}
	cfg := filepath.Join(dir, "postern.toml")
	if out := run(t, signer, "check-config", "--config", cfg); !strings.Contains(out, "ok") {
		t.Errorf("check-config of the starter config: %q", out)
	}

	// A broken config names file, line and key for every problem.
	bad := filepath.Join(dir, "bad.toml")
	writeFile(t, bad, "[signer]\nlisten = \"127.0.0.1:1\"\nlistne = \"x\"\n[[role]]\nname = \"a\"\ngroups = [\"g\"]\nmax_ttl = \"forever\"\n")
	out = runFail(t, signer, "check-config", "--config", bad)
	// A value that cannot be decoded stops decoding at that line.
	if !strings.Contains(out, bad+":7: role.max_ttl: invalid duration") {
		t.Errorf("bad config: %q", out)
	}
	writeFile(t, bad, "[signer]\nlistne = \"x\"\n[[role]]\nname = \"a\"\ngroups = []\nrecording = \"maybe\"\n")
	out = runFail(t, signer, "check-config", "--config", bad)
	if !strings.Contains(out, bad+":2: signer.listne: unknown key") {
		t.Errorf("unknown key: %q", out)
	}
	writeFile(t, bad, "[[role]]\nname = \"a\"\ngroups = []\nrecording = \"maybe\"\n")
	out = runFail(t, signer, "check-config", "--config", bad)
	if !strings.Contains(out, bad+":3: role[0].groups") || !strings.Contains(out, bad+":4: role[0].recording") {
		t.Errorf("every problem at once: %q", out)
	}
	out = runFail(t, signer, "check-config", "--config", filepath.Join(dir, "missing.toml"))
	if !strings.Contains(out, "missing.toml") {
		t.Errorf("missing config: %q", out)
	}

	// host-cert: a host certificate ssh-keygen recognises.
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	run(t, keygen, "-q", "-t", "ed25519", "-N", "", "-f", hostKey)
	run(t, signer, "host-cert", "--config", cfg, "--host", "node1.internal,10.0.0.5", "--pubkey", hostKey+".pub")
	out = run(t, keygen, "-L", "-f", hostKey+"-cert.pub")
	for _, want := range []string{"host certificate", "node1.internal", "10.0.0.5"} {
		if !strings.Contains(out, want) {
			t.Errorf("ssh-keygen -L lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(string(readFile(t, filepath.Join(dir, "audit.log"))), `"event":"hostcert.issued"`) {
		t.Error("host-cert wrote no audit event")
	}
}

func TestCLIHelpAndVersion(t *testing.T) {
	cli := testenv.GoBuild(t, "./agent-helper")
	if out := run(t, cli, "--version"); !strings.HasPrefix(out, "postern ") {
		t.Errorf("--version: %q", out)
	}
	out := run(t, cli, "--help")
	for _, want := range []string{"postern login", "postern status", "postern logout", "postern config"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	out = runFail(t, cli, "frobnicate")
	if !strings.Contains(out, `postern: error: unknown command "frobnicate"`) || !strings.Contains(out, "postern: hint:") {
		t.Errorf("unknown command: %q", out)
	}
	cmd := exec.Command(cli, "login", "--help")
	b, _ := cmd.CombinedOutput()
	if !strings.Contains(string(b), "-device") || !strings.Contains(string(b), "-write-files") {
		t.Errorf("login --help: %s", b)
	}
}
