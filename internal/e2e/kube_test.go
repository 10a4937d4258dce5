package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/kubeproto"
	"github.com/postern-dev/postern/internal/kubetest"
	"github.com/postern-dev/postern/internal/sshcert"
	"github.com/postern-dev/postern/internal/testenv"
	"github.com/postern-dev/postern/signer/ca"
)

// kubetest.TeamRBAC: people in the group team-a-devs may work with pods and
// configmaps in team-a and exec, attach and port-forward there; people in
// team-a-viewers may only read pods; the forwarder may only impersonate.

// kubeSide is a cluster offered through a bastion, from the real
// binaries: kube-apiserver and etcd (kubetest) with kubetest.TeamRBAC, the
// real kubectl, and the forwarder (kube-exec forwarder) dialing out to
// one bastion. Any bastion whose forwarder_ca is the host CA and whose
// roles include kubeDevRole serves it.
type kubeSide struct {
	// top is the test that owns the processes: ones restarted by a
	// subtest live on until it ends.
	top           testing.TB
	dir           string
	kube          *kubetest.Cluster
	kubectl       string
	kubeExecBin   string
	fwdBin        string // postern-kube-forwarder
	fwdKubeconfig string // the forwarder's own credential: impersonation only
	fwdCfg        string
	fwdLog        string // audit
	fwdMetrics    string // the forwarder's metrics_listen
	fwd           *kproc
	// The bastion kube-exec goes through, and the known_hosts certifying it.
	bastionAddr, knownHosts string
}

const kubeCluster = "e2e"

// kubeDevRole grants the cluster to the IdP group dev, as the Kubernetes
// group team-a-devs (bound in team-a by kubetest.TeamRBAC).
const kubeDevRole = `
[[role]]
name = "kube-dev"
groups = ["dev"]
kube_clusters = ["` + kubeCluster + `"]
kube_groups = ["team-a-devs"]
`

// kubeViewRole grants the cluster to the IdP group viewers, as the
// Kubernetes group team-a-viewers: pods in team-a may be read, not
// exec'd into or port-forwarded to.
const kubeViewRole = `
[[role]]
name = "kube-view"
groups = ["viewers"]
kube_clusters = ["` + kubeCluster + `"]
kube_groups = ["team-a-viewers"]
`

// startKubeSide starts the cluster and builds kube-exec; the forwarder
// is configured and started once the bastion is known.
func startKubeSide(t testing.TB, dir string) *kubeSide {
	t.Helper()
	testenv.RequireBinary(t, "ssh-agent")
	k := &kubeSide{top: t, dir: dir}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	k.kube = kubetest.Start(t)
	k.kubectl = kubetest.KubectlPath(t)
	k.kube.Apply(t, kubetest.TeamRBAC)
	k.fwdKubeconfig = k.kube.UserKubeconfig(t, "postern-forwarder", nil)
	k.kubeExecBin = testenv.GoBuild(t, "./kube-exec")
	k.fwdBin = testenv.GoBuild(t, "./kube-exec/cmd/postern-kube-forwarder")
	return k
}

