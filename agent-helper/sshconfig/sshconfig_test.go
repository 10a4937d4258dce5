package sshconfig

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("..", "..", "testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

var params = Params{
	BastionName: "postern-bastion",
	BastionAddr: "bastion.example.com:2222",
	JumpHosts:   []string{"*.prod.internal", "10.20.*"},
	KnownHosts:  "/home/alice/.postern/known_hosts",
	HostCAs:     []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl postern host CA"},
	Signer:      "https://signer.example.com",
}

func TestGolden(t *testing.T) {
	block, err := Block(params)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "ssh_config", block)
	golden(t, "known_hosts", KnownHosts(params))
}

func TestBlockRefusesBadInput(t *testing.T) {
	for name, p := range map[string]Params{
		"no port":      {BastionName: "b", BastionAddr: "host"},
		"bad name":     {BastionName: "b *", BastionAddr: "h:22"},
		"bad jumphost": {BastionName: "b", BastionAddr: "h:22", JumpHosts: []string{"a b"}},
	} {
		if _, err := Block(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestInstallIdempotent(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	kh := filepath.Join(dir, "pk", "known_hosts")
	user := "Host github.com\n    User git\n"
	if err := os.WriteFile(cfg, []byte(user), 0o644); err != nil {
		t.Fatal(err)
	}
	block, _ := Block(params)
	changed, err := Install(cfg, block, kh, KnownHosts(params))
	if err != nil || !changed {
		t.Fatalf("first install: changed=%v err=%v", changed, err)
	}
	first, _ := os.ReadFile(cfg)
	changed, err = Install(cfg, block, kh, KnownHosts(params))
	if err != nil || changed {
		t.Fatalf("second install: changed=%v err=%v", changed, err)
	}
	second, _ := os.ReadFile(cfg)
	if string(first) != string(second) {
		t.Fatal("second install changed the file")
	}
	if !strings.HasPrefix(string(second), user) {
		t.Fatalf("user's own lines not kept:\n%s", second)
	}
	p2 := params
	p2.BastionAddr = "other.example.com:22"
	block2, _ := Block(p2)
	if _, err := Install(cfg, block2, kh, KnownHosts(p2)); err != nil {
		t.Fatal(err)
	}
	third, _ := os.ReadFile(cfg)
	if strings.Count(string(third), BeginMarker) != 1 || !strings.Contains(string(third), "HostName other.example.com") || strings.Contains(string(third), "bastion.example.com") {
		t.Fatalf("block not replaced:\n%s", third)
	}
	if fi, _ := os.Stat(cfg); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode changed to %v", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(kh); !strings.Contains(string(b), "@cert-authority * ssh-ed25519 ") {
		t.Errorf("known_hosts = %q", b)
	}
}

func TestSpliceOneMarker(t *testing.T) {
	if _, err := Splice("x\n"+BeginMarker+"\nHost a\n", "B"); err == nil {
		t.Fatal("accepted a file with only BEGIN")
	}
}
