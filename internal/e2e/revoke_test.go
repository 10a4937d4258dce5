package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/postern-dev/postern/internal/api"
	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/krl"
	"github.com/postern-dev/postern/internal/testenv"
	"github.com/postern-dev/postern/signer/ca"
)

// revokeEnv is a running signer (no IdP: certificates are signed with its
// CA directly) and a stock sshd node whose RevokedKeys is the signer's KRL.
type revokeEnv struct {
	signer, cfgPath, dir, url, krlPath string
	https                              *http.Client
	node                               *testenv.Node
	userCA, hostCA                     *ca.Authority
}

const e2eAdminToken = "e2e-admin-token-0123456789"

func startRevokeEnv(t *testing.T) *revokeEnv {
	t.Helper()
	testenv.RequireBinary(t, "ssh")
	testenv.RequireBinary(t, "ssh-keygen")
	e := &revokeEnv{dir: t.TempDir(), signer: testenv.GoBuild(t, "./signer")}
	run(t, e.signer, "init", "--dir", e.dir)
	addr := freeAddr(t)
	e.url = "https://" + addr
	writeFile(t, filepath.Join(e.dir, "admin-tokens"), "# revocation admins\n"+e2eAdminToken+"\n")
	e.cfgPath = filepath.Join(e.dir, "postern.toml")
	writeFile(t, e.cfgPath, fmt.Sprintf(`
[signer]
listen = %q
data_dir = %q
admin_token_file = %q
`, addr, e.dir, filepath.Join(e.dir, "admin-tokens")))
	startProc(t, "postern-signer", func(out string) bool { return strings.Contains(out, "signer listening") },
		e.signer, "--config", e.cfgPath)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(readFile(t, filepath.Join(e.dir, "tls.crt")))
	e.https = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 20 * time.Second}

	var err error
	if e.userCA, err = ca.Load(filepath.Join(e.dir, "user_ca")); err != nil {
		t.Fatal(err)
	}
	if e.hostCA, err = ca.Load(filepath.Join(e.dir, "host_ca")); err != nil {
		t.Fatal(err)
	}
	// The node starts with the signer's (empty) KRL, written by the CLI.
	e.krlPath = filepath.Join(t.TempDir(), "postern.krl")
	run(t, e.signer, "krl", "--config", e.cfgPath, "--out", e.krlPath)
	e.node = testenv.StartNode(t, testenv.NodeOptions{
		Name:   "node1",
		UserCA: ssh.MarshalAuthorizedKey(e.userCA.PublicKey()),
		SignHostKey: func(pub ssh.PublicKey, principals []string) (*ssh.Certificate, error) {
			return e.hostCA.SignHost(pub, principals, time.Hour)
		},
		ExtraConfig: []string{"RevokedKeys " + e.krlPath},
	})
	return e
}

// person is someone with a postern-style certificate in their own agent.
type person struct {
	cert     *ssh.Certificate
	certFile string
	sshCfg   string
}