// certifyHostKey generates a host key at keyPath with its certificate
// from hostCA, as postern-signer host-cert would make them.
func certifyHostKey(t testing.TB, hostCA *ca.Authority, keyPath string, principals ...string) {
	t.Helper()
	if err := ca.Generate(keyPath, ca.KeyEd25519, "host"); err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(kubeRead(t, keyPath+".pub"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := hostCA.SignHost(pub, principals, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kubeWrite(t, keyPath+"-cert.pub", ssh.MarshalAuthorizedKey(c), 0o644)
}

// configureForwarder gives the forwarder a host certificate from hostCA
// naming the cluster and a configuration dialing bastionAddr, whose host
// certificate hostCAPub (a file) certifies; kube-exec will go through
// bastionAddr, certified by knownHosts.
func (k *kubeSide) configureForwarder(t testing.TB, hostCA *ca.Authority, hostCAPub, bastionAddr, knownHosts string) {
	t.Helper()
	k.bastionAddr, k.knownHosts = bastionAddr, knownHosts
	fdir := filepath.Join(k.dir, "forwarder")
	if err := os.MkdirAll(fdir, 0o700); err != nil {
		t.Fatal(err)
	}
	certifyHostKey(t, hostCA, filepath.Join(fdir, "host_key"), kubeproto.ForwarderPrincipal(kubeCluster))
	k.fwdLog = filepath.Join(k.dir, "forwarder-audit.log")
	k.fwdMetrics = kubeFreeAddr(t)
	k.fwdCfg = filepath.Join(k.dir, "forwarder.toml")
	kubeWrite(t, k.fwdCfg, []byte(fmt.Sprintf(`
[kube]
keepalive = "1s"

[kube.forwarder]
cluster = %q
id = "e2e-forwarder"
kubeconfig = %q
bastions = [%q]
data_dir = %q
host_ca = %q
audit_log = %q
min_backoff = "100ms"
max_backoff = "1s"
metrics_listen = %q
`, kubeCluster, k.fwdKubeconfig, bastionAddr, fdir, hostCAPub, k.fwdLog, k.fwdMetrics)), 0o600)
}

func (k *kubeSide) startForwarder(t testing.TB) {
	t.Helper()
	// As `kube-exec forwarder`, which runs postern-kube-forwarder found
	// on PATH (the HA test runs the binary itself, as the unit does).
	env := append(os.Environ(), "PATH="+filepath.Dir(k.fwdBin)+string(filepath.ListSeparator)+os.Getenv("PATH"))
	k.fwd = startKProcEnv(t, k.top, "kube-exec forwarder", env, "tunnel up: registered", k.kubeExecBin, "forwarder", "--config", k.fwdCfg, "--log-level", "debug")
}

// command is `kube-exec --cluster e2e -- kubectl args...` with env (a
// person's: see kubeUser.env), with kube-exec's own SSH connection even
// while a kube-exec proxy runs (--reuse=false; TestKube's "kube-exec uses
// a running proxy" tests reuse).
func (k *kubeSide) command(ctx context.Context, env []string, args ...string) *exec.Cmd {
	return k.commandReuse(ctx, env, false, args...)
}

func (k *kubeSide) commandReuse(ctx context.Context, env []string, reuse bool, args ...string) *exec.Cmd {
	full := append([]string{"--cluster", kubeCluster, "--bastion", k.bastionAddr, "--known-hosts", k.knownHosts, fmt.Sprintf("--reuse=%v", reuse), "--", k.kubectl}, args...)
	cmd := exec.CommandContext(ctx, k.kubeExecBin, full...)
	cmd.Env = env
	return cmd
}

// kubeEnv is a kubeSide behind a bastion of its own (the real
// postern-bastion binary). Certificates are minted directly with the
// CAs: logging in is tested elsewhere.
type kubeEnv struct {
	*kubeSide
	dir        string
	userCA     *ca.Authority
	hostCA     *ca.Authority
	addr       string // bastion (knownHosts, promoted, certifies it)
	bastionBin string
	bastionCfg string
	bastionLog string // audit
	bastion    *kproc
}

func startKubeEnv(t testing.TB) *kubeEnv {
	t.Helper()
	e := &kubeEnv{dir: t.TempDir()}
	e.kubeSide = startKubeSide(t, filepath.Join(e.dir, "kube"))
	e.bastionBin = testenv.GoBuild(t, "./bastion")

	e.userCA, e.hostCA = newCAs(t, e.dir)
	e.knownHosts = filepath.Join(e.dir, "known_hosts")
	kubeWrite(t, e.knownHosts, []byte(testenv.KnownHostsCA("*", e.hostCA.PublicKey())), 0o644)

	bdir := filepath.Join(e.dir, "bastion")
	if err := os.MkdirAll(bdir, 0o700); err != nil {
		t.Fatal(err)
	}
	certifyHostKey(t, e.hostCA, filepath.Join(bdir, "host_key"), "bastion", "127.0.0.1")

	e.addr = kubeFreeAddr(t)
	e.bastionLog = filepath.Join(e.dir, "bastion-audit.log")
	e.bastionCfg = filepath.Join(e.dir, "bastion.toml")
	kubeWrite(t, e.bastionCfg, []byte(fmt.Sprintf(`
[bastion]
listen = %q
id = "e2e-bastion"
data_dir = %q
user_ca = %q
audit_log = %q
shutdown_grace = "2s"

[kube]
forwarder_ca = %q
keepalive = "1s"
%s
[[role]]
name = "ops"
groups = ["ops"]
nodes = ["*.internal"]
`, e.addr, bdir, filepath.Join(e.dir, "user_ca.pub"), e.bastionLog, filepath.Join(e.dir, "host_ca.pub"), kubeDevRole+kubeViewRole)), 0o600)
	e.configureForwarder(t, e.hostCA, filepath.Join(e.dir, "host_ca.pub"), e.addr, e.knownHosts)

	e.startBastion(t)
	e.startForwarder(t)
	return e
}

func (e *kubeEnv) startBastion(t testing.TB) {
	t.Helper()
	e.bastion = startKProcEnv(t, e.top, "postern-bastion", nil, "bastion listening", e.bastionBin, "--config", e.bastionCfg, "--log-level", "debug")
}

// kubeUser is a person with a postern certificate in their own agent.
type kubeUser struct {
	keyID string
	agent *testenv.Agent
	home  string
}

func (e *kubeEnv) user(t testing.TB, keyID, roles string) *kubeUser {
	t.Helper()
	u := &kubeUser{keyID: keyID, agent: testenv.StartAgent(t), home: filepath.Join(e.dir, "home-"+strings.Split(keyID, "@")[0])}
	if err := os.MkdirAll(u.home, 0o700); err != nil {
		t.Fatal(err)
	}
	e.login(t, u, roles, time.Hour)
	return u
}

// login puts a new key and a certificate valid for ttl into u's agent, as
// postern login does (the agent drops it when it expires).
func (e *kubeEnv) login(t testing.TB, u *kubeUser, roles string, ttl time.Duration) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := ssh.NewPublicKey(priv.Public())
	cert, err := e.userCA.SignUser(ca.UserCert{Key: pub, KeyID: u.keyID, Principals: []string{"dev"}, TTL: ttl,
		Extensions: map[string]string{sshcert.ExtRoles: roles, "permit-pty": ""}})
	if err != nil {
		t.Fatal(err)
	}
	if err := u.agent.Client(t).Add(agent.AddedKey{PrivateKey: priv, Certificate: cert, Comment: sshcert.AgentComment(u.keyID), LifetimeSecs: uint32(ttl / time.Second)}); err != nil {
		t.Fatal(err)
	}
}

func (u *kubeUser) env() []string { return personEnv(u.home, u.agent.Socket) }

// personEnv is what kube-exec runs with for a person: their own home
// (kubectl's cache, ~/.postern) and ssh-agent.
func personEnv(home, agentSock string) []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "POSTERN_HOME=" + filepath.Join(home, ".postern"), "SSH_AUTH_SOCK=" + agentSock}
}

