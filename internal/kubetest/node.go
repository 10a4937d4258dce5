package kubetest

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postern-dev/postern/internal/testenv"
)

// kubeletClientUser is the common name of the API server's kubelet client
// certificate, the only identity a testkubelet serves.
const kubeletClientUser = "kube-apiserver-kubelet-client"

// NodeIP is the address of every test node: its kubelet listens there, and
// a port-forward to a pod's port connects to that port there.
const NodeIP = "127.0.0.1"

// Node is a Node object whose kubelet is a running testkubelet: the API
// server sends the exec, attach and port-forward requests of the node's
// pods to it. Nothing else of a kubelet is there: pods bound to the node
// are made Running by [Node.RunPod], not by the node.
type Node struct {
	// Name is the Node object's name.
	Name string
	// Addr is the testkubelet's address, "127.0.0.1:PORT".
	Addr string

	c *Cluster
}

// StartNode starts a testkubelet (see build/cmd/testkubelet) on a loopback
// port, stops it when the test ends, and registers it as the Node name:
// status address InternalIP 127.0.0.1 and kubelet endpoint port. What runs
// "in" the node's pods is the host's: an exec runs the command as a local
// process of the test's user, a port-forward connects to the port on
// 127.0.0.1, an attach starts `cat`.
func (c *Cluster) StartNode(t testing.TB, name string) *Node {
	t.Helper()
	n := &Node{Name: name, c: c}
	logs := testenv.NewLogs(t, "testkubelet "+name)
	if err := retryPorts(func() error { return n.start(t, logs) }); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	port := n.Addr[strings.LastIndexByte(n.Addr, ':')+1:]
	c.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Node
metadata:
  name: %s
  labels:
    kubernetes.io/hostname: %s
status:
  addresses:
  - type: InternalIP
    address: %s
  daemonEndpoints:
    kubeletEndpoint:
      Port: %s
`, name, name, NodeIP, port))
	return n
}

func (n *Node) start(t testing.TB, logs *testenv.Logs) error {
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(NodeIP, strconv.Itoa(ports[0]))
	c := n.c
	p, err := c.startProcess(logs, c.bins.TestKubelet, []string{
		"--listen=" + addr,
		"--tls-cert-file=" + c.path("kubelet.crt"),
		"--tls-private-key-file=" + c.path("kubelet.key"),
		"--client-ca-file=" + c.CAFile,
		"--allowed-user=" + kubeletClientUser,
		"--pod-ip=" + NodeIP,
	}, c.Dir)
	if err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(c.kubeletClientCert, c.kubeletClientKey)
	if err != nil {
		return fmt.Errorf("load kubelet client certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.ca.cert)
	probe := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}
	if err := p.waitReady("https://"+addr+"/healthz", probe); err != nil {
		return err
	}
	n.Addr = addr
	return nil
}

// RunPod creates the pod namespace/name bound to the node, with one
// container "main" (stdin open, no TTY), and sets its status to Running
// with the container running and ready, as the node's kubelet would.
func (n *Node) RunPod(t testing.TB, namespace, name string) {
	t.Helper()
	n.c.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
spec:
  nodeName: %s
  containers:
  - name: main
    image: kubetest.invalid/none:0
    stdin: true
`, name, namespace, n.Name))
	status := `{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}],` +
		`"containerStatuses":[{"name":"main","ready":true,"started":true,"restartCount":0,` +
		`"image":"kubetest.invalid/none:0","imageID":"","state":{"running":{}}}]}}`
	if _, stderr, err := n.c.Kubectl(t, "patch", "pod", name, "-n", namespace, "--subresource=status", "--type=merge", "-p", status); err != nil {
		t.Fatalf("kubetest: mark pod %s/%s running: %v\n%s", namespace, name, err, stderr)
	}
}

// EchoServer listens on a port of [NodeIP] until the test ends, sending
// back whatever each connection sends, and returns the port: a pod's port
// for a port-forward.
func EchoServer(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(NodeIP, "0"))
	if err != nil {
		t.Fatalf("kubetest: echo server: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_, _ = io.Copy(conn, conn)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// forwardingFrom is kubectl port-forward's line for its IPv4 listener.
var forwardingFrom = regexp.MustCompile(`^Forwarding from 127\.0\.0\.1:(\d+) -> \d+$`)

// StartPortForward starts cmd, a `kubectl port-forward POD :PORT` run
// directly or through a wrapper, waits until kubectl says which local port
// it listens on, and returns that address ("127.0.0.1:N"). cmd's stdout
// and stderr must be unset; they are shown if the test fails. It is
// interrupted (SIGTERM, SIGKILL 10 s later) when the test ends.
func StartPortForward(t testing.TB, cmd *exec.Cmd) string {
	t.Helper()
	logs := testenv.NewLogs(t, "port-forward")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("kubetest: start %s: %v", cmd.Path, err)
	}
	exited := make(chan struct{})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(logs, sc.Text())
			if m := forwardingFrom.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- net.JoinHostPort("127.0.0.1", m[1]):
				default:
				}
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(stopTimeout):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	select {
	case a := <-addr:
		return a
	case <-exited:
		t.Fatalf("kubetest: port-forward exited: %v (its output follows the test)", cmd.ProcessState)
	case <-time.After(kubectlTimeout):
		t.Fatalf("kubetest: port-forward did not report its local port within %v", kubectlTimeout)
	}
	return ""
}

// EchoLine sends msg and a newline on a new connection to addr (an
// [EchoServer], directly or through a port-forward) and returns the line
// that comes back.
func EchoLine(t testing.TB, addr, msg string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, msg+"\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("read the echo: %v (got %q)", err, line)
	}
	return strings.TrimSuffix(line, "\n")
}
