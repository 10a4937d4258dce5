package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/postern-dev/postern/internal/kubeproto"
	"github.com/postern-dev/postern/internal/kubetest"
)

// The Kubernetes phase's cluster, namespace and the group the bench
// person's role maps to (kubetest.TeamRBAC lets it work with pods there).
const (
	KubeCluster   = "bench"
	kubeNamespace = "team-a"
	kubeGroup     = "team-a-devs"
	// kubeAPIPath is the request `kubectl get pods -n team-a` makes.
	kubeAPIPath = "/api/v1/namespaces/" + kubeNamespace + "/pods?limit=500"
)

// Paths of the Kubernetes phase.
const (
	KubeDirect   = "direct"           // kubectl with the person's own client certificate
	KubeExec     = "kube-exec"        // kube-exec -- kubectl
	KubeProxy    = "kube-exec proxy"  // kubectl against a running kube-exec proxy
	KubeExecTrue = "kube-exec (true)" // kube-exec -- true: kube-exec's own cost
	// KubeExecReuse is kube-exec -- kubectl while a kube-exec proxy for
	// the cluster runs: kube-exec sends the requests through it.
	KubeExecReuse = "kube-exec, proxy running"
	// KubeExecB is kube-exec -- kubectl with another kube-exec build
	// (-kube-exec-b), for A/B comparisons of kube-exec changes.
	KubeExecB = "kube-exec (B)"
	// KubeChannel is a Go client's HTTP/1.1 requests on one kube channel
	// opened on the bastion: the bastion and the forwarder without
	// kube-exec.
	KubeChannel = "bastion+forwarder"
)

// KubeResult is what the Kubernetes phase measured.
type KubeResult struct {
	// Skipped says why the phase did not run (no Kubernetes binaries).
	Skipped string `json:",omitempty"`
	Kubectl string // kubectl's version
	Pods    int    // pods in the namespace listed
	Runs    int    // command runs per path
	// Commands are wall times of whole commands, ms.
	Commands []KubeSample
	// Requests are per-request latencies on one kept-alive connection, ms.
	Requests  []KubeSample
	ReqN      int
	RespBytes int
}

// KubeSample is one path's figures.
type KubeSample struct {
	Path    string
	Command string `json:",omitempty"`
	Ms      Sample
}

func (k *KubeResult) command(path string) *KubeSample { return findKube(k.Commands, path) }
func (k *KubeResult) request(path string) *KubeSample { return findKube(k.Requests, path) }

func findKube(xs []KubeSample, path string) *KubeSample {
	for i := range xs {
		if xs[i].Path == path {
			return &xs[i]
		}
	}
	return nil
}

// kubeStack is the Kubernetes side of the stack, for one phase.
type kubeStack struct {
	s       *Stack
	dir     string
	bins    kubetest.Binaries
	cluster *kubetest.Cluster
	kubeExe string // kube-exec
	fwdExe  string // postern-kube-forwarder
	home    string // HOME of every command (kubectl's discovery cache)
	env     []string
	direct  string // kubeconfigs
	proxyKC string
	procs   []*Proc
}

// runKube measures kubectl through kube-exec against kubectl talking to
// the API server directly.
func (s *Stack) runKube(ctx context.Context, cfg Config) (*KubeResult, error) {
	bins, err := kubetest.CachedBinaries()
	if cfg.KubeBin != "" {
		bins, err = kubetest.BinariesIn(cfg.KubeBin)
	}
	if err != nil {
		s.log("kube: no Kubernetes binaries (%v): skipped; make kube-bins builds them", err)
		return &KubeResult{Skipped: fmt.Sprintf("no Kubernetes binaries (%v); `make kube-bins` builds them (10–15 minutes the first time)", err)}, nil
	}
	k := &kubeStack{s: s, dir: filepath.Join(s.Dir, "kube"), bins: bins, kubeExe: filepath.Join(s.Bin, "kube-exec"),
		fwdExe: filepath.Join(s.Bin, "postern-kube-forwarder")}
	s.kubeExecB = cfg.KubeExecB
	for _, b := range []string{k.kubeExe, k.fwdExe} {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("find %s: %w (run make build)", filepath.Base(b), err)
		}
	}
	defer k.close()
	if err := k.start(ctx, cfg); err != nil {
		return nil, err
	}
	r := &KubeResult{Pods: cfg.KubePods, Runs: cfg.KubeRuns, ReqN: cfg.KubeRequests}
	if out, err := exec.Command(bins.Kubectl, "version", "--client").Output(); err == nil {
		r.Kubectl = strings.TrimPrefix(strings.TrimSpace(strings.Split(string(out), "\n")[0]), "Client Version: ")
	}
	if r.Commands, err = k.commands(ctx, cfg.KubeRuns); err != nil {
		return r, err
	}
	r.Requests, r.RespBytes, err = k.requests(ctx, cfg.KubeRequests)
	return r, err
}