// run runs kube-exec --cluster e2e -- kubectl args... as u.
func (e *kubeEnv) run(t testing.TB, u *kubeUser, stdin string, args ...string) (string, string, int) {
	t.Helper()
	return e.runEnv(t, u.env(), stdin, args...)
}

// runEnv runs kube-exec --cluster e2e -- kubectl args... with env.
func (k *kubeSide) runEnv(t testing.TB, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	return k.runReuse(t, env, false, stdin, args...)
}

// runReuse is runEnv with kube-exec's --reuse.
func (k *kubeSide) runReuse(t testing.TB, env []string, reuse bool, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := k.commandReuse(ctx, env, reuse, args...)
	var o, er bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &o, &er, strings.NewReader(stdin)
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run kube-exec: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("kube-exec %s timed out; stderr: %s", strings.Join(args, " "), er.String())
	}
	return o.String(), er.String(), cmd.ProcessState.ExitCode()
}

// listConfigmaps runs `kube-exec --cluster e2e --bastion BASTION
// --known-hosts FILE FLAGS... -- kubectl get configmaps -n team-a` with env
// and returns its combined output and exit status.
func (k *kubeSide) listConfigmaps(t testing.TB, env []string, bastion, knownHosts string, flags ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{"--cluster", kubeCluster, "--bastion", bastion, "--known-hosts", knownHosts}, flags...)
	cmd := exec.CommandContext(ctx, k.kubeExecBin, append(args, "--", k.kubectl, "get", "configmaps", "-n", "team-a", "-o", "name")...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run kube-exec: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("kube-exec timed out: %s", out)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

func kubeEvents(t testing.TB, path, name string) []audit.Event {
	t.Helper()
	evs, err := audit.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return audit.Filter(evs, name)
}

func waitKubeEvent(t testing.TB, path, name string, match func(audit.Event) bool) audit.Event {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, ev := range kubeEvents(t, path, name) {
			if match(ev) {
				return ev
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(path)
			t.Fatalf("no matching %s event in %s:\n%s", name, path, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestKube(t *testing.T) {
	e := startKubeEnv(t)
	alice := e.user(t, "alice@example.com", "kube-dev")
	bob := e.user(t, "bob@example.com", "ops")

	t.Run("alice lists pods in team-a", func(t *testing.T) {
		out, stderr, code := e.run(t, alice, "", "get", "pods", "-n", "team-a")
		if code != 0 {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
		}
		if !strings.Contains(stderr, "No resources found in team-a namespace") {
			t.Errorf("stderr %q", stderr)
		}
		ev := waitKubeEvent(t, e.fwdLog, audit.KubeRequest, func(ev audit.Event) bool {
			return ev.Verb == "list" && ev.Resource == "pods" && ev.KubeNamespace == "team-a"
		})
		if ev.Person != "alice@example.com" || ev.KubeUser != "alice@example.com" || ev.Status != 200 || ev.Cluster != kubeCluster || ev.SessionID == "" {
			t.Errorf("event %+v", ev)
		}
		start := waitKubeEvent(t, e.bastionLog, audit.SessionStart, func(b audit.Event) bool { return b.SessionID == ev.SessionID })
		if start.Person != "alice@example.com" || start.Target != "kube/e2e" {
			t.Errorf("bastion session.start %+v", start)
		}
	})

	t.Run("alice applies and deletes a configmap", func(t *testing.T) {
		cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\n  namespace: team-a\ndata:\n  k: v\n"
		out, stderr, code := e.run(t, alice, cm, "apply", "-f", "-")
		if code != 0 || !strings.Contains(out, "configmap/hello created") {
			t.Fatalf("apply: exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
		}
		out, stderr, code = e.run(t, alice, "", "get", "configmap", "hello", "-n", "team-a", "-o", "jsonpath={.data.k}")
		if code != 0 || out != "v" {
			t.Fatalf("get: exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
		}
		out, stderr, code = e.run(t, alice, "", "delete", "configmap", "hello", "-n", "team-a")
		if code != 0 || !strings.Contains(out, `configmap "hello" deleted`) {
			t.Fatalf("delete: exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
		}
		waitKubeEvent(t, e.fwdLog, audit.KubeRequest, func(ev audit.Event) bool {
			return ev.Verb == "delete" && ev.Resource == "configmaps" && ev.KubeName == "hello" && ev.Person == "alice@example.com" && ev.Status == 200
		})
	})

	t.Run("alice watches configmaps", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := e.command(ctx, alice.env(), "get", "configmaps", "-n", "team-a", "--watch", "-o", "name")
		var out syncBuffer
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The watch is open once the initial list is printed.
		// No controller manager: team-a has no configmap to list, so give
		// the watch a moment to open.
		time.Sleep(2 * time.Second)
		e.kube.Apply(t, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\n  namespace: team-a\n")
		waitFor(t, func() bool { return strings.Contains(out.String(), "configmap/watched") })
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait() // kubectl ends on the interrupt kube-exec passes on
		waitKubeEvent(t, e.fwdLog, audit.KubeRequest, func(ev audit.Event) bool {
			return ev.Verb == "watch" && ev.Resource == "configmaps" && ev.Person == "alice@example.com"
		})
	})

	t.Run("alice is forbidden in default", func(t *testing.T) {
		out, stderr, code := e.run(t, alice, "", "get", "pods", "-n", "default")
		if code == 0 || !strings.Contains(stderr, `User "alice@example.com" cannot list resource "pods" in API group "" in the namespace "default"`) {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
		}
		waitKubeEvent(t, e.fwdLog, audit.KubeRequest, func(ev audit.Event) bool {
			return ev.KubeNamespace == "default" && ev.Status == 403 && ev.Person == "alice@example.com"
		})
	})

	t.Run("header tricks gain nothing", func(t *testing.T) {
		for _, args := range [][]string{
			{"get", "pods", "-n", "default", "--as", "system:admin"},
			{"get", "pods", "-n", "default", "--as", "alice@example.com", "--as-group", "system:masters"},
			{"get", "pods", "-n", "default", "--token", "not-the-token"},
		} {
			out, stderr, code := e.run(t, alice, "", args...)
			if code == 0 {
				t.Errorf("kubectl %v succeeded:\n%s", args, out)
			}
			if !strings.Contains(stderr, "Forbidden") && !strings.Contains(stderr, "must be logged in") {
				t.Errorf("kubectl %v: stderr %s", args, stderr)
			}
		}
	})

	t.Run("bob is refused at the bastion", func(t *testing.T) {
		out, stderr, code := e.run(t, bob, "", "get", "pods", "-n", "team-a")
		if code != 1 || !strings.Contains(stderr, "access to cluster e2e denied: not allowed by your roles") {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
		}
		// kubectl started while kube-exec connected; it is ended before
		// it reports an error of its own.
		if strings.Contains(stderr, "Error from server") || strings.Contains(stderr, "Unable to connect") || out != "" {
			t.Errorf("the command's own output leaked:\nstdout: %s\nstderr: %s", out, stderr)
		}
		waitKubeEvent(t, e.bastionLog, audit.AccessDenied, func(ev audit.Event) bool {
			return ev.Person == "bob@example.com" && ev.Target == "kube/e2e"
		})
	})

	t.Run("the command gets Ctrl-C", func(t *testing.T) {
		// kube-exec ignores SIGINT itself (the terminal sends it to the
		// whole process group), but must not pass the ignoring on.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, e.kubeExecBin, "--cluster", kubeCluster, "--bastion", e.addr, "--known-hosts", e.knownHosts,
			"--", "sh", "-c", "grep '^SigIgn:' /proc/self/status")
		cmd.Env = alice.env()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		var mask uint64
		if _, err := fmt.Sscanf(strings.TrimSpace(string(out)), "SigIgn: %x", &mask); err != nil {
			t.Fatalf("parse %q: %v", out, err)
		}
		if mask&(1<<(syscall.SIGINT-1)) != 0 {
			t.Errorf("the command starts with SIGINT ignored (SigIgn %016x)", mask)
		}
	})

	t.Run("bastion unreachable", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, e.kubeExecBin, "--cluster", kubeCluster, "--bastion", kubeFreeAddr(t), "--known-hosts", e.knownHosts,
			"--", e.kubectl, "get", "pods", "-n", "team-a")
		cmd.Env = alice.env()
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), "connect to the bastion") {
			t.Fatalf("%v\nstdout: %s\nstderr: %s", err, out.String(), stderr.String())
		}
		if strings.Contains(stderr.String(), "Unable to connect") || out.Len() > 0 {
			t.Errorf("the command's own output leaked:\nstdout: %s\nstderr: %s", out.String(), stderr.String())
		}
	})

	t.Run("kube-exec --persist starts a proxy in the background", func(t *testing.T) {
		dave := e.user(t, "dave@example.com", "kube-dev")
		noHosts := filepath.Join(t.TempDir(), "known_hosts")
		kubeWrite(t, noHosts, nil, 0o644)
		run := func(knownHosts string, flags ...string) (string, int) {
			return e.listConfigmaps(t, dave.env(), e.bastionAddr, knownHosts, flags...)
		}
		state := filepath.Join(dave.home, ".postern", "kube-proxy-"+kubeCluster+".json")
		if out, code := run(e.knownHosts, "--persist", "3s", "-v"); code != 0 || !strings.Contains(out, "started a kube-exec proxy") {
			t.Fatalf("first run: exit %d: %s", code, out)
		}
		var st struct{ PID int }
		if err := json.Unmarshal(kubeRead(t, state), &st); err != nil || st.PID == 0 {
			t.Fatalf("state: %v %+v", err, st)
		}
		t.Cleanup(func() { _ = syscall.Kill(st.PID, syscall.SIGKILL) })
		// The second run goes through it: its own connection would be
		// refused by a known_hosts file that certifies nothing.
		if out, code := run(noHosts, "--persist", "3s"); code != 0 {
			t.Fatalf("second run, through the background proxy: exit %d: %s", code, out)
		}
		// Idle for 3 s: the proxy exits and unpublishes itself.
		waitFor(t, func() bool {
			_, err := os.Stat(state)
			return os.IsNotExist(err) && syscall.Kill(st.PID, 0) != nil
		})
		if out, code := run(noHosts); code == 0 || !strings.Contains(out, "unknown bastion host key") {
			t.Errorf("after the proxy exited: exit %d: %s", code, out)
		}
		if log := string(kubeRead(t, filepath.Join(dave.home, ".postern", "kube-proxy-"+kubeCluster+".log"))); !strings.Contains(log, "no request for 3s: exiting") {
			t.Errorf("proxy log:\n%s", log)
		}
	})

	t.Run("the proxy's connection ends with its certificate", func(t *testing.T) {
		carol := e.user(t, "carol@example.com", "kube-dev")
		// Only a certificate that expires in a few seconds.
		if err := carol.agent.Client(t).RemoveAll(); err != nil {
			t.Fatal(err)
		}
		e.login(t, carol, "kube-dev", 5*time.Second)
		p := e.startProxy(t, carol.home, carol.agent.Socket)
		if code, body := p.get(t, "/api/v1/namespaces/team-a/pods", nil); code != 200 {
			t.Fatalf("before expiry: %d %s", code, body)
		}
		// Expired (and dropped by the agent): the proxy's connection ended
		// with it, and requests get a clear refusal.
		time.Sleep(6 * time.Second)
		code, body := p.get(t, "/api/v1/namespaces/team-a/pods", nil)
		if code != http.StatusBadGateway || !strings.Contains(body, "run postern login") {
			t.Errorf("after the certificate expired: %d %s", code, body)
		}
		// A new login brings the proxy back without a restart.
		e.login(t, carol, "kube-dev", time.Hour)
		if code, body := p.get(t, "/api/v1/namespaces/team-a/pods", nil); code != 200 {
			t.Errorf("after logging in again: %d %s", code, body)
		}
		waitKubeEvent(t, e.fwdLog, audit.KubeRequest, func(ev audit.Event) bool {
			return ev.Person == "carol@example.com" && ev.Resource == "pods" && ev.Status == 200
		})
	})

	t.Run("proxy: impersonation headers and foreign tokens are dropped", func(t *testing.T) {
		p := e.startProxy(t, alice.home, alice.agent.Socket)
		// Impersonate-Group: system:masters would make alice an admin.
		code, body := p.get(t, "/api/v1/namespaces/default/pods", map[string]string{"Impersonate-Group": "system:masters"})
		if code != 403 || !strings.Contains(body, `alice@example.com`) {
			t.Errorf("impersonate-group: %d %s", code, body)
		}
		code, body = p.get(t, "/api/v1/namespaces/default/pods", map[string]string{"Impersonate-User": "system:admin"})
		if code != 403 || !strings.Contains(body, "may not act as") {
			t.Errorf("impersonate-user: %d %s", code, body)
		}
		code, _ = p.get(t, "/api/v1/namespaces/team-a/pods", nil)
		if code != 200 {
			t.Errorf("team-a pods: %d", code)
		}
		// Without the proxy's token: refused locally.
		req, _ := http.NewRequest("GET", p.url+"/api/v1/namespaces/team-a/pods", nil)
		resp, err := p.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("no token: %d", resp.StatusCode)
		}

		// The forwarder drops a client's own Authorization too (a raw
		// subsystem channel, past kube-exec).
		code, body = e.rawRequest(t, alice, "/api/v1/namespaces/team-a/pods", map[string]string{"Authorization": "Bearer forged", "Impersonate-Group": "system:masters"})
		if code != 200 {
			t.Errorf("raw request with a forged bearer token: %d %s", code, body)
		}

		t.Run("kube-exec uses the running proxy", func(t *testing.T) {
			// A known_hosts file that certifies no bastion: kube-exec's
			// own connection would fail, the proxy's is already up.
			noHosts := filepath.Join(t.TempDir(), "known_hosts")
			kubeWrite(t, noHosts, nil, 0o644)
			reuse := func(env []string, reuse bool) (string, int) {
				return e.listConfigmaps(t, env, e.bastionAddr, noHosts, fmt.Sprintf("--reuse=%v", reuse))
			}
			if out, code := reuse(alice.env(), true); code != 0 {
				t.Fatalf("through the proxy: exit %d: %s", code, out)
			}
			waitKubeEvent(t, e.fwdLog, audit.KubeRequest, func(ev audit.Event) bool {
				return ev.Verb == "list" && ev.Resource == "configmaps" && ev.KubeNamespace == "team-a" && ev.Person == "alice@example.com"
			})
			// Told not to: its own connection, refused by known_hosts.
			if out, code := reuse(alice.env(), false); code == 0 || !strings.Contains(out, "known_hosts") {
				t.Errorf("--reuse=false: exit %d: %s", code, out)
			}
			// Not logged in (an empty agent): the proxy is not used.
			empty := testenv.StartAgent(t)
			if out, code := reuse(personEnv(alice.home, empty.Socket), true); code == 0 || !strings.Contains(out, "not logged in") {
				t.Errorf("not logged in: exit %d: %s", code, out)
			}
			// Someone else logged in: the proxy runs as alice.
			if out, code := reuse(personEnv(alice.home, bob.agent.Socket), true); code == 0 || !strings.Contains(out, "runs as alice@example.com, not as bob@example.com") {
				t.Errorf("bob's agent with alice's proxy: exit %d: %s", code, out)
			}
			// A proxy for another bastion is not used.
			if out, code := e.listConfigmaps(t, alice.env(), kubeFreeAddr(t), e.knownHosts); code == 0 || !strings.Contains(out, "connect to the bastion") {
				t.Errorf("another bastion: exit %d: %s", code, out)
			}
		})

		t.Run("forwarder restart while idle", func(t *testing.T) {
			e.fwd.stop(t)
			e.startForwarder(t)
			if code, body := p.get(t, "/api/v1/namespaces/team-a/configmaps", nil); code != 200 {
				t.Fatalf("after forwarder restart: %d %s", code, body)
			}
			if _, stderr, code := e.run(t, alice, "", "get", "pods", "-n", "team-a"); code != 0 {
				t.Fatalf("kube-exec after forwarder restart: %d %s", code, stderr)
			}
		})

		t.Run("bastion restart: the forwarder reconnects", func(t *testing.T) {
			e.bastion.stop(t)
			e.startBastion(t)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("forwarder output:\n%s", e.fwd.logs)
				}
			})
			waitFor(t, func() bool { return strings.Count(e.fwd.logs.String(), "tunnel up: registered") >= 2 })
			if _, stderr, code := e.run(t, alice, "", "get", "pods", "-n", "team-a"); code != 0 {
				t.Fatalf("kube-exec after bastion restart: %d %s", code, stderr)
			}
			if code, body := p.get(t, "/api/v1/namespaces/team-a/configmaps", nil); code != 200 {
				t.Fatalf("proxy after bastion restart: %d %s", code, body)
			}
		})

		t.Run("a proxy that stopped or died is not used", func(t *testing.T) {
			noHosts := filepath.Join(t.TempDir(), "known_hosts")
			kubeWrite(t, noHosts, nil, 0o644)
			// With a known_hosts that certifies no bastion, only a proxy
			// could carry the command.
			viaProxyOnly := func() (string, int) {
				return e.listConfigmaps(t, alice.env(), e.bastionAddr, noHosts)
			}
			state := filepath.Join(alice.home, ".postern", "kube-proxy-"+kubeCluster+".json")
			if _, err := os.Stat(state); err != nil {
				t.Fatalf("the running proxy published no state: %v", err)
			}
			if out, code := viaProxyOnly(); code != 0 {
				t.Fatalf("with the proxy running: exit %d: %s", code, out)
			}
			p.proc.stop(t)
			if _, err := os.Stat(state); !os.IsNotExist(err) {
				t.Errorf("a stopped proxy left its state file: %v", err)
			}
			if out, code := viaProxyOnly(); code == 0 || !strings.Contains(out, "known_hosts") {
				t.Errorf("after the proxy stopped: exit %d: %s", code, out)
			}
			// Killed: the state file stays behind and must be ignored.
			p2 := e.startProxy(t, alice.home, alice.agent.Socket)
			_ = syscall.Kill(-p2.proc.cmd.Process.Pid, syscall.SIGKILL)
			<-p2.proc.done
			if _, err := os.Stat(state); err != nil {
				t.Fatalf("the killed proxy's state file is gone (%v): nothing tested", err)
			}
			if out, code := viaProxyOnly(); code == 0 || !strings.Contains(out, "known_hosts") {
				t.Errorf("after the proxy was killed: exit %d: %s", code, out)
			}
			if _, stderr, code := e.runReuse(t, alice.env(), true, "", "get", "configmaps", "-n", "team-a"); code != 0 {
				t.Errorf("after the proxy was killed, its own connection: exit %d, stderr: %s", code, stderr)
			}
		})
	})
}

