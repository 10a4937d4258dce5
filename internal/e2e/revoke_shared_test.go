package e2e

import (
	"bytes"
	"context"
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
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/api"
	"github.com/postern-dev/postern/internal/s3test"
	"github.com/postern-dev/postern/internal/storage"
	"github.com/postern-dev/postern/internal/testenv"
	"github.com/postern-dev/postern/signer/ca"
	"github.com/postern-dev/postern/signer/revocation"
)

// sharedSigner is one postern-signer process of several sharing a list.
type sharedSigner struct {
	name, dir, cfgPath, url string
	https                   *http.Client
	proc                    *exec.Cmd
}

func startSharedSigner(t *testing.T, bin string, s *sharedSigner) {
	t.Helper()
	s.proc = startProc(t, s.name, func(out string) bool { return strings.Contains(out, "signer listening") }, bin, "--config", s.cfgPath)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(readFile(t, filepath.Join(s.dir, "tls.crt")))
	s.https = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 30 * time.Second}
}

// stop ends the signer as systemd would (SIGINT, wait).
func (s *sharedSigner) stop(t *testing.T) {
	t.Helper()
	_ = s.proc.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _, _ = s.proc.Process.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = s.proc.Process.Kill()
		t.Fatalf("%s did not stop", s.name)
	}
}