// start brings up etcd and kube-apiserver, the forwarder, an ssh-agent
// holding the person's certificate and a kube-exec proxy.
func (k *kubeStack) start(ctx context.Context, cfg Config) error {
	s := k.s
	var err error
	s.log("kube: starting etcd and kube-apiserver")
	if k.cluster, err = kubetest.Run(filepath.Join(k.dir, "cluster"), k.bins); err != nil {
		return err
	}
	if err := k.cluster.ApplyManifests(kubetest.TeamRBAC + benchPods(cfg.KubePods)); err != nil {
		return err
	}
	person := s.UserCert.KeyId // no kube_users: the person acts as the key id
	if k.direct, err = k.cluster.WriteUserKubeconfig(person, []string{kubeGroup}); err != nil {
		return err
	}
	fwdKC, err := k.cluster.WriteUserKubeconfig("postern-forwarder", nil)
	if err != nil {
		return err
	}

	// The forwarder, certified by the host CA for the cluster.
	fdir := filepath.Join(k.dir, "forwarder")
	if err := os.MkdirAll(fdir, 0o700); err != nil {
		return err
	}
	_, pub, err := writeKey(filepath.Join(fdir, "host_key"))
	if err != nil {
		return err
	}
	cert, err := signCert(s.hostCASigner, pub, ssh.HostCert, "kube-forwarder", []string{kubeproto.ForwarderPrincipal(KubeCluster)}, nil)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(fdir, "host_key-cert.pub"), ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(fdir, "host_ca.pub"), ssh.MarshalAuthorizedKey(s.HostCA), 0o644); err != nil {
		return err
	}
	fcfg := filepath.Join(fdir, "forwarder.toml")
	if err := os.WriteFile(fcfg, []byte(fmt.Sprintf(`# Written by postern-bench (internal/bench).
[kube.forwarder]
cluster = %q
id = "bench-forwarder"
kubeconfig = %q
bastions = [%q]
data_dir = %q
`, KubeCluster, fwdKC, s.BastionAddr, fdir)), 0o600); err != nil {
		return err
	}
	fwd, err := k.startProc("kube-forwarder", nil, k.fwdExe, "--config", fcfg)
	if err != nil {
		return err
	}
	if err := waitLog(ctx, fwd, "tunnel up: registered"); err != nil {
		return err
	}

	// The person: an ssh-agent holding the key and its certificate, and a
	// HOME for kubectl's caches and kube-exec's files.
	k.home = filepath.Join(k.dir, "home")
	if err := os.MkdirAll(filepath.Join(k.home, ".postern"), 0o700); err != nil {
		return err
	}
	sock := filepath.Join(k.dir, "agent.sock")
	ag, err := k.startProc("ssh-agent", nil, "ssh-agent", "-D", "-a", sock)
	if err != nil {
		return err
	}
	if err := waitFile(ctx, sock, ag); err != nil {
		return err
	}
	add := exec.CommandContext(ctx, "ssh-add", filepath.Join(s.Dir, "client", "id_ed25519"))
	add.Env = []string{"SSH_AUTH_SOCK=" + sock, "PATH=" + os.Getenv("PATH")}
	if out, err := add.CombinedOutput(); err != nil {
		return fmt.Errorf("ssh-add: %w: %s", err, out)
	}
	k.env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + k.home, "POSTERN_HOME=" + filepath.Join(k.home, ".postern"),
		"SSH_AUTH_SOCK=" + sock, "LANG=C",
		// kube-exec's own connection even though a proxy runs, except on
		// the KubeExecReuse path (--reuse).
		"POSTERN_KUBE_REUSE=no",
	}

	// A long-running kube-exec proxy, and a kubeconfig pointing at it as
	// postern kube config writes it.
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	proxyAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	px, err := k.startProc("kube-exec-proxy", k.env, append([]string{k.kubeExe, "proxy", "--listen", proxyAddr}, k.clientFlags()...)...)
	if err != nil {
		return err
	}
	if err := waitLog(ctx, px, "serving cluster"); err != nil {
		return err
	}
	tok, err := os.ReadFile(filepath.Join(k.home, ".postern", "kube-proxy.token"))
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(filepath.Join(k.home, ".postern", "kube-proxy.crt"))
	if err != nil {
		return err
	}
	k.proxyKC = filepath.Join(k.dir, "proxy.kubeconfig")
	return writeTokenKubeconfig(k.proxyKC, "https://"+proxyAddr, caPEM, strings.TrimSpace(string(tok)))
}

