package kubetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postern-dev/postern/internal/testenv"
)

// Timeouts. etcd is up in about a second and the API server is ready in
// 5–15 s (it installs the bootstrap RBAC roles before /readyz passes).
const (
	readyTimeout   = 90 * time.Second
	kubectlTimeout = 60 * time.Second
	stopTimeout    = 10 * time.Second
)

// AdminUser is the admin kubeconfig's user; it is in the group
// system:masters, which RBAC lets do anything.
const AdminUser = "kubetest-admin"

// Cluster is a running etcd and kube-apiserver. Its fields are read-only.
type Cluster struct {
	// URL is the API server's address, "https://127.0.0.1:PORT".
	URL string
	// CAFile is the PEM file of the CA that signed the API server's
	// certificate and the client certificates it accepts.
	CAFile string
	// AdminKubeconfig is a kubeconfig for [AdminUser] (system:masters).
	AdminKubeconfig string
	// Dir holds the cluster's files (certificates, kubeconfigs, etcd data);
	// it is removed at the end of the test.
	Dir string
	// EtcdURL is etcd's client address, "http://127.0.0.1:PORT".
	EtcdURL string

	bins Binaries
	ca   *authority
	// adminTLS authenticates readiness probes as the admin.
	adminTLS            *tls.Config
	adminCert, adminKey []byte // PEM
	// The API server's kubelet client certificate (PEM).
	kubeletClientCert, kubeletClientKey []byte

	mu        sync.Mutex
	users     int        // kubeconfigs written, to name their files
	procs     []*process // started, in order
	closeLogs func()
}

// Start starts etcd and kube-apiserver for the test and stops them when it
// ends; see the package documentation. The binaries are built on first use.
func Start(t testing.TB) *Cluster {
	t.Helper()
	c, err := start(t.TempDir(), FindBinaries(t), func(name string) procLog { return testenv.NewLogs(t, name) })
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}

