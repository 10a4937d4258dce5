package krl

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/testenv"
)

// keygenQuery runs `ssh-keygen -Q -f krl FILE...` and returns, per file,
// whether OpenSSH says it is revoked.
func keygenQuery(t *testing.T, keygen, krlPath string, files []string) map[string]bool {
	t.Helper()
	out, err := exec.Command(keygen, append([]string{"-Q", "-f", krlPath}, files...)...).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		t.Fatalf("ssh-keygen -Q: %v\n%s", err, out)
	}
	got := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// "FILE (comment): REVOKED" or "FILE (comment): ok"
		i := strings.LastIndex(line, ": ")
		j := strings.Index(line, " (")
		if i < 0 || j < 0 {
			t.Fatalf("unexpected ssh-keygen -Q line %q", line)
		}
		switch verdict := line[i+2:]; verdict {
		case "REVOKED":
			got[line[:j]] = true
		case "ok":
			got[line[:j]] = false
		default:
			t.Fatalf("unexpected ssh-keygen -Q verdict %q", verdict)
		}
	}
	if len(got) != len(files) {
		t.Fatalf("ssh-keygen -Q answered for %d of %d files:\n%s", len(got), len(files), out)
	}
	return got
}

func writeKey(t *testing.T, dir, name string, pub ssh.PublicKey) string {
	t.Helper()
	p := filepath.Join(dir, name)
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + " " + name + "\n"
	if err := os.WriteFile(p, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestOpenSSHAgrees writes a KRL with this package and asks the real
// ssh-keygen about every key; Check must give the same answers.
func TestOpenSSHAgrees(t *testing.T) {
	keygen := testenv.RequireBinary(t, "ssh-keygen")
	dir := t.TempDir()
	ca, otherCA := newSigner(t), newSigner(t)
	alice, bob, carol, dave, erin := newSigner(t).PublicKey(), newSigner(t).PublicKey(), newSigner(t).PublicKey(), newSigner(t).PublicKey(), newSigner(t).PublicKey()

	k := &KRL{Version: 12, GeneratedDate: 1700000000, Comment: "postern test"}
	k.RevokeSerial(ca.PublicKey(), 42)
	k.Certs = append(k.Certs, CertSection{CA: ca.PublicKey(), Serials: []SerialRange{{1000, 2000}, {1 << 63, 1<<63 + 1}}})
	k.RevokeKeyID(ca.PublicKey(), "bob@example.com")
	k.RevokeKey(carol)
	k.RevokeKeySHA256(dave)
	k.Certs = append(k.Certs, CertSection{CA: nil, KeyIDs: []string{"wild@example.com"}}) // any CA

	keys := map[string]ssh.PublicKey{
		"alice-serial-42":       newCert(t, ca, alice, "alice@example.com", 42),
		"alice-serial-43":       newCert(t, ca, alice, "alice@example.com", 43),
		"alice-serial-1500":     newCert(t, ca, alice, "alice@example.com", 1500),
		"alice-serial-2001":     newCert(t, ca, alice, "alice@example.com", 2001),
		"alice-serial-2^63+1":   newCert(t, ca, alice, "alice@example.com", 1<<63+1),
		"alice-other-ca-42":     newCert(t, otherCA, alice, "alice@example.com", 42),
		"alice-plain":           alice,
		"bob-key-id":            newCert(t, ca, bob, "bob@example.com", 8),
		"bob-key-id-other-ca":   newCert(t, otherCA, bob, "bob@example.com", 8),
		"bob-other-key-id":      newCert(t, ca, bob, "bob@example.org", 9),
		"carol-plain":           carol,
		"carol-cert":            newCert(t, otherCA, carol, "carol@example.com", 10),
		"dave-plain-sha256":     dave,
		"dave-cert-sha256":      newCert(t, ca, dave, "dave@example.com", 11),
		"erin-cert-ok":          newCert(t, ca, erin, "erin@example.com", 12),
		"erin-serial-0-key-id0": newCert(t, ca, erin, "erin@example.com", 0),
		"wild-other-ca":         newCert(t, otherCA, erin, "wild@example.com", 13),
	}
	data, err := k.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	krlPath := filepath.Join(dir, "postern.krl")
	if err := os.WriteFile(krlPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var files []string
	for name, pub := range keys {
		files = append(files, writeKey(t, dir, name+".pub", pub))
	}
	got := keygenQuery(t, keygen, krlPath, files)
	for name, pub := range keys {
		openssh := got[filepath.Join(dir, name+".pub")]
		ours := k.Revoked(pub)
		if openssh != ours {
			t.Errorf("%s: ssh-keygen says revoked=%v, Check says %v (%v)", name, openssh, ours, k.Check(pub))
		}
	}
	for _, must := range []string{"alice-serial-42", "alice-serial-1500", "alice-serial-2^63+1", "bob-key-id", "carol-plain", "carol-cert", "dave-cert-sha256", "wild-other-ca"} {
		if !got[filepath.Join(dir, must+".pub")] {
			t.Errorf("%s: want revoked by OpenSSH", must)
		}
	}
	for _, must := range []string{"alice-serial-43", "alice-other-ca-42", "bob-other-key-id", "erin-cert-ok"} {
		if got[filepath.Join(dir, must+".pub")] {
			t.Errorf("%s: want not revoked by OpenSSH", must)
		}
	}

	// ssh-keygen lists what it loaded.
	out, err := exec.Command(keygen, "-Q", "-l", "-f", krlPath).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -Q -l: %v\n%s", err, out)
	}
	for _, want := range []string{"KRL version 12", "serial: 42", "serial: 1000-2000", "id: bob@example.com", "Comment: postern test"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("ssh-keygen -Q -l output lacks %q:\n%s", want, out)
		}
	}
}

// TestParseOpenSSHGenerated decodes KRLs written by `ssh-keygen -k`,
// including the serial bitmaps this package never writes.
func TestParseOpenSSHGenerated(t *testing.T) {
	keygen := testenv.RequireBinary(t, "ssh-keygen")
	dir := t.TempDir()
	ca := newSigner(t)
	caPath := writeKey(t, dir, "ca.pub", ca.PublicKey())
	plainKey, hashKey := newSigner(t).PublicKey(), newSigner(t).PublicKey()

	var spec strings.Builder
	spec.WriteString("serial: 7\nserial: 100-300\nid: alice@example.com\nid: bob@example.com\n")
	for s := 1000; s <= 1100; s += 2 { // dense but gappy: ssh-keygen writes a bitmap
		fmt.Fprintf(&spec, "serial: %d\n", s)
	}
	fmt.Fprintf(&spec, "key: %s", ssh.MarshalAuthorizedKey(plainKey))
	fmt.Fprintf(&spec, "hash: %s\n", ssh.FingerprintSHA256(hashKey))
	specPath := filepath.Join(dir, "spec")
	if err := os.WriteFile(specPath, []byte(spec.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	krlPath := filepath.Join(dir, "out.krl")
	if out, err := exec.Command(keygen, "-k", "-f", krlPath, "-z", "5", "-s", caPath, specPath).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -k: %v\n%s", err, out)
	}
	data, err := os.ReadFile(krlPath)
	if err != nil {
		t.Fatal(err)
	}
	k, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse of ssh-keygen's KRL: %v", err)
	}
	if k.Version != 5 {
		t.Errorf("Version = %d, want 5", k.Version)
	}
	revoked := func(serial uint64, keyID string) bool {
		return k.Revoked(newCert(t, ca, newSigner(t).PublicKey(), keyID, serial))
	}
	for _, s := range []uint64{7, 100, 200, 300, 1000, 1002, 1050, 1100} {
		if !revoked(s, "x") {
			t.Errorf("serial %d not revoked", s)
		}
	}
	for _, s := range []uint64{6, 8, 99, 301, 999, 1001, 1099, 1101, 1102} {
		if revoked(s, "x") {
			t.Errorf("serial %d revoked", s)
		}
	}
	if !revoked(50, "alice@example.com") || !revoked(50, "bob@example.com") || revoked(50, "carol@example.com") {
		t.Error("key IDs decoded wrong")
	}
	if !k.Revoked(plainKey) || !k.Revoked(hashKey) || k.Revoked(newSigner(t).PublicKey()) {
		t.Error("keys decoded wrong")
	}
	// The decoded KRL re-encodes to one ssh-keygen reads the same way.
	again, err := k.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	k2, err := Parse(again)
	if err != nil {
		t.Fatal(err)
	}
	if b2, _ := k2.Marshal(); string(b2) != string(again) {
		t.Error("re-encoding is not stable")
	}
}