func (k *kubeStack) clientFlags() []string {
	return []string{"--cluster", KubeCluster, "--bastion", k.s.BastionAddr, "--known-hosts", filepath.Join(k.s.Dir, "client", "known_hosts")}
}

// startProc starts a process of the phase (env nil: this process's
// environment); close stops it.
func (k *kubeStack) startProc(name string, env []string, argv ...string) (*Proc, error) {
	p, err := k.s.startEnv(name, env, argv...)
	if err != nil {
		return nil, err
	}
	k.procs = append(k.procs, p)
	return p, nil
}

func (k *kubeStack) close() {
	for i := len(k.procs) - 1; i >= 0; i-- {
		k.procs[i].stop()
	}
	if k.cluster != nil {
		k.cluster.Stop()
	}
}

// benchPods are n pods in the namespace for kubectl to list; without a
// scheduler they stay Pending, which is all a list needs.
func benchPods(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: bench-%d\n  namespace: %s\n  labels: {app: bench}\nspec:\n  containers:\n  - name: main\n    image: bench/pause:1\n", i, kubeNamespace)
	}
	return b.String()
}

// commands runs each path's command n times, interleaved (the order is
// reversed every other round), after two warm-up rounds that fill
// kubectl's discovery cache for each server address.
func (k *kubeStack) commands(ctx context.Context, n int) ([]KubeSample, error) {
	kubectl := k.bins.Kubectl
	get := []string{kubectl, "get", "pods", "-n", kubeNamespace}
	paths := []KubeSample{
		{Path: KubeDirect, Command: "kubectl --kubeconfig DIRECT get pods -n " + kubeNamespace},
		{Path: KubeExec, Command: "kube-exec --cluster " + KubeCluster + " --bastion B --known-hosts K -- kubectl get pods -n " + kubeNamespace},
		{Path: KubeProxy, Command: "kubectl --kubeconfig PROXY get pods -n " + kubeNamespace},
		{Path: KubeExecReuse, Command: "kube-exec --cluster " + KubeCluster + " --bastion B --known-hosts K --reuse -- kubectl get pods -n " + kubeNamespace},
		{Path: KubeExecTrue, Command: "kube-exec --cluster " + KubeCluster + " --bastion B --known-hosts K -- true"},
	}
	argv := map[string][]string{
		KubeDirect:    append([]string{kubectl, "--kubeconfig", k.direct}, get[1:]...),
		KubeExec:      append(append(append([]string{k.kubeExe}, k.clientFlags()...), "--"), get...),
		KubeProxy:     append([]string{kubectl, "--kubeconfig", k.proxyKC}, get[1:]...),
		KubeExecReuse: append(append(append([]string{k.kubeExe}, k.clientFlags()...), "--reuse", "--"), get...),
		KubeExecTrue:  append(append(append([]string{k.kubeExe}, k.clientFlags()...), "--"), "true"),
	}
	if b := k.s.kubeExecB; b != "" {
		paths = append(paths, KubeSample{Path: KubeExecB, Command: b + " --cluster " + KubeCluster + " --bastion B --known-hosts K -- kubectl get pods -n " + kubeNamespace})
		argv[KubeExecB] = append(append(append([]string{b}, k.clientFlags()...), "--"), get...)
	}
	vals := make([][]float64, len(paths))
	errs := failures[int]{}
	k.s.log("kube: %d runs of %d commands", n, len(paths))
	for round := -2; round < n; round++ {
		for j := range paths {
			if round%2 != 0 {
				j = len(paths) - 1 - j
			}
			d, err := k.run(ctx, argv[paths[j].Path], paths[j].Path != KubeExecTrue)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if round < 0 {
				if err != nil {
					return nil, fmt.Errorf("kube warm-up, %s: %w", paths[j].Path, err)
				}
				continue
			}
			if err != nil {
				errs.add(j, err)
				continue
			}
			vals[j] = append(vals[j], ms(d))
		}
	}
	for j := range paths {
		paths[j].Ms = Summarise(vals[j])
		errs.into(j, &paths[j].Ms)
	}
	return paths, nil
}

