package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/agent-helper/signerclient"
	"github.com/postern-dev/postern/internal/api"
	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/sshcert"
	"github.com/postern-dev/postern/internal/testidp"
	"github.com/postern-dev/postern/signer/ca"
)

// memAudit collects events for assertions.
type memAudit struct {
	mu     sync.Mutex
	events []audit.Event
}

func (m *memAudit) Emit(_ context.Context, e audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, e)
	return nil
}

func (m *memAudit) named(name string) []audit.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return audit.Filter(m.events, name)
}

// env is a signer served over TLS on loopback, talking to an IdP.
type env struct {
	srv    *Server
	cfg    *config.Config
	url    string
	client *signerclient.Client
	http   *http.Client // trusts the signer, does not follow redirects
	audit  *memAudit
	userCA ssh.PublicKey
}

const secret = "s3cret-for-tests"

var users = []testidp.User{
	{Username: "alice", Password: "pw-alice", Email: "alice@example.com", Groups: []string{"infra", "dev"}},
	{Username: "carol", Password: "pw-carol", Email: "carol@example.com"},
}

// startSigner starts a signer whose IdP is issuer (or a fresh test IdP
// when issuer is ""). It returns the env and the IdP (nil when external).
func startSigner(t *testing.T, issuer string, ln net.Listener) (*env, *testidp.IdP) {
	t.Helper()
	dir := t.TempDir()
	if ln == nil {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
	}
	base := "https://" + ln.Addr().String()
	var idp *testidp.IdP
	if issuer == "" {
		var err error
		idp, err = testidp.Start(context.Background(), testidp.Config{
			Users:   users,
			Clients: []testidp.Client{{ID: "postern", Secret: secret, RedirectURIs: []string{base + api.PathCallback}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { idp.Close() })
		issuer = idp.Issuer()
	}
	for _, k := range []string{"user_ca", "host_ca"} {
		if err := ca.Generate(filepath.Join(dir, k), "", ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "join"), []byte("# nodes\njoin-token-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "admin"), []byte("# admins\nadmin-token-1\nadmin-token-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := `
[signer]
listen = "` + ln.Addr().String() + `"
data_dir = "` + dir + `"
join_token_file = "` + filepath.Join(dir, "join") + `"
admin_token_file = "` + filepath.Join(dir, "admin") + `"
host_patterns = ["*.internal", "10.0.0.0/8"]
[signer.oidc]
issuer = "` + issuer + `"
client_secret_file = "` + filepath.Join(dir, "secret") + `"
[bastion]
public_addr = "127.0.0.1:2222"
jump_hosts = ["*.internal"]
[[role]]
name = "infra"
groups = ["infra"]
logins = ["ubuntu", "root"]
max_ttl = "2h"
extensions = ["permit-pty", "permit-port-forwarding"]
[[role]]
name = "dev"
groups = ["dev"]
logins = ["dev"]
`
	cfg, err := config.Parse("test.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	mem := &memAudit{}
	srv, err := New(cfg, Options{Audit: mem})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := LoadTLS(cfg.Signer)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, cert) }()
	t.Cleanup(func() { cancel(); <-done })

	caPEM, err := os.ReadFile(filepath.Join(dir, DevTLSCert))
	if err != nil {
		t.Fatal(err)
	}
	client, err := signerclient.New(base, caPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
	userPub, _, _, _, err := ssh.ParseAuthorizedKey(mustRead(t, filepath.Join(dir, "user_ca.pub")))
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, cfg: cfg, url: base, client: client, http: hc, audit: mem, userCA: userPub}, idp
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ssh.NewPublicKey(pub)
	return k
}

func pubLine(k ssh.PublicKey) string { return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) }

const loopback = "http://127.0.0.1:9/callback"

// startBrowser starts a browser login and walks the IdP's form, stopping
// at the redirect to the signer's callback, which it returns.
func (e *env) startBrowser(t *testing.T, key ssh.PublicKey, ttl time.Duration, user, pass string) (api.LoginStartResponse, *url.URL) {
	t.Helper()
	ctx := context.Background()
	resp, err := e.client.StartLogin(ctx, api.LoginStartRequest{PublicKey: pubLine(key), Mode: api.ModeBrowser, RedirectURL: loopback, TTLSeconds: int64(ttl.Seconds())})
	if err != nil {
		t.Fatal(err)
	}
	res, err := testidp.BrowserLogin(ctx, resp.AuthURL, user, pass, func(u *url.URL) bool {
		return strings.HasPrefix(u.String(), e.url+api.PathCallback)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.FinalURL.String(), e.url+api.PathCallback) {
		t.Fatalf("browser ended at %s (%d), not the signer callback", res.FinalURL, res.Status)
	}
	return resp, res.FinalURL
}

// callback delivers the IdP's redirect to the signer like the browser would.
func (e *env) callback(t *testing.T, u *url.URL) *http.Response {
	t.Helper()
	resp, err := e.http.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func (e *env) poll(t *testing.T, r api.LoginStartResponse) api.LoginPollResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := e.client.WaitLogin(ctx, r.LoginID, r.PollToken, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func parseCert(t *testing.T, line string) *ssh.Certificate {
	t.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	c, ok := k.(*ssh.Certificate)
	if !ok {
		t.Fatalf("not a certificate: %s", line)
	}
	return c
}

func TestBrowserLogin(t *testing.T) {
	e, _ := startSigner(t, "", nil)
	key := newKey(t)
	start := time.Now()
	r, cb := e.startBrowser(t, key, 0, "alice", "pw-alice")
	resp := e.callback(t, cb)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback status %d", resp.StatusCode)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc.Host != "127.0.0.1:9" || loc.Query().Get("status") != api.StatusDone || loc.Query().Get("login_id") != r.LoginID {
		t.Fatalf("redirected to %s", loc)
	}
	res := e.poll(t, r)
	if res.Status != api.StatusDone {
		t.Fatalf("poll = %+v", res)
	}
	c := parseCert(t, res.Certificate)
	if string(c.Key.Marshal()) != string(key.Marshal()) {
		t.Fatal("certificate is not for the login's key")
	}
	if string(c.SignatureKey.Marshal()) != string(e.userCA.Marshal()) {
		t.Fatal("certificate not signed by the user CA")
	}
	id := sshcert.IdentityOf(c)
	if id.KeyID != "alice@example.com" || strings.Join(id.Principals, ",") != "dev,root,ubuntu" ||
		strings.Join(id.Roles, ",") != "infra,dev" || strings.Join(id.Groups, ",") != "dev,infra" {
		t.Fatalf("identity = %+v", id)
	}
	if _, ok := c.Permissions.Extensions["permit-port-forwarding"]; !ok {
		t.Error("missing permit-port-forwarding")
	}
	// max_ttl of the infra role is 2h; dev has the default 8h: the smaller wins.
	if got := id.ValidBefore.Sub(start); got < 2*time.Hour-5*time.Second || got > 2*time.Hour+5*time.Second {
		t.Errorf("lifetime %v, want 2h", got)
	}
	if got := start.Sub(id.ValidAfter); got < 55*time.Second || got > 65*time.Second {
		t.Errorf("ValidAfter backdated by %v, want 1m", got)
	}
	// The result is collected once.
	if _, err := e.client.Poll(context.Background(), r.LoginID, r.PollToken); !isStatus(err, http.StatusNotFound) {
		t.Errorf("second poll: %v, want 404", err)
	}
	issued := e.audit.named(audit.CertIssued)
	if len(issued) != 1 || issued[0].Person != "alice@example.com" || issued[0].Serial != c.Serial ||
		issued[0].KeyFP != ssh.FingerprintSHA256(key) || issued[0].ClientAddr != "127.0.0.1" || issued[0].Method != api.ModeBrowser {
		t.Fatalf("cert.issued events: %+v", issued)
	}
	assertNoSecrets(t, e)
}

func TestTTLCappedNotRefused(t *testing.T) {
	e, _ := startSigner(t, "", nil)
	for _, tt := range []struct {
		ask, want time.Duration
	}{{30 * time.Minute, 30 * time.Minute}, {100 * time.Hour, 2 * time.Hour}} {
		r, cb := e.startBrowser(t, newKey(t), tt.ask, "alice", "pw-alice")
		e.callback(t, cb)
		res := e.poll(t, r)
		if res.Status != api.StatusDone {
			t.Fatalf("ask %v: %+v", tt.ask, res)
		}
		c := parseCert(t, res.Certificate)
		got := time.Duration(c.ValidBefore-c.ValidAfter)*time.Second - time.Minute
		if got < tt.want-5*time.Second || got > tt.want+5*time.Second {
			t.Errorf("ask %v: lifetime %v, want %v", tt.ask, got, tt.want)
		}
	}
}

func TestDeviceLogin(t *testing.T) {
	e, _ := startSigner(t, "", nil)
	key := newKey(t)
	ctx := context.Background()
	r, err := e.client.StartLogin(ctx, api.LoginStartRequest{PublicKey: pubLine(key), Mode: api.ModeDevice})
	if err != nil {
		t.Fatal(err)
	}
	if r.UserCode == "" || r.VerificationURI == "" {
		t.Fatalf("start = %+v", r)
	}
	if p, err := e.client.Poll(ctx, r.LoginID, r.PollToken); err != nil || p.Status != api.StatusPending {
		t.Fatalf("early poll = %+v, %v", p, err)
	}
	if err := testidp.ApproveDevice(ctx, r.VerificationURI, r.UserCode, "alice", "pw-alice"); err != nil {
		t.Fatal(err)
	}
	res := e.poll(t, r)
	if res.Status != api.StatusDone {
		t.Fatalf("poll = %+v", res)
	}
	c := parseCert(t, res.Certificate)
	if c.KeyId != "alice@example.com" || string(c.Key.Marshal()) != string(key.Marshal()) {
		t.Fatalf("cert %s for wrong key", c.KeyId)
	}
	if ev := e.audit.named(audit.CertIssued); len(ev) != 1 || ev[0].Method != api.ModeDevice {
		t.Fatalf("cert.issued: %+v", ev)
	}
}

func TestNoMatchingRole(t *testing.T) {
	e, _ := startSigner(t, "", nil)
	r, cb := e.startBrowser(t, newKey(t), 0, "carol", "pw-carol")
	resp := e.callback(t, cb)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc.Query().Get("status") != api.StatusFailed {
		t.Fatalf("redirect %s, want status=failed", loc)
	}
	res := e.poll(t, r)
	if res.Status != api.StatusFailed || res.Certificate != "" || !strings.Contains(res.Error, "no role matches") || res.Hint == "" {
		t.Fatalf("poll = %+v", res)
	}
	ev := e.audit.named(audit.CertRefused)
	if len(ev) != 1 || ev[0].Person != "carol@example.com" || !strings.Contains(ev[0].Reason, "no role") {
		t.Fatalf("cert.refused: %+v", ev)
	}
	if len(e.audit.named(audit.CertIssued)) != 0 {
		t.Fatal("a certificate was issued")
	}
}

func TestStateMismatchAndReplay(t *testing.T) {
	e, _ := startSigner(t, "", nil)
	// A callback whose state matches no login.
	if resp := e.callback(t, mustURL(t, e.url+api.PathCallback+"?state=forged&code=abc")); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("forged state: status %d", resp.StatusCode)
	}
	if ev := e.audit.named(audit.LoginFailed); len(ev) != 1 || !strings.Contains(ev[0].Reason, "state") {
		t.Fatalf("login.failed for forged state: %+v", ev)
	}

	// Alice logs in; the same callback delivered again is refused.
	keyA := newKey(t)
	rA, cbA := e.startBrowser(t, keyA, 0, "alice", "pw-alice")
	e.callback(t, cbA)
	if res := e.poll(t, rA); res.Status != api.StatusDone {
		t.Fatalf("alice: %+v", res)
	}
	if resp := e.callback(t, cbA); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("replayed callback: status %d", resp.StatusCode)
	}

	// An attacker starts a login with their own key and feeds it a code
	// issued for another login: the PKCE verifier and nonce do not match.
	keyB := newKey(t)
	_, cbA2 := e.startBrowser(t, newKey(t), 0, "alice", "pw-alice") // victim's code, not delivered
	rB, cbB := e.startBrowser(t, keyB, 0, "alice", "pw-alice")
	forged := *cbB
	q := forged.Query()
	q.Set("code", cbA2.Query().Get("code"))
	forged.RawQuery = q.Encode()
	e.callback(t, &forged)
	res := e.poll(t, rB)
	if res.Status != api.StatusFailed || res.Certificate != "" {
		t.Fatalf("code from another login accepted: %+v", res)
	}
	for _, ev := range e.audit.named(audit.CertIssued) {
		if ev.KeyFP == ssh.FingerprintSHA256(keyB) {
			t.Fatal("attacker key certified")
		}
	}
}

func TestPollRefusals(t *testing.T) {
	e, _ := startSigner(t, "", nil)
	ctx := context.Background()
	if _, err := e.client.Poll(ctx, "0123456789abcdef", "x"); !isStatus(err, http.StatusNotFound) {
		t.Fatalf("unknown login: %v", err)
	}
	r, err := e.client.StartLogin(ctx, api.LoginStartRequest{PublicKey: pubLine(newKey(t)), Mode: api.ModeDevice})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Poll(ctx, r.LoginID, "wrong-token"); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("wrong poll token: %v", err)
	}
	fails := e.audit.named(audit.LoginFailed)
	if len(fails) != 2 || !strings.Contains(fails[0].Reason, "unknown") || !strings.Contains(fails[1].Reason, "poll token") {
		t.Fatalf("login.failed: %+v", fails)
	}
}

func TestStartRefusals(t *testing.T) {
	e, _ := startSigner(t, "", nil)
	ctx := context.Background()
	key := newKey(t)
	hostCA, _ := ca.Load(e.cfg.Signer.HostCAKey)
	cert, _ := hostCA.SignHost(key, []string{"x"}, time.Hour)
	for name, req := range map[string]api.LoginStartRequest{
		"open redirect":    {PublicKey: pubLine(key), Mode: api.ModeBrowser, RedirectURL: "http://evil.example.com:80/cb"},
		"https redirect":   {PublicKey: pubLine(key), Mode: api.ModeBrowser, RedirectURL: "https://127.0.0.1:80/cb"},
		"no port":          {PublicKey: pubLine(key), Mode: api.ModeBrowser, RedirectURL: "http://127.0.0.1/cb"},
		"garbage key":      {PublicKey: "ssh-ed25519 AAAA", Mode: api.ModeDevice},
		"certificate":      {PublicKey: pubLine(cert), Mode: api.ModeDevice},
		"unknown mode":     {PublicKey: pubLine(key), Mode: "telepathy"},
		"empty everything": {},
	} {
		if _, err := e.client.StartLogin(ctx, req); !isStatus(err, http.StatusBadRequest) {
			t.Errorf("%s: %v, want 400", name, err)
		}
	}
}

func TestHostCertAPI(t *testing.T) {
	e, _ := startSigner(t, "", nil)
	key := newKey(t)
	post := func(token string, hosts []string) (*http.Response, api.HostCertResponse) {
		body, _ := json.Marshal(api.HostCertRequest{PublicKey: pubLine(key), Hosts: hosts})
		req, _ := http.NewRequest(http.MethodPost, e.url+api.PathHostCert, strings.NewReader(string(body)))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := e.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out api.HostCertResponse
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp, out
	}
	resp, out := post("join-token-1", []string{"node1.internal", "10.1.2.3"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	c := parseCert(t, out.Certificate)
	if c.CertType != ssh.HostCert || strings.Join(c.ValidPrincipals, ",") != "node1.internal,10.1.2.3" {
		t.Fatalf("host cert %+v", c)
	}
	for name, tc := range map[string]struct {
		token  string
		hosts  []string
		status int
	}{
		"no token":        {"", []string{"node1.internal"}, http.StatusUnauthorized},
		"wrong token":     {"join-token-2", []string{"node1.internal"}, http.StatusUnauthorized},
		"comment line":    {"# nodes", []string{"node1.internal"}, http.StatusUnauthorized},
		"outside pattern": {"join-token-1", []string{"bank.example.com"}, http.StatusForbidden},
		"wildcard name":   {"join-token-1", []string{"*.internal"}, http.StatusForbidden},
		"ip outside cidr": {"join-token-1", []string{"192.0.2.1"}, http.StatusForbidden},
	} {
		if resp, _ := post(tc.token, tc.hosts); resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", name, resp.StatusCode, tc.status)
		}
	}
	if n := len(e.audit.named(audit.HostCertRefused)); n != 6 {
		t.Errorf("hostcert.refused events = %d, want 6", n)
	}
}

func TestCAInfo(t *testing.T) {
	e, _ := startSigner(t, "", nil)
	info, err := e.client.CA(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(info.UserCA) != 1 || len(info.HostCA) != 1 || !info.DeviceFlow || info.Bastion == nil || info.Bastion.Addr != "127.0.0.1:2222" {
		t.Fatalf("ca info = %+v", info)
	}
	if info.UserCA[0] != pubLine(e.userCA) {
		t.Fatal("user CA differs from the key file")
	}
}

func assertNoSecrets(t *testing.T, e *env) {
	t.Helper()
	e.audit.mu.Lock()
	defer e.audit.mu.Unlock()
	b, _ := json.Marshal(e.audit.events)
	for _, s := range []string{secret, "pw-alice", "BEGIN", "id_token", "code="} {
		if strings.Contains(string(b), s) {
			t.Errorf("audit log contains %q", s)
		}
	}
}

func isStatus(err error, status int) bool {
	var ae *signerclient.APIError
	return errors.As(err, &ae) && ae.Status == status
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestReloadRoles: after Reload, logins get the roles of the new
// configuration; the login before it kept the old ones.
func TestReloadRoles(t *testing.T) {
	e, _ := startSigner(t, "", nil)
	login := func() sshcert.Identity {
		t.Helper()
		r, cb := e.startBrowser(t, newKey(t), 0, "alice", "pw-alice")
		e.callback(t, cb).Body.Close()
		res := e.poll(t, r)
		if res.Status != api.StatusDone {
			t.Fatalf("poll = %+v", res)
		}
		return sshcert.IdentityOf(parseCert(t, res.Certificate))
	}
	if id := login(); strings.Join(id.Roles, ",") != "infra,dev" {
		t.Fatalf("before reload: roles %v", id.Roles)
	}
	cfg := *e.cfg
	cfg.Roles = []config.Role{{Name: "infra-ro", Groups: []string{"infra"}, Logins: []string{"viewer"}, MaxTTL: config.Duration{Duration: time.Hour}, Extensions: []string{"permit-pty"}, Recording: "on"}}
	if err := e.srv.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	id := login()
	if strings.Join(id.Roles, ",") != "infra-ro" || strings.Join(id.Principals, ",") != "viewer" {
		t.Fatalf("after reload: roles %v, principals %v", id.Roles, id.Principals)
	}
	if life := id.ValidBefore.Sub(id.ValidAfter); life > time.Hour+2*time.Minute {
		t.Errorf("after reload: lifetime %v, want the new max_ttl of 1h", life)
	}
}

// TestRemovedFromIdP: offboarding through the IdP. Once alice is removed
// there, a login she had half done (the IdP had already sent her back with
// a code) yields no certificate, the failure is audited, and a new login
// is refused at the IdP. bob, still there, logs in as before.
func TestRemovedFromIdP(t *testing.T) {
	e, idp := startSigner(t, "", nil)
	r, cb := e.startBrowser(t, newKey(t), 0, "alice", "pw-alice")
	idp.SetUsers(users[1:]) // alice leaves the company
	e.callback(t, cb)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := e.client.WaitLogin(ctx, r.LoginID, r.PollToken, 100*time.Millisecond)
	if err == nil && res.Certificate != "" {
		t.Fatalf("a certificate was issued after alice was removed from the IdP: %+v", res)
	}
	if got := e.audit.named(audit.CertIssued); len(got) != 0 {
		t.Fatalf("cert.issued after removal: %+v", got)
	}
	failed := e.audit.named(audit.LoginFailed)
	if len(failed) == 0 || failed[len(failed)-1].LoginID != r.LoginID {
		t.Fatalf("no login.failed for the half-done login: %+v", failed)
	}

	start, err := e.client.StartLogin(context.Background(), api.LoginStartRequest{PublicKey: pubLine(newKey(t)), Mode: api.ModeBrowser, RedirectURL: loopback})
	if err != nil {
		t.Fatal(err)
	}
	toCallback := func(u *url.URL) bool { return strings.HasPrefix(u.String(), e.url+api.PathCallback) }
	if res, err := testidp.BrowserLogin(context.Background(), start.AuthURL, "alice", "pw-alice", toCallback); err == nil && toCallback(res.FinalURL) {
		t.Fatal("the IdP let a removed person sign in and sent her back to the signer")
	}
	// carol, still at the IdP, signs in there as before (and is then
	// refused by the signer for having no role: she is the control).
	rc, cbc := e.startBrowser(t, newKey(t), 0, "carol", "pw-carol")
	e.callback(t, cbc)
	if res := e.poll(t, rc); res.Status != api.StatusFailed || !strings.Contains(res.Error, "role") {
		t.Fatalf("carol: %+v", res)
	}
}
