package e2e

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/testenv"
	"github.com/postern-dev/postern/internal/testidp"
)

// browserLogin runs `postern login --no-browser` and plays the person at
// the browser: open the printed URL, fill the IdP's form, follow the
// redirects through the signer back to the CLI's loopback listener.
func (s *stack) browserLogin(t *testing.T, user, pass string, args ...string) (*loginProc, int) {
	t.Helper()
	p := s.startLogin(t, append([]string{"--no-browser"}, args...)...)
	authURL := p.waitLine(t, func(l string) bool { return strings.HasPrefix(l, "http") })
	res, err := testidp.BrowserLogin(ctx(t), authURL, user, pass, func(u *url.URL) bool {
		return strings.HasPrefix(u.String(), s.signerURL+"/v1/login/callback")
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.https.Get(res.FinalURL.String()) // follows on to the CLI's loopback page
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return p, p.wait(t)
}

// agentCert returns the certificate lines ssh-add -L lists.
func (s *stack) agentCerts(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command(testenv.RequireBinary(t, "ssh-add"), "-L")
	cmd.Env = s.env()
	out, _ := cmd.Output() // exit 1 when the agent is empty
	var certs []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "-cert-v01@openssh.com ") {
			certs = append(certs, l)
		}
	}
	return certs
}

// keygenL is what `ssh-keygen -L` says about a certificate.
type keygenL struct {
	keyID, serial, validFrom, validTo string
	principals, critical, extensions  []string
}

func inspect(t *testing.T, certLine string) keygenL {
	t.Helper()
	f := filepath.Join(t.TempDir(), "c-cert.pub")
	writeFile(t, f, certLine+"\n")
	out := run(t, testenv.RequireBinary(t, "ssh-keygen"), "-L", "-f", f)
	var k keygenL
	section := ""
	for _, l := range strings.Split(out, "\n") {
		tl := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(tl, "Key ID:"):
			k.keyID = strings.Trim(strings.TrimSpace(strings.TrimPrefix(tl, "Key ID:")), `"`)
		case strings.HasPrefix(tl, "Serial:"):
			k.serial = strings.TrimSpace(strings.TrimPrefix(tl, "Serial:"))
		case strings.HasPrefix(tl, "Valid:"):
			m := regexp.MustCompile(`from (\S+) to (\S+)`).FindStringSubmatch(tl)
			if m != nil {
				k.validFrom, k.validTo = m[1], m[2]
			}
		case strings.HasPrefix(tl, "Principals:"):
			section = "p"
		case strings.HasPrefix(tl, "Critical Options:"):
			section = "c"
		case strings.HasPrefix(tl, "Extensions:"):
			section = "e"
		case tl == "" || tl == "(none)":
		case section == "p" && strings.HasPrefix(l, "                "):
			k.principals = append(k.principals, tl)
		case section == "c" && strings.HasPrefix(l, "                "):
			k.critical = append(k.critical, tl)
		case section == "e" && strings.HasPrefix(l, "                "):
			k.extensions = append(k.extensions, tl)
		}
	}
	return k
}