// run runs one command and returns its wall time; a listing must name
// the first pod.
func (k *kubeStack) run(ctx context.Context, argv []string, lists bool) (time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := command(cctx, argv[0], argv[1:]...)
	cmd.Env = k.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("%v: %s", err, strings.TrimSpace(errb.String()))
	}
	if lists && !strings.Contains(out.String(), "bench-0 ") {
		return d, fmt.Errorf("unexpected output: %q %q", out.String(), errb.String())
	}
	return d, nil
}

// requests measures one API request at a time on a kept-alive
// connection: directly (client-go's transport with the person's client
// certificate, HTTP/2), through kube-exec proxy (the same transport with
// the proxy's token), and on one kube channel opened on the bastion by a
// Go SSH client (HTTP/1.1; the bastion's relay and the forwarder, without
// kube-exec). Requests are interleaved one by one.
func (k *kubeStack) requests(ctx context.Context, n int) ([]KubeSample, int, error) {
	direct, err := restClient(k.direct)
	if err != nil {
		return nil, 0, err
	}
	proxy, err := restClient(k.proxyKC)
	if err != nil {
		return nil, 0, err
	}
	ch, err := k.channelClient(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer ch.close()
	clients := []struct {
		path string
		do   func() (int, error)
	}{
		{KubeDirect, direct},
		{KubeChannel, ch.get},
		{KubeProxy, proxy},
	}
	vals := make([][]float64, len(clients))
	errs := failures[int]{}
	size := 0
	k.s.log("kube: %d requests per path", n)
	for i := -20; i < n; i++ {
		for j := range clients {
			if i%2 != 0 {
				j = len(clients) - 1 - j
			}
			if ctx.Err() != nil {
				return nil, 0, ctx.Err()
			}
			start := time.Now()
			sz, err := clients[j].do()
			d := time.Since(start)
			if i < 0 {
				if err != nil {
					return nil, 0, fmt.Errorf("kube request warm-up, %s: %w", clients[j].path, err)
				}
				continue
			}
			if err != nil {
				errs.add(j, err)
				continue
			}
			size = sz
			vals[j] = append(vals[j], ms(d))
		}
	}
	var out []KubeSample
	for j, c := range clients {
		s := Summarise(vals[j])
		errs.into(j, &s)
		out = append(out, KubeSample{Path: c.path, Ms: s})
	}
	return out, size, nil
}

// restClient returns a GET of kubeAPIPath with client-go's transport for
// a kubeconfig, as kubectl makes it.
func restClient(kubeconfig string) (func() (int, error), error) {
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", kubeconfig, err)
	}
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, err
	}
	hc.Timeout = 30 * time.Second
	url := strings.TrimRight(rc.Host, "/") + kubeAPIPath
	return func() (int, error) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Accept", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		return readOK(resp)
	}, nil
}

func readOK(resp *http.Response) (int, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %.200s", resp.Status, b)
	}
	return len(b), nil
}

// chanClient sends HTTP/1.1 requests on one kube channel.
type chanClient struct {
	c  *ssh.Client
	ch ssh.Channel
	br *bufio.Reader
	mu sync.Mutex
}

func (k *kubeStack) channelClient(ctx context.Context) (*chanClient, error) {
	c, err := k.s.dialJump(ctx, JumpBastion, "")
	if err != nil {
		return nil, fmt.Errorf("kube channel: %w", err)
	}
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("kube channel: %w", err)
	}
	go ssh.DiscardRequests(reqs)
	ok, err := ch.SendRequest("subsystem", true, ssh.Marshal(struct{ Name string }{kubeproto.Subsystem(KubeCluster)}))
	if err != nil || !ok {
		c.Close()
		return nil, fmt.Errorf("kube channel: subsystem refused (%v)", err)
	}
	return &chanClient{c: c, ch: ch, br: bufio.NewReaderSize(ch, 64<<10)}, nil
}

