package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/kubeproto"
	"github.com/postern-dev/postern/internal/kubetest"
	"github.com/postern-dev/postern/internal/s3test"
	"github.com/postern-dev/postern/internal/storage"
	"github.com/postern-dev/postern/internal/testenv"
	"github.com/postern-dev/postern/internal/testidp"
	"github.com/postern-dev/postern/signer/ca"
)

// haEnv is the multi-host install of docs/deploy.md on one machine: two
// signers and two bastions sharing one S3 bucket (recordings, audit, the
// revocation list), HAProxy with send-proxy-v2 in front of the bastions, a
// stock sshd node, a real kube-apiserver and a kube forwarder dialing out
// to both bastions.
type haEnv struct {
	dir                  string
	s3                   *s3test.Server
	store                storage.Store
	userCA, hostCA       *ca.Authority
	node                 *testenv.Node
	knownHosts           string
	signers              [2]*haSigner
	bastions             [2]*haBastion
	lbPort               int
	kube                 *kubetest.Cluster
	kubectl, kubeExecBin string
	fwdBin               string // postern-kube-forwarder
	fwdLog               string
	postern              string
}

type haSigner struct {
	name, dir, cfg, url, tlsCA, auditLog string
	bin                                  string
}

type haBastion struct {
	name, dir, cfg, addr, auditLog string
	bin                            string
	owner                          testing.TB // the whole test: a restart in a subtest outlives it
	proc                           *kproc
}

const haCluster = "ha"

