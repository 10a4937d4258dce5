package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/testenv"
)

// stack is the login half of postern run from its real binaries: the test
// IdP, the signer, and the CLI against a real ssh-agent.
type stack struct {
	dir       string
	signerURL string
	tlsCA     string // the signer's development TLS certificate
	cfgPath   string
	auditLog  string
	postern   string // CLI binary
	agent     *testenv.Agent
	home      string // POSTERN_HOME
	https     *http.Client
}

const stackUsers = `
[[user]]
username = "alice"
password = "alice-pw"
email = "alice@example.com"
groups = ["infra", "dev"]

[[user]]
username = "bob"
password = "bob-pw"
email = "bob@example.com"
groups = ["dev"]

[[user]]
username = "carol"
password = "carol-pw"
email = "carol@example.com"
groups = []
`

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startProc runs a binary until the test ends, with output shown only on
// failure, and waits until ready(output so far) is true.
func startProc(t *testing.T, name string, ready func(string) bool, bin string, args ...string) *exec.Cmd {
	t.Helper()
	logs := testenv.NewLogs(t, name)
	cmd := exec.Command(bin, args...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	var mu sync.Mutex
	var seen strings.Builder
	readyc := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := false
		for sc.Scan() {
			line := sc.Text() + "\n"
			_, _ = logs.Write([]byte(line))
			mu.Lock()
			seen.WriteString(line)
			ok := !once && ready(seen.String())
			mu.Unlock()
			if ok {
				once = true
				close(readyc)
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		pw.Close()
	})
	select {
	case <-readyc:
	case <-time.After(30 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%s did not become ready; output:\n%s", name, seen.String())
	}
	return cmd
}

// roles is the [[role]] part of the stack's config; tests may append.
const stackRoles = `
[[role]]
name = "infra"
groups = ["infra"]
logins = ["ubuntu", "root"]
nodes = ["*.internal"]
max_ttl = "4h"
extensions = ["permit-pty", "permit-port-forwarding"]

[[role]]
name = "dev"
groups = ["dev"]
logins = ["dev"]
nodes = ["node2"]
max_ttl = "8h"
`

func startStack(t *testing.T, extraConfig string) *stack {
	t.Helper()
	return startStackSigner(t, "", extraConfig)
}

// startStackSigner is startStack with signerKeys added to [signer] (e.g.
// metrics_listen).
func startStackSigner(t *testing.T, signerKeys, extraConfig string) *stack {
	t.Helper()
	for _, b := range []string{"ssh-agent", "ssh-add", "ssh-keygen"} {
		testenv.RequireBinary(t, b)
	}
	s := &stack{dir: t.TempDir()}
	signerBin := testenv.GoBuild(t, "./signer")
	idpBin := testenv.GoBuild(t, "./internal/testidp/cmd/postern-testidp")
	s.postern = testenv.GoBuild(t, "./agent-helper")

	run(t, signerBin, "init", "--dir", s.dir)
	signerAddr, idpAddr := freeAddr(t), freeAddr(t)
	s.signerURL = "https://" + signerAddr
	secret := filepath.Join(s.dir, "oidc-secret")
	writeFile(t, secret, "e2e-client-secret\n")
	writeFile(t, filepath.Join(s.dir, "users.toml"), stackUsers)

	startProc(t, "postern-testidp", func(out string) bool { return strings.Contains(out, "issuer http") },
		idpBin, "--addr", idpAddr, "--users", filepath.Join(s.dir, "users.toml"),
		"--client-secret-file", secret, "--redirect-uri", s.signerURL+"/v1/login/callback")

	s.cfgPath = filepath.Join(s.dir, "postern.toml")
	s.auditLog = filepath.Join(s.dir, "audit.log")
	writeFile(t, s.cfgPath, fmt.Sprintf(`
[signer]
listen = %q
data_dir = %q
%s
[signer.oidc]
issuer = "http://%s"
client_secret_file = %q
[bastion]
public_addr = "127.0.0.1:2222"
jump_hosts = ["*.internal", "node2"]
%s
%s`, signerAddr, s.dir, signerKeys, idpAddr, secret, extraConfig, stackRoles))
	startProc(t, "postern-signer", func(out string) bool { return strings.Contains(out, "signer listening") },
		signerBin, "--config", s.cfgPath)

	s.tlsCA = filepath.Join(s.dir, "tls.crt")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(readFile(t, s.tlsCA))
	s.https = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 20 * time.Second}
	s.agent = testenv.StartAgent(t)
	s.home = filepath.Join(s.dir, "home")
	return s
}

// env is the environment the CLI and OpenSSH tools run with.
func (s *stack) env() []string {
	return append(os.Environ(), append(s.agent.Env(), "POSTERN_HOME="+s.home, "DISPLAY=", "WAYLAND_DISPLAY=")...)
}

// cli runs the postern CLI to completion.
func (s *stack) cli(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(s.postern, args...)
	cmd.Env = s.env()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// loginProc starts `postern login` and returns it with a line reader on
// its stdout.
type loginProc struct {
	cmd    *exec.Cmd
	lines  chan string
	stdout *strings.Builder
	stderr *bytes.Buffer
	mu     *sync.Mutex
}

func (s *stack) startLogin(t *testing.T, args ...string) *loginProc {
	t.Helper()
	cmd := exec.Command(s.postern, append([]string{"login"}, args...)...)
	cmd.Env = s.env()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &loginProc{cmd: cmd, lines: make(chan string, 100), stdout: &strings.Builder{}, stderr: &bytes.Buffer{}, mu: &sync.Mutex{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.mu.Lock()
			p.stdout.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return p
}

// waitLine returns the first stdout line for which match is true.
func (p *loginProc) waitLine(t *testing.T, match func(string) bool) string {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("postern login ended before printing the expected line; stderr:\n%s", p.stderr)
			}
			if match(l) {
				return l
			}
		case <-timeout:
			t.Fatal("timed out waiting for postern login output")
		}
	}
}

// wait waits for the CLI to exit and returns its exit status.
func (p *loginProc) wait(t *testing.T) int {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		for range p.lines {
		}
		done <- p.cmd.Wait()
	}()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(60 * time.Second):
		t.Fatalf("postern login did not finish; stderr:\n%s", p.stderr)
		return -1
	}
}

func (s *stack) events(t *testing.T, name string) []audit.Event {
	t.Helper()
	evs, err := audit.ReadFile(s.auditLog)
	if err != nil {
		t.Fatal(err)
	}
	return audit.Filter(evs, name)
}

func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ctx is a context bounded for one test step.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}