func TestBrowserLoginLoadsAgent(t *testing.T) {
	s := startStack(t, "")
	before := time.Now()
	p, code := s.browserLogin(t, "alice", "alice-pw", "--signer", s.signerURL, "--signer-ca", s.tlsCA)
	if code != 0 {
		t.Fatalf("postern login exit %d\nstdout:\n%s\nstderr:\n%s", code, p.stdout, p.stderr)
	}
	certs := s.agentCerts(t)
	if len(certs) != 1 {
		t.Fatalf("agent holds %d postern certificates, want 1", len(certs))
	}
	k := inspect(t, certs[0])
	if k.keyID != "alice@example.com" {
		t.Errorf("Key ID %q", k.keyID)
	}
	if got := strings.Join(k.principals, ","); got != "dev,root,ubuntu" {
		t.Errorf("principals %q", got)
	}
	// ssh-keygen prints extensions it does not know as the hex of their
	// wire form: a uint32 length and the value.
	for _, want := range []string{"permit-pty", "permit-port-forwarding", "roles@postern UNKNOWN OPTION: " + sshString("infra,dev"), "groups@postern UNKNOWN OPTION: " + sshString("dev,infra")} {
		if !containsPrefix(k.extensions, want) {
			t.Errorf("extensions %q lack %q", k.extensions, want)
		}
	}
	if containsPrefix(k.extensions, "permit-agent-forwarding") || containsPrefix(k.extensions, "permit-X11-forwarding") {
		t.Errorf("extensions %q grant more than the roles allow", k.extensions)
	}
	from, err1 := time.ParseInLocation("2006-01-02T15:04:05", k.validFrom, time.Local)
	to, err2 := time.ParseInLocation("2006-01-02T15:04:05", k.validTo, time.Local)
	if err1 != nil || err2 != nil {
		t.Fatalf("validity %q..%q", k.validFrom, k.validTo)
	}
	// infra max_ttl 4h, dev 8h: the smaller cap wins.
	if d := to.Sub(before); d < 4*time.Hour-time.Minute || d > 4*time.Hour+time.Minute {
		t.Errorf("valid until %v (%v from now), want about 4h", to, d)
	}
	if d := before.Sub(from); d < 30*time.Second || d > 2*time.Minute {
		t.Errorf("valid from %v, want backdated about a minute", from)
	}
	// ssh-add -l lists it as a certificate.
	cmd := exec.Command(testenv.RequireBinary(t, "ssh-add"), "-l")
	cmd.Env = s.env()
	out, _ := cmd.Output()
	if !strings.Contains(string(out), "ED25519-CERT") || !strings.Contains(string(out), "postern:alice@example.com") {
		t.Errorf("ssh-add -l:\n%s", out)
	}
	// No private key on disk.
	if _, err := os.Stat(filepath.Join(s.home, "keys")); err == nil {
		t.Error("key files written without --write-files")
	}
	// The audit log names the person, the serial and the key.
	issued := s.events(t, audit.CertIssued)
	if len(issued) != 1 || issued[0].Person != "alice@example.com" || issued[0].Method != "browser" || issued[0].KeyFP == "" {
		t.Fatalf("cert.issued: %+v", issued)
	}
	if got := strings.TrimSpace(k.serial); got == "" || got != itoa(issued[0].Serial) {
		t.Errorf("serial %q vs audit %d", k.serial, issued[0].Serial)
	}

	// status reads it back; logout removes it.
	out2, _, code := s.cli(t, "status")
	if code != 0 || !strings.Contains(out2, "alice@example.com") || !strings.Contains(out2, "roles:   infra, dev") || !strings.Contains(out2, "left") {
		t.Fatalf("status (exit %d):\n%s", code, out2)
	}
	if out, _, code := s.cli(t, "logout"); code != 0 || !strings.Contains(out, "Removed 1 key") {
		t.Fatalf("logout (exit %d): %s", code, out)
	}
	if n := len(s.agentCerts(t)); n != 0 {
		t.Fatalf("%d certificates left after logout", n)
	}
	if _, errOut, code := s.cli(t, "status"); code == 0 || !strings.Contains(errOut, "postern: error: not logged in") || !strings.Contains(errOut, "postern: hint: run postern login") {
		t.Fatalf("status after logout (exit %d): %s", code, errOut)
	}
}