// krl fetches GET /v1/krl and returns the generation header and the body.
func (s *sharedSigner) krl(t *testing.T) (int, uint64, []byte) {
	t.Helper()
	resp, err := s.https.Get(s.url + api.PathKRL)
	if err != nil {
		t.Fatalf("GET %s%s: %v", s.url, api.PathKRL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	gen, _ := strconv.ParseUint(resp.Header.Get(api.HeaderKRLGeneration), 10, 64)
	return resp.StatusCode, gen, b
}

// waitKRL polls s's KRL until it has generation want and returns it in a
// file, as a node's refresh timer would install it.
func (s *sharedSigner) waitKRL(t *testing.T, want uint64) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, gen, body := s.krl(t)
		if code == http.StatusOK && gen == want {
			p := filepath.Join(t.TempDir(), "postern.krl")
			if err := os.WriteFile(p, body, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}
		if code == http.StatusOK && gen > want {
			t.Fatalf("%s jumped to generation %d, want %d", s.name, gen, want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s serves %d generation %d after 30 s, want generation %d", s.name, code, gen, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestRevokeSharedBetweenSigners: two signer processes share one revocation
// list in a real S3 server. A revocation made with `postern-signer revoke`
// next to signer A is served by signer B, one made through B's API by A;
// ssh-keygen -Q agrees. While S3 is down, revoking fails with a clear error
// and writes nothing, both signers keep serving the last list, B restarted
// during the outage serves it from its local copy, and a new signer C
// without one fails closed. Afterwards everything resumes.
func TestRevokeSharedBetweenSigners(t *testing.T) {
	testenv.RequireBinary(t, "ssh-keygen")
	s3 := s3test.Start(t)
	bin := testenv.GoBuild(t, "./signer")
	root := t.TempDir()
	keys := filepath.Join(root, "keys")
	run(t, bin, "init", "--dir", keys)
	creds := filepath.Join(root, "aws-credentials")
	writeFile(t, creds, fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", s3test.AccessKey, s3test.SecretKey))
	tokens := filepath.Join(root, "admin-tokens")
	writeFile(t, tokens, e2eAdminToken+"\n")

	newSigner := func(name string) *sharedSigner {
		s := &sharedSigner{name: name, dir: filepath.Join(root, name)}
		if err := os.MkdirAll(s.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		addr := freeAddr(t)
		s.url = "https://" + addr
		s.cfgPath = filepath.Join(s.dir, "postern.toml")
		writeFile(t, s.cfgPath, fmt.Sprintf(`
[signer]
listen = %q
data_dir = %q
user_ca_key = %q
host_ca_key = %q
admin_token_file = %q
revocation_store = "s3"

[storage]
s3_bucket = %q
s3_prefix = "shared"
s3_endpoint = %q
s3_path_style = true
s3_region = %q
s3_credentials_file = %q
`, addr, s.dir, filepath.Join(keys, "user_ca"), filepath.Join(keys, "host_ca"), tokens, s3.Bucket, s3.Endpoint, s3test.Region, creds))
		startSharedSigner(t, bin, s)
		return s
	}
	signers := []*sharedSigner{newSigner("signer-a"), newSigner("signer-b")}
	a, b := signers[0], signers[1]

	userCA, err := ca.Load(filepath.Join(keys, "user_ca"))
	if err != nil {
		t.Fatal(err)
	}
	certFile := func(keyID string) (string, uint64) {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		sshPub, err := ssh.NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		c, err := userCA.SignUser(ca.UserCert{Key: sshPub, KeyID: keyID, Principals: []string{"u"}, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, keyID+"-cert.pub")
		writeFile(t, p, string(ssh.MarshalAuthorizedKey(c)))
		return p, c.Serial
	}
	alice, _ := certFile("alice@example.com")
	bob, bobSerial := certFile("bob@example.com")
	carol, _ := certFile("carol@example.com")

	for _, s := range signers {
		if code, gen, _ := s.krl(t); code != http.StatusOK || gen != 0 {
			t.Fatalf("%s before any revocation: %d generation %d", s.name, code, gen)
		}
	}

	// Revoke alice with the CLI next to signer A; signer B serves it.
	out := run(t, bin, "revoke", "--config", a.cfgPath, "--key-id", "alice@example.com", "--reason", "left the company")
	if !strings.Contains(out, `revoked key id "alice@example.com" (generation 1)`) {
		t.Fatalf("revoke output:\n%s", out)
	}
	revoked := time.Now()
	krlB := b.waitKRL(t, 1)
	t.Logf("signer B served the revocation made next to signer A %v after the command returned", time.Since(revoked).Round(10*time.Millisecond))
	if !keygenRevoked(t, krlB, alice) || keygenRevoked(t, krlB, bob) {
		t.Fatal("ssh-keygen -Q on signer B's KRL: want alice revoked, bob not")
	}

	// Revoke bob's certificate through B's API; signer A serves it.
	reqBody, _ := json.Marshal(api.RevokeRequest{Serial: bobSerial, Reason: "laptop stolen"})
	req, _ := http.NewRequest(http.MethodPost, b.url+api.PathRevoke, bytes.NewReader(reqBody))
	req.Header.Set("Authorization", "Bearer "+e2eAdminToken)
	resp, err := b.https.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var rr api.RevokeResponse
	_ = json.NewDecoder(resp.Body).Decode(&rr)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || rr.Generation != 2 || !rr.Changed {
		t.Fatalf("POST /v1/revoke on B: %d %+v", resp.StatusCode, rr)
	}
	krlA := a.waitKRL(t, 2)
	if !keygenRevoked(t, krlA, alice) || !keygenRevoked(t, krlA, bob) || keygenRevoked(t, krlA, carol) {
		t.Fatal("ssh-keygen -Q on signer A's KRL: want alice and bob revoked, carol not")
	}
	if !bytes.Equal(readFile(t, krlA), readFile(t, b.waitKRL(t, 2))) {
		t.Fatal("the signers serve different KRL bytes for generation 2")
	}

	// S3 goes down.
	s3.Stop()
	cmd := exec.Command(bin, "revoke", "--config", a.cfgPath, "--key-id", "carol@example.com", "--reason", "contract ended")
	outB, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(outB), "nothing was changed") || !strings.Contains(string(outB), "connection refused") {
		t.Fatalf("revoke during the outage: %v\n%s", err, outB)
	}
	t.Logf("revoke during the outage: %v\n%s", err, outB)
	for _, s := range signers {
		code, gen, body := s.krl(t)
		if code != http.StatusOK || gen != 2 {
			t.Fatalf("%s during the outage: %d generation %d, want the last list (2)", s.name, code, gen)
		}
		p := filepath.Join(t.TempDir(), "krl")
		writeFile(t, p, string(body))
		if !keygenRevoked(t, p, alice) || !keygenRevoked(t, p, bob) {
			t.Fatalf("%s during the outage: ssh-keygen -Q no longer sees the revocations", s.name)
		}
	}
	// Signer B restarts during the outage and serves its local copy.
	b.stop(t)
	if _, err := os.Stat(filepath.Join(b.dir, "revocations.json"+revocation.LocalCopySuffix)); err != nil {
		t.Fatalf("signer B has no local copy: %v", err)
	}
	startSharedSigner(t, bin, b)
	krlB = b.waitKRL(t, 2)
	if !keygenRevoked(t, krlB, alice) || !keygenRevoked(t, krlB, bob) {
		t.Fatal("restarted signer B: ssh-keygen -Q no longer sees the revocations")
	}

	// A new signer with no local copy has no list to serve: it fails closed.
	c := newSigner("signer-c")
	if code, _, _ := c.krl(t); code != http.StatusInternalServerError {
		t.Fatalf("signer C without S3 and without a local copy: GET /v1/krl answered %d, want 500", code)
	}

	// S3 is back: the failed revoke left nothing behind, and revoking works.
	s3.Start(t)
	st, err := storage.NewS3(context.Background(), s3.S3Config("shared"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := st.List(context.Background(), revocation.DefaultObjectPrefix)
	if err != nil || len(objs) != 2 {
		t.Fatalf("change objects after the outage: %v %v, want 2", objs, err)
	}
	out = run(t, bin, "revoke", "--config", a.cfgPath, "--key-id", "carol@example.com", "--reason", "contract ended")
	if !strings.Contains(out, "(generation 3)") {
		t.Fatalf("revoke after the outage:\n%s", out)
	}
	for _, s := range []*sharedSigner{b, c} {
		if p := s.waitKRL(t, 3); !keygenRevoked(t, p, carol) || !keygenRevoked(t, p, alice) {
			t.Fatalf("ssh-keygen -Q on %s's KRL after the outage: want carol and alice revoked", s.name)
		}
	}
	out = run(t, bin, "revoke", "--config", b.cfgPath, "--list")
	if !strings.Contains(out, "generation 3, 3 revocations") {
		t.Fatalf("revoke --list on B:\n%s", out)
	}
}