func (e *revokeEnv) person(t *testing.T, keyID string) *person {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := e.userCA.SignUser(ca.UserCert{Key: signer.PublicKey(), KeyID: keyID, Principals: []string{e.node.Login},
		TTL: time.Hour, Extensions: map[string]string{"permit-pty": ""}})
	if err != nil {
		t.Fatal(err)
	}
	ag := testenv.StartAgent(t)
	if err := ag.Client(t).Add(agent.AddedKey{PrivateKey: priv, Certificate: cert, LifetimeSecs: 3600}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	knownHosts := filepath.Join(dir, "known_hosts")
	writeFile(t, knownHosts, testenv.KnownHostsCA("*", e.hostCA.PublicKey()))
	p := &person{cert: cert, certFile: filepath.Join(dir, "id-cert.pub")}
	writeFile(t, p.certFile, string(ssh.MarshalAuthorizedKey(cert)))
	p.sshCfg = testenv.ClientConfig(t, knownHosts, ag.Socket,
		testenv.HostBlock{Pattern: "node1", HostName: e.node.Addr, Port: e.node.Port, User: e.node.Login})
	return p
}

// ssh runs a command on the node as p and returns its output and error.
func (p *person) ssh(t *testing.T) (string, error) {
	t.Helper()
	cmd := exec.Command(testenv.RequireBinary(t, "ssh"), "-F", p.sshCfg, "node1", "echo", "hello-from-node1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (p *person) mustReach(t *testing.T) {
	t.Helper()
	if out, err := p.ssh(t); err != nil || !strings.Contains(out, "hello-from-node1") {
		t.Fatalf("%s cannot reach node1: %v\n%s", p.cert.KeyId, err, out)
	}
}

func (p *person) mustBeRefused(t *testing.T) {
	t.Helper()
	out, err := p.ssh(t)
	if err == nil || strings.Contains(out, "hello-from-node1") {
		t.Fatalf("%s (serial %d) still reaches node1:\n%s", p.cert.KeyId, p.cert.Serial, out)
	}
	if !strings.Contains(out, "Permission denied") {
		t.Fatalf("ssh failed for another reason than the refusal: %v\n%s", err, out)
	}
}

// getKRL fetches GET /v1/krl like a node's refresh timer does.
func (e *revokeEnv) getKRL(t *testing.T, etag string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url+api.PathKRL, nil)
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := e.https.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// installKRL replaces the node's KRL atomically, as the documented timer does.
func (e *revokeEnv) installKRL(t *testing.T, data []byte) {
	t.Helper()
	tmp := e.krlPath + ".new"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, e.krlPath); err != nil {
		t.Fatal(err)
	}
}

// keygenRevoked asks the real ssh-keygen whether the KRL at path revokes
// the certificate file.
func keygenRevoked(t *testing.T, krlPath, certFile string) bool {
	t.Helper()
	out, err := exec.Command(testenv.RequireBinary(t, "ssh-keygen"), "-Q", "-f", krlPath, certFile).CombinedOutput()
	switch {
	case err == nil && strings.HasSuffix(strings.TrimSpace(string(out)), ": ok"):
		return false
	case err != nil && strings.HasSuffix(strings.TrimSpace(string(out)), ": REVOKED"):
		return true
	}
	t.Fatalf("ssh-keygen -Q: %v\n%s", err, out)
	return false
}

// TestRevokeEndsNodeAccess: alice and bob reach a stock sshd node with
// certificates of the signer's CA; `postern-signer revoke --key-id` and the
// KRL written by `postern-signer krl` end alice's access, the running
// signer serves the same KRL at once, and a serial revoked through the API
// ends bob's. ssh-keygen -Q agrees at each step.
func TestRevokeEndsNodeAccess(t *testing.T) {
	e := startRevokeEnv(t)
	alice, bob := e.person(t, "alice@example.com"), e.person(t, "bob@example.com")
	alice.mustReach(t)
	bob.mustReach(t)
	resp, _ := e.getKRL(t, "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get(api.HeaderKRLGeneration) != "0" {
		t.Fatalf("GET /v1/krl before revocations: %d generation %q", resp.StatusCode, resp.Header.Get(api.HeaderKRLGeneration))
	}
	etag0 := resp.Header.Get("ETag")

	// Offboard alice with the real CLI, next to the running signer.
	out := run(t, e.signer, "revoke", "--config", e.cfgPath, "--key-id", "alice@example.com", "--reason", "left the company")
	if !strings.Contains(out, `revoked key id "alice@example.com" (generation 1)`) {
		t.Fatalf("revoke output:\n%s", out)
	}
	out = run(t, e.signer, "krl", "--config", e.cfgPath, "--out", e.krlPath)
	if !strings.Contains(out, "generation 1") {
		t.Fatalf("krl output:\n%s", out)
	}
	alice.mustBeRefused(t)
	bob.mustReach(t)
	if !strings.Contains(e.node.Log(), "revoked") {
		t.Errorf("sshd's log does not name the revocation:\n%s", e.node.Log())
	}
	if !keygenRevoked(t, e.krlPath, alice.certFile) || keygenRevoked(t, e.krlPath, bob.certFile) {
		t.Fatal("ssh-keygen -Q disagrees: want alice revoked, bob not")
	}

	// The running signer picked the CLI's change up and serves the same bytes.
	resp, body := e.getKRL(t, etag0)
	if resp.StatusCode != http.StatusOK || resp.Header.Get(api.HeaderKRLGeneration) != "1" {
		t.Fatalf("GET /v1/krl after revoke: %d generation %q", resp.StatusCode, resp.Header.Get(api.HeaderKRLGeneration))
	}
	if !bytes.Equal(body, readFile(t, e.krlPath)) {
		t.Fatal("the signer serves other KRL bytes than postern-signer krl wrote")
	}
	etag1 := resp.Header.Get("ETag")
	if r, _ := e.getKRL(t, etag1); r.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match with the current ETag: %d, want 304", r.StatusCode)
	}
	if k, err := krl.Parse(body); err != nil || !k.Revoked(alice.cert) || k.Revoked(bob.cert) {
		t.Fatalf("served KRL: %v", err)
	}

	// Revoke bob's certificate by serial through the API; the node refreshes.
	reqBody, _ := json.Marshal(api.RevokeRequest{Serial: bob.cert.Serial, Reason: "laptop stolen"})
	req, _ := http.NewRequest(http.MethodPost, e.url+api.PathRevoke, bytes.NewReader(reqBody))
	req.Header.Set("Authorization", "Bearer "+e2eAdminToken)
	r, err := e.https.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var rr api.RevokeResponse
	_ = json.NewDecoder(r.Body).Decode(&rr)
	r.Body.Close()
	if r.StatusCode != http.StatusOK || rr.Generation != 2 || !rr.Changed {
		t.Fatalf("POST /v1/revoke: %d %+v", r.StatusCode, rr)
	}
	resp, body = e.getKRL(t, etag1)
	if resp.StatusCode != http.StatusOK || resp.Header.Get(api.HeaderKRLGeneration) != "2" {
		t.Fatalf("GET /v1/krl after API revoke: %d generation %q", resp.StatusCode, resp.Header.Get(api.HeaderKRLGeneration))
	}
	e.installKRL(t, body)
	bob.mustBeRefused(t)
	alice.mustBeRefused(t)
	if !keygenRevoked(t, e.krlPath, bob.certFile) {
		t.Fatal("ssh-keygen -Q says bob's certificate is not revoked")
	}
	// A new certificate for bob (another serial) still works: only that one
	// certificate was revoked.
	e.person(t, "bob@example.com").mustReach(t)
	// A new certificate for alice does not: her key ID is revoked.
	e.person(t, "alice@example.com").mustBeRefused(t)

	evs, err := audit.ReadFile(filepath.Join(e.dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	rev := audit.Filter(evs, audit.CertRevoked)
	if len(rev) != 2 || rev[0].Person != "alice@example.com" || rev[0].Reason != "left the company" ||
		rev[1].Serial != bob.cert.Serial || rev[1].Reason != "laptop stolen" {
		t.Fatalf("cert.revoked events: %+v", rev)
	}
	if bytes.Contains(readFile(t, filepath.Join(e.dir, "audit.log")), []byte(e2eAdminToken)) {
		t.Fatal("the admin token reached the audit log")
	}
}