func TestDeviceLoginAndExpiry(t *testing.T) {
	s := startStack(t, "")
	p := s.startLogin(t, "--device", "--signer", s.signerURL, "--signer-ca", s.tlsCA, "--ttl", "5s", "--write-files")
	verify := p.waitLine(t, func(l string) bool { return strings.HasPrefix(l, "To sign in, open ") })
	uri := strings.TrimSuffix(strings.TrimPrefix(verify, "To sign in, open "), " and enter the code:")
	code := strings.TrimSpace(p.waitLine(t, func(l string) bool { return strings.HasPrefix(l, "    ") }))
	if err := testidp.ApproveDevice(ctx(t), uri, code, "alice", "alice-pw"); err != nil {
		t.Fatal(err)
	}
	if rc := p.wait(t); rc != 0 {
		t.Fatalf("postern login --device exit %d: %s", rc, p.stderr)
	}
	if ev := s.events(t, audit.CertIssued); len(ev) != 1 || ev[0].Method != "device" {
		t.Fatalf("cert.issued: %+v", ev)
	}
	// --write-files: key 0600 and certificate beside it.
	fi, err := os.Stat(filepath.Join(s.home, "keys", "id_ed25519"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	if k := inspect(t, string(readFile(t, filepath.Join(s.home, "keys", "id_ed25519-cert.pub")))); k.keyID != "alice@example.com" {
		t.Fatalf("written cert key id %q", k.keyID)
	}
	// The agent holds it now and drops it when the certificate expires.
	if n := len(s.agentCerts(t)); n != 1 {
		t.Fatalf("agent holds %d certificates right after login", n)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(s.agentCerts(t)) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("ssh-agent still holds the certificate long after it expired")
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestLoginRefusedWithoutRole(t *testing.T) {
	s := startStack(t, "")
	p, code := s.browserLogin(t, "carol", "carol-pw", "--signer", s.signerURL, "--signer-ca", s.tlsCA)
	if code == 0 {
		t.Fatal("carol, in no role's group, got a certificate")
	}
	errOut := p.stderr.String()
	if !strings.Contains(errOut, "postern: error: login refused: no role matches") || !strings.Contains(errOut, "postern: hint: ask an administrator") {
		t.Fatalf("stderr:\n%s", errOut)
	}
	if n := len(s.agentCerts(t)); n != 0 {
		t.Fatalf("agent holds %d certificates", n)
	}
	ev := s.events(t, audit.CertRefused)
	if len(ev) != 1 || ev[0].Person != "carol@example.com" {
		t.Fatalf("cert.refused: %+v", ev)
	}
}

func TestLoginNeedsTrustedSigner(t *testing.T) {
	s := startStack(t, "")
	// Without pinning the development certificate the CLI refuses to talk.
	_, errOut, code := s.cli(t, "login", "--no-browser", "--signer", s.signerURL)
	if code == 0 || !strings.Contains(errOut, "not trusted") || !strings.Contains(errOut, "--signer-ca") {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	_, errOut, code = s.cli(t, "login")
	if code == 0 || !strings.Contains(errOut, "no signer known") || !strings.Contains(errOut, "postern: hint: pass --signer") {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
}

func TestConfigInstall(t *testing.T) {
	s := startStack(t, "")
	sshCfg := filepath.Join(s.dir, "ssh_config")
	writeFile(t, sshCfg, "Host example\n    User me\n")
	out, errOut, code := s.cli(t, "config", "--signer", s.signerURL, "--signer-ca", s.tlsCA, "--install", sshCfg)
	if code != 0 || !strings.Contains(out, "updated") {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	got := string(readFile(t, sshCfg))
	for _, want := range []string{"Host example\n    User me\n", "Host postern-bastion\n    HostName 127.0.0.1\n    Port 2222\n", "Host *.internal\n    ProxyJump postern-bastion\n", "Host node2\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("ssh_config lacks %q:\n%s", want, got)
		}
	}
	kh := string(readFile(t, filepath.Join(s.home, "known_hosts")))
	hostCA := strings.TrimSpace(string(readFile(t, filepath.Join(s.dir, "host_ca.pub"))))
	if !strings.Contains(kh, "@cert-authority * "+strings.Join(strings.Fields(hostCA)[:2], " ")) {
		t.Errorf("known_hosts:\n%s", kh)
	}
	// ssh itself accepts the file.
	if out, err := exec.Command(testenv.RequireBinary(t, "ssh"), "-F", sshCfg, "-G", "node1.internal").CombinedOutput(); err != nil || !strings.Contains(string(out), "proxyjump postern-bastion") {
		t.Fatalf("ssh -G: %v\n%s", err, out)
	}
	out, _, code = s.cli(t, "config", "--install", sshCfg)
	if code != 0 || !strings.Contains(out, "already up to date") {
		t.Fatalf("second install (exit %d): %s", code, out)
	}
	if again := string(readFile(t, sshCfg)); again != got {
		t.Fatal("second install changed the file")
	}
}

func containsPrefix(list []string, p string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func itoa(v uint64) string { return strconvFormat(v) }

func sshString(s string) string { return fmt.Sprintf("%08x%x", len(s), s) }

func strconvFormat(v uint64) string { return strconv.FormatUint(v, 10) }