// kubeProxy is a running kube-exec proxy.
type kubeProxy struct {
	url, token string
	hc         *http.Client
	proc       *kproc
}

// startProxy runs kube-exec proxy for the person whose home and ssh-agent
// these are (see personEnv) until the test ends.
func (k *kubeSide) startProxy(t testing.TB, home, agentSock string) *kubeProxy {
	t.Helper()
	addr := kubeFreeAddr(t)
	p := startKProcEnv(t, t, "kube-exec proxy", personEnv(home, agentSock), "serving cluster", k.kubeExecBin, "proxy", "--cluster", kubeCluster,
		"--bastion", k.bastionAddr, "--known-hosts", k.knownHosts, "--listen", addr, "-v")
	tok := strings.TrimSpace(string(kubeRead(t, filepath.Join(home, ".postern", "kube-proxy.token"))))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(kubeRead(t, filepath.Join(home, ".postern", "kube-proxy.crt")))
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	return &kubeProxy{url: "https://" + addr, token: tok, hc: hc, proc: p}
}

func (p *kubeProxy) get(t testing.TB, path string, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", p.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+p.token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// rawRequest sends one HTTP request on a kube subsystem channel opened
// directly, with whatever headers the test wants the forwarder to see.
func (e *kubeEnv) rawRequest(t testing.TB, u *kubeUser, path string, hdr map[string]string) (int, string) {
	t.Helper()
	signers, err := u.agent.Client(t).Signers()
	if err != nil {
		t.Fatal(err)
	}
	checker := &ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool {
		return bytes.Equal(k.Marshal(), e.hostCA.PublicKey().Marshal())
	}}
	c, err := ssh.Dial("tcp", e.addr, &ssh.ClientConfig{User: "kube", Auth: []ssh.AuthMethod{ssh.PublicKeys(signers...)}, HostKeyCallback: checker.CheckHostKey})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(reqs)
	ok, err := ch.SendRequest("subsystem", true, ssh.Marshal(struct{ Name string }{kubeproto.Subsystem(kubeCluster)}))
	if err != nil || !ok {
		t.Fatalf("subsystem: %v %v", ok, err)
	}
	req, _ := http.NewRequest("GET", "http://kube"+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	req.Close = true
	if err := req.Write(ch); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(ch), req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// kproc is a started binary whose output goes to its logs.
type kproc struct {
	cmd  *exec.Cmd
	done chan struct{}
	logs *testenv.Logs
}

// startKProcEnv starts bin with env and waits for a line containing
// ready; it is stopped with SIGTERM when owner ends unless stopped before.
func startKProcEnv(t, owner testing.TB, name string, env []string, ready, bin string, args ...string) *kproc {
	t.Helper()
	p := &kproc{logs: testenv.NewLogs(owner, name), done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); pw.Close(); close(p.done) }()
	readyc := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := false
		for sc.Scan() {
			line := sc.Text()
			_, _ = p.logs.Write([]byte(line + "\n"))
			if !once && strings.Contains(line, ready) {
				once = true
				close(readyc)
			}
		}
	}()
	owner.Cleanup(func() { p.stop(owner) })
	select {
	case <-readyc:
	case <-p.done:
		t.Fatalf("%s exited early:\n%s", name, p.logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s not ready:\n%s", name, p.logs)
	}
	return p
}

func (p *kproc) stop(t testing.TB) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		t.Errorf("process did not stop within 20s of SIGTERM")
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}

