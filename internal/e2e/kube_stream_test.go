package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/kubetest"
	"github.com/postern-dev/postern/internal/testenv"
)

// TestKubeStreams runs kubectl exec, attach, cp and port-forward through
// kube-exec, the bastion and the forwarder to the real API server, which
// sends them to the pod's node (a kubetest testkubelet serving the
// kubelet's streaming endpoints with Kubernetes' own code), over WebSocket
// (kubectl's default) and SPDY.
func TestKubeStreams(t *testing.T) {
	e := startKubeEnv(t)
	node := e.kube.StartNode(t, "node-1")
	node.RunPod(t, "team-a", "app")
	alice := e.user(t, "alice@example.com", "kube-dev")
	carol := e.user(t, "carol@example.com", "kube-view")

	// upgrade finds the forwarder's event for an exec, attach or
	// port-forward: verb get for WebSocket (a GET), create for SPDY (a
	// POST), as the API server itself names them.
	match := func(person, verb, sub string, status int) func(audit.Event) bool {
		return func(ev audit.Event) bool {
			return ev.Person == person && ev.Verb == verb && ev.Resource == "pods" && ev.Subresource == sub &&
				ev.KubeNamespace == "team-a" && ev.KubeName == "app" && ev.Status == status
		}
	}
	upgrade := func(t *testing.T, person, verb, sub string, status int) audit.Event {
		t.Helper()
		return waitKubeEvent(t, e.fwdLog, audit.KubeRequest, match(person, verb, sub, status))
	}
	countEvents := func(m func(audit.Event) bool) int {
		n := 0
		for _, ev := range kubeEvents(t, e.fwdLog, audit.KubeRequest) {
			if m(ev) {
				n++
			}
		}
		return n
	}

	for _, proto := range []struct{ name, websockets, verb string }{
		{"websocket", "true", "get"},
		{"spdy", "false", "create"},
	} {
		env := append(alice.env(), "KUBECTL_REMOTE_COMMAND_WEBSOCKETS="+proto.websockets, "KUBECTL_PORT_FORWARD_WEBSOCKETS="+proto.websockets)
		t.Run(proto.name, func(t *testing.T) {
			t.Run("exec", func(t *testing.T) {
				out, stderr, code := e.runEnv(t, env, "", "exec", "-n", "team-a", "app", "--", "echo", "hello")
				if code != 0 || out != "hello\n" {
					t.Fatalf("exit %d\nstdout: %q\nstderr: %s", code, out, stderr)
				}
				ev := upgrade(t, "alice@example.com", proto.verb, "exec", 101)
				if ev.KubeUser != "alice@example.com" || ev.Cluster != kubeCluster || ev.SessionID == "" {
					t.Errorf("event %+v", ev)
				}
			})
			t.Run("exec with stdin and stderr", func(t *testing.T) {
				out, stderr, code := e.runEnv(t, env, "line 1\nline 2\n", "exec", "-i", "-n", "team-a", "app", "--", "sh", "-c", "cat; echo to-stderr >&2")
				if code != 0 || out != "line 1\nline 2\n" || !strings.Contains(stderr, "to-stderr") {
					t.Fatalf("exit %d\nstdout: %q\nstderr: %s", code, out, stderr)
				}
			})
			t.Run("the exit status comes through", func(t *testing.T) {
				out, stderr, code := e.runEnv(t, env, "", "exec", "-n", "team-a", "app", "--", "sh", "-c", "exit 3")
				if code != 3 {
					t.Fatalf("exit %d, want 3\nstdout: %q\nstderr: %s", code, out, stderr)
				}
			})
			t.Run("attach", func(t *testing.T) {
				out, stderr, code := e.runEnv(t, env, "attached\n", "attach", "-i", "-q", "-n", "team-a", "app")
				if code != 0 || out != "attached\n" {
					t.Fatalf("exit %d\nstdout: %q\nstderr: %s", code, out, stderr)
				}
				upgrade(t, "alice@example.com", proto.verb, "attach", 101)
			})
			t.Run("cp", func(t *testing.T) {
				// kubectl cp is tar over exec; the node's "container"
				// filesystem is the host's.
				dir := t.TempDir()
				src, inPod, back := filepath.Join(dir, "src.txt"), filepath.Join(dir, "in-pod"), filepath.Join(dir, "back.txt")
				kubeWrite(t, src, []byte("copied over "+proto.name+"\n"), 0o644)
				if err := os.Mkdir(inPod, 0o755); err != nil {
					t.Fatal(err)
				}
				if out, stderr, code := e.runEnv(t, env, "", "cp", src, "team-a/app:"+inPod+"/copied.txt"); code != 0 {
					t.Fatalf("cp to the pod: exit %d\nstdout: %q\nstderr: %s", code, out, stderr)
				}
				if got := string(kubeRead(t, filepath.Join(inPod, "copied.txt"))); got != "copied over "+proto.name+"\n" {
					t.Fatalf("copied to the pod: %q", got)
				}
				if out, stderr, code := e.runEnv(t, env, "", "cp", "team-a/app:"+inPod+"/copied.txt", back); code != 0 {
					t.Fatalf("cp from the pod: exit %d\nstdout: %q\nstderr: %s", code, out, stderr)
				}
				if got := string(kubeRead(t, back)); got != "copied over "+proto.name+"\n" {
					t.Fatalf("copied from the pod: %q", got)
				}
			})
			t.Run("port-forward", func(t *testing.T) {
				port := kubetest.EchoServer(t)
				cmd := e.command(context.Background(), env, "port-forward", "-n", "team-a", "app", fmt.Sprintf(":%d", port))
				local := kubetest.StartPortForward(t, cmd)
				for i := range 2 { // two connections over one port-forward
					msg := fmt.Sprintf("ping %d over %s", i, proto.name)
					if got := kubetest.EchoLine(t, local, msg); got != msg {
						t.Errorf("echo through the port-forward: %q, want %q", got, msg)
					}
				}
				// The port-forward's one event is written when it ends.
				_ = cmd.Process.Signal(syscall.SIGTERM)
				upgrade(t, "alice@example.com", proto.verb, "portforward", 101)
			})
			t.Run("carol may read pods but not exec or port-forward", func(t *testing.T) {
				cenv := append(carol.env(), "KUBECTL_REMOTE_COMMAND_WEBSOCKETS="+proto.websockets, "KUBECTL_PORT_FORWARD_WEBSOCKETS="+proto.websockets)
				if out, stderr, code := e.runEnv(t, cenv, "", "get", "pod", "app", "-n", "team-a", "-o", "name"); code != 0 || out != "pod/app\n" {
					t.Fatalf("get pod: exit %d\nstdout: %q\nstderr: %s", code, out, stderr)
				}
				// The API server checks create for WebSocket too.
				out, stderr, code := e.runEnv(t, cenv, "", "exec", "-n", "team-a", "app", "--", "echo", "hello")
				if code == 0 || strings.Contains(out, "hello") ||
					!strings.Contains(stderr, `User "carol@example.com" cannot create resource "pods/exec" in API group "" in the namespace "team-a"`) {
					t.Fatalf("exec: exit %d\nstdout: %q\nstderr: %s", code, out, stderr)
				}
				upgrade(t, "carol@example.com", proto.verb, "exec", 403)
				out, stderr, code = e.runEnv(t, cenv, "", "port-forward", "-n", "team-a", "app", fmt.Sprintf(":%d", kubetest.EchoServer(t)))
				if code == 0 || !strings.Contains(stderr, `User "carol@example.com" cannot create resource "pods/portforward"`) {
					t.Fatalf("port-forward: exit %d\nstdout: %q\nstderr: %s", code, out, stderr)
				}
				upgrade(t, "carol@example.com", proto.verb, "portforward", 403)
			})
		})
	}

	t.Run("exec with a terminal", func(t *testing.T) {
		tmux := testenv.RequireBinary(t, "tmux")
		sock := filepath.Join(t.TempDir(), "tmux.sock")
		run := func(args ...string) string {
			t.Helper()
			out, err := exec.Command(tmux, append([]string{"-S", sock}, args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("tmux %v: %v %s", args, err, out)
			}
			return string(out)
		}
		execs := match("alice@example.com", "get", "exec", 101)
		before := countEvents(execs)
		cmd := e.command(context.Background(), nil, "exec", "-it", "-n", "team-a", "app", "--", "sh")
		line := "env -i " + shellJoin(alice.env()) + " " + shellJoin(cmd.Args) + "; echo kube-exec-exit=$?; sleep 600"
		run("new-session", "-d", "-x", "100", "-y", "30", "-s", "k", line)
		t.Cleanup(func() { _ = exec.Command(tmux, "-S", sock, "kill-server").Run() })
		pane := func() string { return run("capture-pane", "-p", "-t", "k") }
		waitPane := func(want string) {
			t.Helper()
			deadline := time.Now().Add(30 * time.Second)
			for !strings.Contains(pane(), want) {
				if time.Now().After(deadline) {
					t.Fatalf("pane never showed %q:\n%s", want, pane())
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		size := func() string {
			return strings.TrimSpace(run("display-message", "-p", "-t", "k", "#{pane_height} #{pane_width}"))
		}
		// The command's terminal is a pty of the node's, as big as the
		// person's; it follows a resize.
		run("send-keys", "-t", "k", "tty | sed s/^/tty=/; stty size | sed s/^/size=/", "Enter")
		waitPane("tty=/dev/pts/")
		waitPane("size=" + size())
		run("resize-window", "-t", "k", "-x", "120", "-y", "40")
		if got := size(); got == "29 100" || got == "30 100" {
			t.Fatalf("tmux did not resize the window: %s", got)
		}
		run("send-keys", "-t", "k", "clear; stty size | sed s/^/resized=/", "Enter")
		waitPane("resized=" + size())
		run("send-keys", "-t", "k", "exit 4", "Enter")
		waitPane("kube-exec-exit=4")
		waitFor(t, func() bool { return countEvents(execs) == before+1 })
	})
}

// shellJoin quotes args for sh.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