func startHAEnv(t *testing.T) *haEnv {
	t.Helper()
	for _, b := range []string{"ssh", "ssh-agent", "ssh-add", "haproxy", "tmux"} {
		testenv.RequireBinary(t, b)
	}
	e := &haEnv{dir: t.TempDir()}
	e.s3 = s3test.Start(t)
	var err error
	if e.store, err = storage.NewS3(context.Background(), e.s3.S3Config("ha")); err != nil {
		t.Fatal(err)
	}
	e.userCA, e.hostCA = newCAs(t, e.dir)
	userCAPub := ssh.MarshalAuthorizedKey(e.userCA.PublicKey())
	netns := os.Geteuid() == 0 || testenv.Strict()
	e.node = testenv.StartNode(t, testenv.NodeOptions{Name: "node1", UserCA: userCAPub, Netns: netns,
		SignHostKey: func(pub ssh.PublicKey, principals []string) (*ssh.Certificate, error) {
			return e.hostCA.SignHost(pub, principals, time.Hour)
		}})
	e.knownHosts = filepath.Join(e.dir, "known_hosts")
	writeFile(t, e.knownHosts, testenv.KnownHostsCA("*", e.hostCA.PublicKey()))

	// The test IdP accepts both signers' callbacks: people log in at
	// either signer directly.
	signerAddrs := [2]string{freeAddr(t), freeAddr(t)}
	idpAddr := freeAddr(t)
	secret := filepath.Join(e.dir, "oidc-secret")
	writeFile(t, secret, "ha-client-secret\n")
	writeFile(t, filepath.Join(e.dir, "users.toml"), stackUsers)
	startProc(t, "postern-testidp", func(out string) bool { return strings.Contains(out, "issuer http") },
		testenv.GoBuild(t, "./internal/testidp/cmd/postern-testidp"), "--addr", idpAddr,
		"--users", filepath.Join(e.dir, "users.toml"), "--client-secret-file", secret,
		"--redirect-uri", "https://"+signerAddrs[0]+"/v1/login/callback",
		"--redirect-uri", "https://"+signerAddrs[1]+"/v1/login/callback")

	// The kube cluster and the forwarder's credential.
	e.kube = kubetest.Start(t)
	e.kubectl = kubetest.KubectlPath(t)
	e.kube.Apply(t, kubetest.TeamRBAC)
	e.kubeExecBin = testenv.GoBuild(t, "./kube-exec")
	e.fwdBin = testenv.GoBuild(t, "./kube-exec/cmd/postern-kube-forwarder")
	e.postern = testenv.GoBuild(t, "./agent-helper")

	creds := filepath.Join(e.dir, "aws-credentials")
	writeFile(t, creds, fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", s3test.AccessKey, s3test.SecretKey))
	nodeRule := `["node1"]`
	if !netns {
		nodeRule = fmt.Sprintf(`["127.0.0.1:%d"]`, e.node.Port)
	}
	storageAudit := fmt.Sprintf(`
[storage]
s3_bucket = %q
s3_prefix = "ha"
s3_endpoint = %q
s3_path_style = true
s3_region = "us-east-1"
s3_credentials_file = %q
upload_min_backoff = "200ms"
upload_max_backoff = "1s"

[audit]
s3 = true
s3_batch_interval = "500ms"
checkpoint_interval = "1s"
`, e.s3.Bucket, e.s3.Endpoint, creds)
	shared := storageAudit + fmt.Sprintf(`
[kube]
forwarder_ca = %q
keepalive = "1s"

[[role]]
name = "ops"
groups = ["infra"]
logins = [%q]
nodes = %s
kube_clusters = [%q]
kube_groups = ["team-a-devs"]
`, filepath.Join(e.dir, "host_ca.pub"), e.node.Login, nodeRule, haCluster)

	signerBin := testenv.GoBuild(t, "./signer")
	for i, name := range []string{"signer-a", "signer-b"} {
		s := &haSigner{name: name, dir: filepath.Join(e.dir, name), bin: signerBin, url: "https://" + signerAddrs[i]}
		s.cfg = filepath.Join(s.dir, "postern.toml")
		s.tlsCA = filepath.Join(s.dir, "tls.crt")
		s.auditLog = filepath.Join(s.dir, "audit.log")
		if err := os.MkdirAll(s.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		writeFile(t, s.cfg, fmt.Sprintf(`
[signer]
listen = %q
id = %q
data_dir = %q
user_ca_key = %q
host_ca_key = %q
bastions = ["bastion"]
revocation_store = "s3"
[signer.oidc]
issuer = "http://%s"
client_secret_file = %q
%s`, signerAddrs[i], name, s.dir, filepath.Join(e.dir, "user_ca"), filepath.Join(e.dir, "host_ca"), idpAddr, secret, shared))
		startProc(t, name, func(out string) bool { return strings.Contains(out, "signer listening") },
			s.bin, "--config", s.cfg)
		e.signers[i] = s
	}

	bastionBin := testenv.GoBuild(t, "./bastion")
	for i, name := range []string{"bastion-a", "bastion-b"} {
		b := &haBastion{name: name, dir: filepath.Join(e.dir, name), bin: bastionBin, addr: freeAddr(t), owner: t}
		b.cfg = filepath.Join(b.dir, "postern.toml")
		b.auditLog = filepath.Join(b.dir, "audit.log")
		if err := os.MkdirAll(b.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		certifyHostKey(t, e.hostCA, filepath.Join(b.dir, "host_key"), "bastion", "127.0.0.1")
		s := e.signers[i]
		writeFile(t, b.cfg, fmt.Sprintf(`
[bastion]
listen = %q
id = %q
data_dir = %q
user_ca = %q
audit_log = %q
signer_url = %q
signer_ca = %q
revocation_poll = "500ms"
shutdown_grace = "2s"
proxy_protocol = true
proxy_from = ["127.0.0.2"]
direct_from = ["127.0.0.1"]

[[bastion.node]]
name = "node1"
addr = %q
%s`, b.addr, name, b.dir, filepath.Join(e.dir, "user_ca.pub"), b.auditLog, s.url, s.tlsCA, e.node.Addr, shared))
		b.start(t)
		e.bastions[i] = b
	}
	e.lbPort = freePort(t)
	// The balancer dials the bastions from 127.0.0.2 (their proxy_from);
	// the forwarder and people's direct connections come from 127.0.0.1
	// (direct_from).
	startHAProxy(t, e.lbPort, "send-proxy-v2 source 127.0.0.2", e.bastions[0].addr, e.bastions[1].addr)

	// One forwarder, dialing out to both bastions.
	fdir := filepath.Join(e.dir, "forwarder")
	if err := os.MkdirAll(fdir, 0o700); err != nil {
		t.Fatal(err)
	}
	certifyHostKey(t, e.hostCA, filepath.Join(fdir, "host_key"), kubeproto.ForwarderPrincipal(haCluster))
	e.fwdLog = filepath.Join(fdir, "audit.log")
	fwdCfg := filepath.Join(fdir, "forwarder.toml")
	writeFile(t, fwdCfg, fmt.Sprintf(`
[kube]
keepalive = "1s"

[kube.forwarder]
cluster = %q
id = "ha-forwarder"
kubeconfig = %q
bastions = [%q, %q]
data_dir = %q
host_ca = %q
audit_log = %q
min_backoff = "100ms"
max_backoff = "1s"
%s`, haCluster, e.kube.UserKubeconfig(t, "postern-forwarder", nil), e.bastions[0].addr, e.bastions[1].addr, fdir,
		filepath.Join(e.dir, "host_ca.pub"), e.fwdLog, storageAudit))
	fwd := startKProcEnv(t, t, "postern-kube-forwarder", nil, "tunnel up: registered", e.fwdBin, "--config", fwdCfg, "--log-level", "debug")
	waitFor(t, func() bool { return strings.Count(fwd.logs.String(), "tunnel up: registered") >= 2 })
	return e
}

func (b *haBastion) start(t *testing.T) {
	t.Helper()
	b.proc = startKProcEnv(t, b.owner, b.name, nil, "bastion listening", b.bin, "--config", b.cfg, "--log-level", "debug")
}

// kill ends the bastion with SIGKILL: no shutdown, no final checkpoint.
func (b *haBastion) kill(t *testing.T) {
	t.Helper()
	_ = syscall.Kill(-b.proc.cmd.Process.Pid, syscall.SIGKILL)
	<-b.proc.done
}

func (b *haBastion) events(t *testing.T, name string) []audit.Event {
	t.Helper()
	return kubeEvents(t, b.auditLog, name)
}

// haPerson is someone who logged in with the real CLI at one signer.
type haPerson struct {
	name  string
	agent *testenv.Agent
	home  string
	cfg   string // ssh -F: "lb", "bastion-a", "bastion-b" and node1 behind each
}

func (p *haPerson) env() []string {
	return append(os.Environ(), append(p.agent.Env(), "HOME="+p.home, "POSTERN_HOME="+filepath.Join(p.home, ".postern"), "DISPLAY=", "WAYLAND_DISPLAY=")...)
}

// login runs `postern login --no-browser` against signer s and plays the
// person at the browser.
func (e *haEnv) login(t *testing.T, s *haSigner, user, pass string) *haPerson {
	t.Helper()
	p := &haPerson{name: user, agent: testenv.StartAgent(t), home: filepath.Join(e.dir, "home-"+user)}
	if err := os.MkdirAll(p.home, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(e.postern, "login", "--no-browser", "--signer", s.url, "--signer-ca", s.tlsCA)
	cmd.Env = p.env()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuf{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	sc := bufio.NewScanner(stdout)
	authURL := ""
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "http") {
			authURL = l
			break
		}
	}
	if authURL == "" {
		t.Fatalf("postern login printed no URL; stderr:\n%s", stderr)
	}
	res, err := testidp.BrowserLogin(ctx(t), authURL, user, pass, func(u *url.URL) bool {
		return strings.HasPrefix(u.String(), s.url+"/v1/login/callback")
	})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(readFile(t, s.tlsCA))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 20 * time.Second}
	resp, err := hc.Get(res.FinalURL.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("postern login at %s: %v; stderr:\n%s", s.name, err, stderr)
	}
	hosts := []testenv.HostBlock{
		{Pattern: "lb", HostName: "127.0.0.1", Port: e.lbPort, User: "e2e", Extra: []string{"LogLevel INFO", "HostKeyAlias 127.0.0.1"}},
	}
	for _, b := range e.bastions {
		host, port := splitHostPort(t, b.addr)
		hosts = append(hosts, testenv.HostBlock{Pattern: b.name, HostName: host, Port: port, User: "e2e", Extra: []string{"LogLevel INFO"}})
	}
	for _, jump := range []string{"lb", "bastion-a", "bastion-b"} {
		hb := testenv.HostBlock{Pattern: "node1-via-" + jump, HostName: "node1", User: e.node.Login, ProxyJump: jump}
		if e.node.Netns == nil {
			hb.HostName, hb.Port = "127.0.0.1", e.node.Port
		}
		hosts = append(hosts, hb)
	}
	p.cfg = testenv.ClientConfig(t, e.knownHosts, p.agent.Socket, hosts...)
	return p
}

func splitHostPort(t *testing.T, addr string) (string, int) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	port, perr := strconv.Atoi(p)
	if err != nil || perr != nil {
		t.Fatalf("bad address %q", addr)
	}
	return host, port
}

// ssh runs `ssh -F cfg host cmd` as p.
func (p *haPerson) ssh(t *testing.T, host, command string) (string, string, int) {
	t.Helper()
	return bstRun(t, "ssh", p.cfg, "", host, command)
}

// kubectl runs `kube-exec --bastion ADDR -- kubectl args...` as p.
func (e *haEnv) kubectlVia(t *testing.T, p *haPerson, bastion string, args ...string) (string, string, int) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	full := append([]string{"--cluster", haCluster, "--bastion", bastion, "--known-hosts", e.knownHosts, "--", e.kubectl}, args...)
	cmd := exec.CommandContext(c, e.kubeExecBin, full...)
	cmd.Env = p.env()
	var o, er strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &er
	_ = cmd.Run()
	if c.Err() != nil {
		t.Fatalf("kube-exec via %s timed out; stderr: %s", bastion, er.String())
	}
	return o.String(), er.String(), cmd.ProcessState.ExitCode()
}

