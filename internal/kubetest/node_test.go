package kubetest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The API server sends exec, attach and port-forward to the testkubelet
// of the pod's node, over WebSocket (kubectl's default) and SPDY.
func TestNodeStreams(t *testing.T) {
	c := Start(t)
	node := c.StartNode(t, "node-1")
	node.RunPod(t, "default", "p")

	for _, proto := range []struct{ name, websockets string }{{"websocket", "true"}, {"spdy", "false"}} {
		env := []string{"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=" + proto.websockets, "KUBECTL_PORT_FORWARD_WEBSOCKETS=" + proto.websockets}
		t.Run(proto.name, func(t *testing.T) {
			t.Run("exec", func(t *testing.T) {
				out, stderr, code := kubectlEnv(t, c, env, "", "exec", "p", "--", "sh", "-c", `echo "hello from $POD_NAMESPACE/$POD_NAME/$CONTAINER_NAME"; echo oops >&2`)
				if code != 0 || out != "hello from default/p/main\n" || !strings.Contains(stderr, "oops") {
					t.Fatalf("exit %d\nstdout: %q\nstderr: %s", code, out, stderr)
				}
			})
			t.Run("exec with stdin", func(t *testing.T) {
				out, stderr, code := kubectlEnv(t, c, env, "line 1\nline 2\n", "exec", "-i", "p", "--", "cat")
				if code != 0 || out != "line 1\nline 2\n" {
					t.Fatalf("exit %d\nstdout: %q\nstderr: %s", code, out, stderr)
				}
			})
			t.Run("exit status", func(t *testing.T) {
				out, stderr, code := kubectlEnv(t, c, env, "", "exec", "p", "--", "sh", "-c", "exit 3")
				if code != 3 {
					t.Fatalf("exit %d, want 3\nstdout: %q\nstderr: %s", code, out, stderr)
				}
			})
			t.Run("attach", func(t *testing.T) {
				out, stderr, code := kubectlEnv(t, c, env, "echoed\n", "attach", "-i", "-q", "p")
				if code != 0 || out != "echoed\n" {
					t.Fatalf("exit %d\nstdout: %q\nstderr: %s", code, out, stderr)
				}
			})
			t.Run("port-forward", func(t *testing.T) {
				port := EchoServer(t)
				cmd := exec.Command(c.bins.Kubectl, "port-forward", "p", fmt.Sprintf(":%d", port))
				cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.Dir, "KUBECONFIG=" + c.AdminKubeconfig}, env...)
				local := StartPortForward(t, cmd)
				for i := range 2 { // two connections over one port-forward
					if got := EchoLine(t, local, fmt.Sprintf("ping %d", i)); got != fmt.Sprintf("ping %d", i) {
						t.Errorf("echo through the port-forward: %q", got)
					}
				}
			})
		})
	}

	t.Run("only the API server may use the kubelet", func(t *testing.T) {
		// The admin's certificate is from the same CA, but not the API
		// server's kubelet client.
		probe := c.adminTLS.Clone()
		conn, err := tls.Dial("tcp", node.Addr, probe)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /exec/default/p/main?command=id&output=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		line, _ := bufio.NewReader(conn).ReadString('\n')
		if !strings.Contains(line, " 403 ") {
			t.Errorf("status line %q, want 403", line)
		}
	})
}

// kubectlEnv runs kubectl as the admin with extra environment and stdin,
// and returns its output and exit status.
func kubectlEnv(t *testing.T, c *Cluster, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bins.Kubectl, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.Dir, "KUBECONFIG=" + c.AdminKubeconfig}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatalf("kubectl %s timed out; stderr: %s", strings.Join(args, " "), stderr.String())
	}
	return out.String(), stderr.String(), cmd.ProcessState.ExitCode()
}