// BenchmarkKubeGet compares `kubectl get pods` through kube-exec (bastion
// and forwarder on loopback) with kubectl talking to the API server
// directly with the same impersonation, side by side.
func BenchmarkKubeGet(b *testing.B) {
	e := startKubeEnv(b)
	alice := e.user(b, "alice@example.com", "kube-dev")
	direct := e.kube.UserKubeconfig(b, "postern-forwarder", nil)
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			cmd := exec.Command(e.kubectl, "--kubeconfig", direct, "--as", "alice@example.com", "--as-group", "team-a-devs", "get", "pods", "-n", "team-a")
			cmd.Env = alice.env()
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
		}
	})
	b.Run("kube-exec-true", func(b *testing.B) {
		// the fixed cost: kube-exec, SSH to the bastion, the first channel
		for b.Loop() {
			cmd := exec.Command(e.kubeExecBin, "--cluster", kubeCluster, "--bastion", e.addr, "--known-hosts", e.knownHosts, "--", "true")
			cmd.Env = alice.env()
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
		}
	})
	b.Run("kube-exec", func(b *testing.B) {
		for b.Loop() {
			if _, stderr, code := e.run(b, alice, "", "get", "pods", "-n", "team-a"); code != 0 {
				b.Fatal(stderr)
			}
		}
	})
}

func kubeWrite(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func kubeRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func kubeFreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