// objects lists the bucket's keys under prefix (inside the "ha" prefix).
func (e *haEnv) objects(t *testing.T, prefix string) []string {
	t.Helper()
	infos, err := e.store.List(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, len(infos))
	for i, o := range infos {
		keys[i] = o.Key
	}
	return keys
}

// TestHA: two signers and two bastions behind HAProxy share one bucket and
// one revocation list. Logins work at either signer and ssh -J through the
// balancer lands on both bastions with the client's address; the forwarder
// serves kubectl through both; a bastion killed with SIGKILL mid-session
// loses no record of that session; recordings and the audit of every part
// reach the bucket and verify there; a revocation made at one signer is
// enforced by the bastion that polls the other.
func TestHA(t *testing.T) {
	e := startHAEnv(t)
	aliceA := e.login(t, e.signers[0], "alice", "alice-pw")
	aliceB := e.login(t, e.signers[1], "alice", "alice-pw") // the same person, at the other signer

	t.Run("ssh -J through the balancer reaches both bastions", func(t *testing.T) {
		for i := range 4 {
			out, errOut, code := aliceA.ssh(t, "node1-via-lb", fmt.Sprintf("echo via-lb-%d", i))
			if code != 0 || strings.TrimSpace(out) != fmt.Sprintf("via-lb-%d", i) {
				t.Fatalf("ssh -J lb node1 #%d: exit %d, out %q, stderr:\n%s", i, code, out, errOut)
			}
		}
		for _, b := range e.bastions {
			n := 0
			for _, ev := range b.events(t, audit.SessionStart) {
				if ev.Person != "alice@example.com" {
					continue
				}
				n++
				if !strings.HasPrefix(ev.ClientAddr, "127.0.0.1:") || strings.HasSuffix(ev.ClientAddr, fmt.Sprintf(":%d", e.lbPort)) {
					t.Errorf("%s: client address %q, want the client's own (from the PROXY header)", b.name, ev.ClientAddr)
				}
			}
			if n == 0 {
				t.Errorf("%s served none of alice's 4 connections through the balancer (round robin)", b.name)
			}
		}
	})

	t.Run("a login at either signer works at either bastion", func(t *testing.T) {
		for _, p := range []*haPerson{aliceA, aliceB} {
			for _, via := range []string{"node1-via-bastion-a", "node1-via-bastion-b"} {
				if out, errOut, code := p.ssh(t, via, "echo ok"); code != 0 || strings.TrimSpace(out) != "ok" {
					t.Fatalf("%s: exit %d %q\n%s", via, code, out, errOut)
				}
			}
		}
		for _, s := range e.signers {
			if len(kubeEvents(t, s.auditLog, audit.CertIssued)) == 0 {
				t.Errorf("%s issued no certificate", s.name)
			}
		}
	})

	t.Run("the forwarder serves kubectl through both bastions", func(t *testing.T) {
		for _, b := range e.bastions {
			name := "via-" + b.name
			if _, errOut, code := e.kubectlVia(t, aliceA, b.addr, "create", "configmap", name, "-n", "team-a"); code != 0 {
				t.Fatalf("kubectl create via %s: exit %d, stderr:\n%s", b.name, code, errOut)
			}
			waitKubeEvent(t, e.fwdLog, audit.KubeRequest, func(ev audit.Event) bool {
				return ev.Person == "alice@example.com" && ev.Verb == "create" && ev.KubeNamespace == "team-a" && ev.Status == 201
			})
		}
		out, _, err := e.kube.Kubectl(t, "get", "configmaps", "-n", "team-a", "-o", "name")
		if err != nil || !strings.Contains(out, "configmap/via-bastion-a") || !strings.Contains(out, "configmap/via-bastion-b") {
			t.Fatalf("configmaps made through both bastions: %q (%v)", out, err)
		}
	})

	var crashed audit.Event // the session.end of the session on the killed bastion
	var crashedSID string   // and its session id
	t.Run("kill -9 of a bastion loses no record of its sessions", func(t *testing.T) {
		a := e.bastions[0]
		cmd := exec.Command(testenv.RequireBinary(t, "ssh"), "-F", aliceA.cfg, "-tt", "node1-via-bastion-a", "echo before-crash; sleep 30")
		cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() && !strings.Contains(sc.Text(), "before-crash") {
		}
		var start audit.Event
		waitFor(t, func() bool {
			for _, ev := range a.events(t, audit.SessionStart) {
				if ev.Method == "record" && ev.Person == "alice@example.com" && haOpen(a.events(t, audit.SessionEnd), ev.SessionID) {
					start = ev
					return true
				}
			}
			return false
		})
		time.Sleep(1500 * time.Millisecond) // the spool fsyncs within a second
		a.kill(t)
		a.start(t)
		crashedSID = start.SessionID
		crashed = waitKubeEvent(t, a.auditLog, audit.SessionEnd, func(ev audit.Event) bool { return strings.Contains(ev.Recording, start.SessionID) })
		if !strings.Contains(crashed.Reason, "restarted") {
			t.Errorf("session.end after the crash: %+v", crashed)
		}
		waitKubeEvent(t, a.auditLog, audit.RecordingStored, func(ev audit.Event) bool { return ev.Recording == crashed.Recording })
		rc, err := e.store.Get(context.Background(), crashed.Recording)
		if err != nil {
			t.Fatalf("the cut-short recording is not in the bucket: %v", err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if out, _, _ := castText(t, string(b)); !strings.Contains(out, "before-crash") {
			t.Fatalf("recovered recording: %q", out)
		}
	})

	t.Run("recordings and audit of every part are in the bucket and verify", func(t *testing.T) {
		recs := 0
		for _, k := range e.objects(t, "") {
			if strings.HasSuffix(k, ".cast") || strings.Contains(k, "recordings/") {
				recs++
			}
		}
		if recs < 2 {
			t.Errorf("%d recordings in the bucket, want the sessions of both bastions", recs)
		}
		// Every writer's log reaches the bucket; the killed bastion's
		// events before and after the crash are there.
		deadline := time.Now().Add(30 * time.Second)
		for {
			missing := e.auditMissing(t, crashedSID)
			if len(missing) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the bucket's audit lacks: %s\nobjects: %v", strings.Join(missing, "; "), e.objects(t, "audit/"))
			}
			time.Sleep(200 * time.Millisecond)
		}
		cli := testenv.GoBuild(t, "./bastion")
		args := []string{"verify", "--config", e.bastions[1].cfg}
		for _, d := range []string{"bastion-a", "bastion-b", "signer-a", "signer-b", "forwarder"} {
			args = append(args, "--pubkey", filepath.Join(e.dir, d, "audit_key.pub"))
		}
		out, code := auditCLI(t, cli, append(args, e.s3URL("audit/"))...)
		if code != 0 {
			t.Fatalf("audit verify of the bucket: exit %d\n%s", code, out)
		}
	})

	t.Run("a revocation at one signer is enforced through the other", func(t *testing.T) {
		a, b := e.bastions[0], e.bastions[1]
		c, cancel := context.WithCancel(context.Background())
		defer cancel()
		sess := exec.CommandContext(c, testenv.RequireBinary(t, "ssh"), "-F", aliceA.cfg, "node1-via-bastion-a", "echo started; exec sleep 60")
		sess.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
		started, errb := &syncBuf{}, &syncBuf{}
		sess.Stdout, sess.Stderr = started, errb
		if err := sess.Start(); err != nil {
			t.Fatal(err)
		}
		ended := make(chan struct{})
		go func() { _ = sess.Wait(); close(ended) }()
		waitFor(t, func() bool { return strings.Contains(started.String(), "started") })

		// Revoked at signer b; bastion a polls signer a, which learns it
		// from the bucket.
		s := e.signers[1]
		run(t, s.bin, "revoke", "--config", s.cfg, "--key-id", "alice@example.com", "--reason", "left the company")
		select {
		case <-ended:
		case <-time.After(15 * time.Second):
			t.Fatalf("alice's session on bastion-a is still alive 15 s after the revocation at signer-b; bastion-a log:\n%s", a.proc.logs)
		}
		if !strings.Contains(errb.String(), revocationMessage) {
			t.Errorf("the ended session said %q, want %q", errb.String(), revocationMessage)
		}
		waitKubeEvent(t, a.auditLog, audit.SessionEnd, func(ev audit.Event) bool {
			return ev.Person == "alice@example.com" && strings.Contains(ev.Reason, "revoked")
		})
		// Both bastions enforce the list from their own signer.
		for _, b := range e.bastions {
			waitFor(t, func() bool {
				return strings.Contains(b.proc.logs.String(), `msg="revocation list in force" component=revocation generation=1`)
			})
		}
		for _, p := range []*haPerson{aliceA, aliceB} {
			for _, via := range []string{"node1-via-lb", "node1-via-bastion-a", "node1-via-bastion-b"} {
				if _, errOut, code := p.ssh(t, via, "true"); code == 0 || !strings.Contains(errOut, revocationMessage) {
					t.Errorf("revoked alice through %s: exit %d, stderr %q", via, code, errOut)
				}
			}
		}
		if _, errOut, code := e.kubectlVia(t, aliceB, b.addr, "get", "pods", "-n", "team-a"); code == 0 || !strings.Contains(errOut, "revoked") {
			t.Errorf("revoked alice's kubectl via bastion-b: exit %d, stderr %q", code, errOut)
		}
	})
}

// haOpen reports whether no session.end names sid.
func haOpen(ends []audit.Event, sid string) bool {
	for _, ev := range ends {
		if ev.SessionID == sid {
			return false
		}
	}
	return true
}

// auditMissing says what the audit in the bucket still lacks: the logs of
// both bastions, both signers and the forwarder, and the session.end of
// the session cut short by the crash (written by the restarted bastion).
func (e *haEnv) auditMissing(t *testing.T, crashedSID string) []string {
	t.Helper()
	seen := map[string]bool{}
	for _, ev := range e.bucketAudit(t) {
		seen[ev.Writer+"/"+ev.WriterID] = true
		if ev.Event == audit.SessionEnd && crashedSID != "" && strings.Contains(ev.Recording, crashedSID) {
			seen["crashed session.end"] = true
		}
	}
	var missing []string
	for _, k := range []string{"bastion/bastion-a", "bastion/bastion-b", "kube-forwarder/ha-forwarder", "signer/signer-a", "signer/signer-b", "crashed session.end"} {
		if !seen[k] {
			missing = append(missing, k)
		}
	}
	if crashedSID == "" {
		missing = append(missing, "(no crashed session to look for)")
	}
	return missing
}

// s3URL names a prefix of the bucket (inside the deployment's "ha" prefix).
func (e *haEnv) s3URL(prefix string) string {
	return "s3://" + e.s3.Bucket + "/ha/" + prefix
}

// bucketAudit reads every audit object in the bucket, in key order.
func (e *haEnv) bucketAudit(t *testing.T) []audit.Event {
	t.Helper()
	var all []audit.Event
	for _, k := range e.objects(t, "audit/") {
		rc, err := e.store.Get(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		evs, err := audit.Read(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("audit object %s: %v", k, err)
		}
		all = append(all, evs...)
	}
	return all
}