func (x *chanClient) get() (int, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	req, _ := http.NewRequest(http.MethodGet, "http://"+KubeCluster+kubeAPIPath, nil)
	req.Header.Set("Accept", "application/json")
	if err := req.Write(x.ch); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(x.br, req)
	if err != nil {
		return 0, err
	}
	return readOK(resp)
}

func (x *chanClient) close() { x.c.Close() }

// writeTokenKubeconfig writes a kubeconfig for server with a bearer token,
// as postern kube config does.
func writeTokenKubeconfig(path, server string, caPEM []byte, token string) error {
	type named struct {
		Name    string `json:"name"`
		Cluster any    `json:"cluster,omitempty"`
		User    any    `json:"user,omitempty"`
		Context any    `json:"context,omitempty"`
	}
	kc := map[string]any{
		"apiVersion": "v1", "kind": "Config", "current-context": "bench",
		"clusters": []named{{Name: "bench", Cluster: map[string]any{"server": server, "certificate-authority-data": caPEM}}},
		"users":    []named{{Name: "bench", User: map[string]string{"token": token}}},
		"contexts": []named{{Name: "bench", Context: map[string]string{"cluster": "bench", "user": "bench"}}},
	}
	b, err := json.Marshal(kc)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// waitLog waits until p's log holds line.
func waitLog(ctx context.Context, p *Proc, line string) error {
	return waitProc(ctx, p, 30*time.Second, 50*time.Millisecond, func() bool {
		b, _ := os.ReadFile(p.Log)
		return bytes.Contains(b, []byte(line))
	}, fmt.Sprintf("%s: no %q in %s after 30s", p.Name, line, p.Log))
}

// waitFile waits until path exists (a socket p creates).
func waitFile(ctx context.Context, path string, p *Proc) error {
	return waitProc(ctx, p, 10*time.Second, 20*time.Millisecond, func() bool {
		_, err := os.Stat(path)
		return err == nil
	}, p.Name+": "+path+" did not appear")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// kubeTargets evaluates issue 5's performance targets.
func (r *Report) kubeTargets() []Target {
	k := r.Kube
	if k == nil || k.Skipped != "" {
		return nil
	}
	var ts []Target
	d := k.command(KubeDirect)
	for _, path := range []string{KubeExec, KubeProxy, KubeExecReuse} {
		x := k.command(path)
		if d == nil || x == nil || d.Ms.N == 0 || x.Ms.N == 0 {
			continue
		}
		q := ratio(x.Ms.Median, d.Ms.Median)
		ts = append(ts, Target{
			What: fmt.Sprintf("`kubectl get pods` through %s (issue 5)", strings.ReplaceAll(path, "kube-exec", "`kube-exec`")), Want: "≤ 1.2× direct kubectl (median)",
			Measured: fmt.Sprintf("%.2f× (%s vs %s ms; p90 %s vs %s ms)", q, f1(x.Ms.Median), f1(d.Ms.Median), f1(x.Ms.P90), f1(d.Ms.P90)),
			Verdict:  verdict(q <= 1.2),
		})
	}
	dr, ch, px := k.request(KubeDirect), k.request(KubeChannel), k.request(KubeProxy)
	if dr != nil && ch != nil && dr.Ms.N > 0 && ch.Ms.N > 0 {
		added := ch.Ms.Median - dr.Ms.Median
		m := fmt.Sprintf("%s ms added by the bastion and the forwarder together (%s vs %s ms per request, medians)", f2(added), f2(ch.Ms.Median), f2(dr.Ms.Median))
		if px != nil && px.Ms.N > 0 {
			m += fmt.Sprintf("; %s ms through kube-exec proxy as well", f2(px.Ms.Median-dr.Ms.Median))
		}
		ts = append(ts, Target{What: "latency added per API request at the forwarder (issue 5)", Want: "≤ 2 ms", Measured: m, Verdict: verdict(added <= 2)})
	}
	return ts
}

// kubeMarkdown renders the Kubernetes section.
func (r *Report) kubeMarkdown(p func(string, ...any)) {
	k := r.Kube
	if k == nil {
		return
	}
	p("## 5. Kubernetes: kubectl through kube-exec\n\n")
	if k.Skipped != "" {
		p("Not measured: %s.\n\n", k.Skipped)
		return
	}
	p("A real etcd and kube-apiserver (internal/kubetest, Kubernetes %s) with RBAC: %d pods in namespace `%s`, where the person's group `%s` may list them; the forwarder (`postern-kube-forwarder`, a credential that may only impersonate) dialled out to the bastion of the stack above; the person's key and certificate in an OpenSSH `ssh-agent`. **direct** is kubectl with the person's own client certificate (same user and groups, straight to the API server); **kube-exec** is `kube-exec -- kubectl` (SSH to the bastion with the agent, a loopback endpoint, the bastion, the forwarder, impersonation); **kube-exec proxy** is kubectl against a running `kube-exec proxy` (its SSH connection already up); **kube-exec, proxy running** is `kube-exec --reuse -- kubectl` while that proxy runs: kube-exec sends the requests through it instead of connecting (the other kube-exec paths run with `POSTERN_KUBE_REUSE=no`); **kube-exec (true)** is `kube-exec -- true`, kube-exec's own start and exit with a command that makes no request. Every path has a warm kubectl discovery cache (two warm-up rounds).", k.Kubectl, k.Pods, kubeNamespace, kubeGroup)
	if k.command(KubeExecB) != nil {
		p(" **kube-exec (B)** is `kube-exec -- kubectl` with another kube-exec build (`-kube-exec-b`, see the command above), for a before/after comparison in one run.")
	}
	p("\n\n")
	p("Reproduce: `make kube-bins` once, then `make bench BENCH_FLAGS=\"-phases kube -out /tmp/kube-bench.md\"` (about a minute).\n\n")
	p("### Whole commands\n\n`kubectl get pods -n %s`, %d runs per path, interleaved (the order reversed every other round). Wall time in milliseconds.\n\n", kubeNamespace, k.Runs)
	p("| path | median | p10 | p90 | min | max | × direct | errors |\n|---|---|---|---|---|---|---|---|\n")
	d := k.command(KubeDirect)
	for _, c := range k.Commands {
		q := "—"
		if d != nil && d.Ms.Median > 0 {
			q = f2(ratio(c.Ms.Median, d.Ms.Median))
		}
		p("| %s | %s | %s | %s | %s | %s | %s | %d |\n", c.Path, f1(c.Ms.Median), f1(c.Ms.P10), f1(c.Ms.P90), f1(c.Ms.Min), f1(c.Ms.Max), q, c.Ms.Errors)
	}
	for _, c := range k.Commands {
		if c.Ms.FirstError != "" {
			p("\nFirst error (%s): `%.300s`\n", c.Path, c.Ms.FirstError)
		}
	}
	p("\n### Per API request\n\nOne `GET %s` (%d bytes of JSON) at a time on one kept-alive connection, %d per path after 20 warm-up requests, interleaved request by request: **direct** with client-go's transport (HTTP/2, the person's client certificate), **kube-exec proxy** with the same transport and the proxy's token, and **bastion+forwarder**: a Go SSH client in this process with one `kube/%s` channel open on the bastion, sending HTTP/1.1 on it — the bastion's relay, both SSH hops and the forwarder (which adds impersonation headers, writes an audit event and proxies over its own kept-alive HTTP/2 connection), without kube-exec. Its difference to direct is an upper bound of what the forwarder adds. Milliseconds.\n\n", kubeAPIPath, k.RespBytes, k.ReqN, KubeCluster)
	p("| path | median | p10 | p90 | p99 | max | added to direct (median) | errors |\n|---|---|---|---|---|---|---|---|\n")
	dr := k.request(KubeDirect)
	for _, c := range k.Requests {
		added := "—"
		if dr != nil && c.Path != KubeDirect {
			added = f2(c.Ms.Median - dr.Ms.Median)
		}
		p("| %s | %s | %s | %s | %s | %s | %s | %d |\n", c.Path, f2(c.Ms.Median), f2(c.Ms.P10), f2(c.Ms.P90), f2(c.Ms.P99), f2(c.Ms.Max), added, c.Ms.Errors)
	}
	for _, c := range k.Requests {
		if c.Ms.FirstError != "" {
			p("\nFirst error (%s): `%.300s`\n", c.Path, c.Ms.FirstError)
		}
	}
	p("\n")
}