// Run starts etcd and kube-apiserver outside a test (a benchmark, say),
// with their files in dir and their output in dir/etcd.log and
// dir/kube-apiserver.log. The caller must call [Cluster.Stop].
func Run(dir string, bins Binaries) (*Cluster, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	var files []*fileLog
	c, err := start(dir, bins, func(name string) procLog {
		l := newFileLog(filepath.Join(dir, name+".log"))
		files = append(files, l)
		return l
	})
	if err != nil {
		for _, f := range files {
			f.close()
		}
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	c.closeLogs = func() {
		for _, f := range files {
			f.close()
		}
	}
	return c, nil
}

// start starts etcd, then kube-apiserver; on failure it stops what it
// started.
func start(dir string, bins Binaries, logs func(name string) procLog) (*Cluster, error) {
	c := &Cluster{bins: bins, Dir: dir}
	if err := c.writePKI(); err != nil {
		return nil, err
	}
	etcdLogs := logs("etcd")
	if err := retryPorts(func() error { return c.startEtcd(etcdLogs) }); err != nil {
		c.Stop()
		return nil, err
	}
	apiLogs := logs("kube-apiserver")
	if err := retryPorts(func() error { return c.startAPIServer(apiLogs) }); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// Stop stops kube-apiserver, then etcd (SIGTERM, then SIGKILL after 10 s).
// It may be called more than once.
func (c *Cluster) Stop() {
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	closeLogs := c.closeLogs
	c.closeLogs = nil
	c.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop()
	}
	if closeLogs != nil {
		closeLogs()
	}
}

func (c *Cluster) path(name string) string { return filepath.Join(c.Dir, name) }

// writePKI creates the CA, the API server's serving certificate, the
// service account key pair and the admin client certificate.
func (c *Cluster) writePKI() error {
	var err error
	if c.ca, err = newAuthority(); err != nil {
		return err
	}
	serving, servingKey, err := c.ca.issue(pkix.Name{CommonName: "kube-apiserver"}, x509.ExtKeyUsageServerAuth,
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.IPv4(10, 0, 0, 1)})
	if err != nil {
		return err
	}
	saKey, saPub, err := newServiceAccountKey()
	if err != nil {
		return err
	}
	admin, adminKey, err := c.ca.issue(pkix.Name{CommonName: AdminUser, Organization: []string{"system:masters"}}, x509.ExtKeyUsageClientAuth, nil, nil)
	if err != nil {
		return err
	}
	// The API server's credential towards kubelets, and the test kubelets'
	// serving certificate (they listen on 127.0.0.1, the nodes' address).
	kubeletClient, kubeletClientKey, err := c.ca.issue(pkix.Name{CommonName: kubeletClientUser}, x509.ExtKeyUsageClientAuth, nil, nil)
	if err != nil {
		return err
	}
	kubelet, kubeletKey, err := c.ca.issue(pkix.Name{CommonName: "testkubelet"}, x509.ExtKeyUsageServerAuth, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	c.kubeletClientCert, c.kubeletClientKey = kubeletClient, kubeletClientKey
	c.adminCert, c.adminKey = admin, adminKey
	pair, err := tls.X509KeyPair(admin, adminKey)
	if err != nil {
		return fmt.Errorf("load admin certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.ca.cert)
	c.adminTLS = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}
	c.CAFile = c.path("ca.crt")
	for name, data := range map[string][]byte{
		"ca.crt":                       c.ca.certPEM,
		"apiserver.crt":                serving,
		"apiserver.key":                servingKey,
		"sa.key":                       saKey,
		"sa.pub":                       saPub,
		"apiserver-kubelet-client.crt": kubeletClient,
		"apiserver-kubelet-client.key": kubeletClientKey,
		"kubelet.crt":                  kubelet,
		"kubelet.key":                  kubeletKey,
	} {
		if err := os.WriteFile(c.path(name), data, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

func (c *Cluster) startEtcd(logs procLog) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	dataDir := c.path("etcd")
	if err := os.RemoveAll(dataDir); err != nil { // from a failed attempt
		return fmt.Errorf("clear etcd data dir: %w", err)
	}
	p, err := c.startProcess(logs, c.bins.Etcd, []string{
		"--name=kubetest",
		"--data-dir=" + dataDir,
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=kubetest=" + peer,
		"--initial-cluster-state=new",
		"--unsafe-no-fsync", // the data is thrown away; fsync only costs time
		"--log-level=warn",
	}, c.Dir)
	if err != nil {
		return err
	}
	if err := p.waitReady(client+"/health", http.DefaultClient); err != nil {
		return err
	}
	c.EtcdURL = client
	return nil
}

func (c *Cluster) startAPIServer(logs procLog) error {
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	url := "https://127.0.0.1:" + strconv.Itoa(ports[0])
	p, err := c.startProcess(logs, c.bins.APIServer, []string{
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// The reconciler that publishes the "kubernetes" service's endpoints
		// refuses a loopback address; nothing in the cluster needs them.
		"--endpoint-reconciler-type=none",
		"--secure-port=" + strconv.Itoa(ports[0]),
		"--cert-dir=" + c.path("apiserver-certs"),
		"--tls-cert-file=" + c.path("apiserver.crt"),
		"--tls-private-key-file=" + c.path("apiserver.key"),
		"--client-ca-file=" + c.CAFile,
		"--anonymous-auth=false",
		"--authorization-mode=RBAC",
		"--etcd-servers=" + c.EtcdURL,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + c.path("sa.pub"),
		"--service-account-signing-key-file=" + c.path("sa.key"),
		// No controller manager creates the "default" service account, which
		// this plugin would require of every new pod.
		"--disable-admission-plugins=ServiceAccount",
		// exec, attach and port-forward go to the node's kubelet (a
		// testkubelet: see StartNode), verified and authenticated both ways.
		"--kubelet-certificate-authority=" + c.CAFile,
		"--kubelet-client-certificate=" + c.path("apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + c.path("apiserver-kubelet-client.key"),
		"--kubelet-preferred-address-types=InternalIP",
		"--profiling=false",
	}, c.Dir)
	if err != nil {
		return err
	}
	probe := &http.Client{Transport: &http.Transport{TLSClientConfig: c.adminTLS}}
	if err := p.waitReady(url+"/readyz", probe); err != nil {
		return err
	}
	c.URL = url
	c.AdminKubeconfig = c.path("admin.kubeconfig")
	return writeKubeconfig(c.AdminKubeconfig, c.URL, c.ca.certPEM, AdminUser, c.adminCert, c.adminKey)
}

// UserKubeconfig writes a kubeconfig that authenticates to the cluster with
// a new client certificate for user name in groups (Kubernetes reads them
// from the certificate's CN and O), and returns its path. What the user may
// do is up to the RBAC objects the test creates.
func (c *Cluster) UserKubeconfig(t testing.TB, name string, groups []string) string {
	t.Helper()
	path, err := c.WriteUserKubeconfig(name, groups)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return path
}

// WriteUserKubeconfig is [Cluster.UserKubeconfig] outside a test.
func (c *Cluster) WriteUserKubeconfig(name string, groups []string) (string, error) {
	cert, key, err := c.ca.issue(pkix.Name{CommonName: name, Organization: groups}, x509.ExtKeyUsageClientAuth, nil, nil)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	c.users++
	n := c.users
	c.mu.Unlock()
	dir := c.path("users")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create users dir: %w", err)
	}
	path := filepath.Join(dir, fmt.Sprintf("%d-%s.kubeconfig", n, unsafeChars.ReplaceAllString(name, "_")))
	if err := writeKubeconfig(path, c.URL, c.ca.certPEM, name, cert, key); err != nil {
		return "", err
	}
	return path, nil
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Kubectl runs kubectl with args as the admin (KUBECONFIG is the admin
// kubeconfig; a --kubeconfig among args acts as someone else) and returns
// its output. A non-zero exit is err (an *exec.ExitError); it does not fail
// the test, so tests can check refusals.
func (c *Cluster) Kubectl(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return c.kubectl(nil, args...)
}

// Apply runs `kubectl apply -f -` as the admin with manifests (YAML or
// JSON, several documents allowed), failing the test if it fails.
func (c *Cluster) Apply(t testing.TB, manifests string) {
	t.Helper()
	if err := c.ApplyManifests(manifests); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
}

// ApplyManifests is [Cluster.Apply] outside a test.
func (c *Cluster) ApplyManifests(manifests string) error {
	if _, stderr, err := c.kubectl(strings.NewReader(manifests), "apply", "-f", "-"); err != nil {
		return fmt.Errorf("kubectl apply: %w\n%s", err, stderr)
	}
	return nil
}

func (c *Cluster) kubectl(stdin io.Reader, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, c.bins.Kubectl, args...)
	// HOME keeps kubectl's discovery cache and any kuberc of the person
	// running the tests out of it.
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + c.Dir,
		"KUBECONFIG=" + c.AdminKubeconfig,
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("kubectl %s: timed out after %v: %w", strings.Join(args, " "), kubectlTimeout, err)
	}
	return stdout.String(), stderr.String(), err
}

// procLog receives a process's output; String returns what it holds (a
// start-up failure is read from it).
type procLog interface {
	io.Writer
	String() string
}

// process is a started etcd or kube-apiserver.
type process struct {
	name string
	cmd  *exec.Cmd
	logs procLog
	done chan struct{}
}

// startProcess starts bin in its own process group with output to logs;
// [Cluster.Stop] stops it (SIGTERM, then SIGKILL).
func (c *Cluster) startProcess(logs procLog, bin string, args []string, dir string) (*process, error) {
	p := &process{name: filepath.Base(bin), logs: logs, done: make(chan struct{})}
	fmt.Fprintf(logs, "--- start %s %s\n", bin, strings.Join(args, " "))
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	p.cmd.Stdout, p.cmd.Stderr = logs, logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.name, err)
	}
	go func() {
		err := p.cmd.Wait()
		fmt.Fprintf(logs, "--- %s exited: %v\n", p.name, err)
		close(p.done)
	}()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}

// fileLog is a process's output in a file, with its last bytes kept for
// procLog.String.
type fileLog struct {
	mu   sync.Mutex
	f    *os.File // nil when the file could not be created
	tail []byte
}

const fileLogTail = 64 << 10

func newFileLog(path string) *fileLog {
	f, _ := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	return &fileLog{f: f}
}

func (l *fileLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		_, _ = l.f.Write(p)
	}
	l.tail = append(l.tail, p...)
	if len(l.tail) > fileLogTail {
		l.tail = append([]byte(nil), l.tail[len(l.tail)-fileLogTail:]...)
	}
	return len(p), nil
}

func (l *fileLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.tail)
}

func (l *fileLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.done
	}
}

// errPortInUse marks a start that failed because another process took a
// port between freePorts and the bind.
var errPortInUse = errors.New("port in use")

// waitReady polls url until it answers 200. If the process exits first,
// the error wraps errPortInUse when its output says so.
func (p *process) waitReady(url string, client *http.Client) error {
	deadline := time.Now().Add(readyTimeout)
	var last string
	for {
		select {
		case <-p.done:
			if strings.Contains(p.logs.String(), "address already in use") {
				return fmt.Errorf("%s exited during startup: %w", p.name, errPortInUse)
			}
			return fmt.Errorf("%s exited during startup (its output follows the test)", p.name)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				cancel()
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, body)
		} else {
			last = err.Error()
		}
		cancel()
		if time.Now().After(deadline) {
			p.stop()
			return fmt.Errorf("%s not ready at %s after %v: %s", p.name, url, readyTimeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// retryPorts runs start up to three times while it fails for a port taken
// by someone else.
func retryPorts(start func() error) error {
	var err error
	for range 3 {
		if err = start(); !errors.Is(err, errPortInUse) {
			return err
		}
	}
	return err
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
