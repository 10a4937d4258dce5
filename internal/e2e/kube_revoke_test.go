package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postern-dev/postern/internal/audit"
)

// kubeWatch is `kube-exec -- kubectl get pods --watch -n team-a` running.
type kubeWatch struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuf
	done           chan struct{}
	ended          time.Time
}

// startWatch starts the watch with env; see watching for when it is.
func (k *kubeSide) startWatch(t *testing.T, env []string) *kubeWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &kubeWatch{stdout: &syncBuf{}, stderr: &syncBuf{}, done: make(chan struct{})}
	w.cmd = k.command(ctx, env, "get", "pods", "--watch", "-n", "team-a")
	// Stopped as a person would: kube-exec passes the signal on to kubectl.
	w.cmd.Cancel = func() error { return w.cmd.Process.Signal(syscall.SIGTERM) }
	w.cmd.WaitDelay = 20 * time.Second
	w.cmd.Stdout, w.cmd.Stderr = w.stdout, w.stderr
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = w.cmd.Wait(); w.ended = time.Now(); close(w.done) }()
	t.Cleanup(func() { cancel(); <-w.done })
	return w
}

// watching creates two pods one after the other and waits until every
// watch printed each: the second is created after the first was printed,
// so after kubectl's initial list, and can only come through the watch.
func watching(t *testing.T, k *kubeSide, prefix string, watches map[string]*kubeWatch) {
	t.Helper()
	for i := 1; i <= 2; i++ {
		name := fmt.Sprintf("%s-%d", prefix, i)
		createPod(t, k, name)
		for who, w := range watches {
			w.sees(t, who, name)
		}
	}
}

// sees waits until the watch printed pod name.
func (w *kubeWatch) sees(t *testing.T, who, name string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for !strings.Contains(w.stdout.String(), name) {
		select {
		case <-w.done:
			t.Fatalf("%s's watch ended: %s", who, w.stderr)
		case <-deadline:
			t.Fatalf("%s's watch did not show pod %s; output:\n%s%s", who, name, w.stdout, w.stderr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func createPod(t *testing.T, k *kubeSide, name string) {
	t.Helper()
	k.kube.Apply(t, fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: team-a\nspec:\n  containers:\n  - name: c\n    image: example.invalid/none\n", name))
}

// TestRevokeEndsSSHAndKube is issue 6's offboarding promise for someone
// with both kinds of access, from the real binaries: the signer publishes
// its KRL, the bastion polls it, a forwarder serves a real kube-apiserver.
// alice holds an interactive session (ssh -J, with a pty, running cat) to
// a stock sshd node and a `kube-exec -- kubectl get pods --watch`; bob a
// watch too. `postern-signer revoke --key-id alice` ends both of alice's
// within 5 s, each with a session.end naming the revocation; kube-exec
// says why and exits non-zero; her next ssh -J and her next kube-exec are
// refused with the message. bob's watch goes on.
func TestRevokeEndsSSHAndKube(t *testing.T) {
	e := startBastionEnv(t)
	s := startBastionSigner(t, e)
	k := startKubeSide(t, filepath.Join(e.dir, "kube"))
	// The bastion takes forwarders certified by its host CA (forwarder_ca
	// defaults to data_dir/host_ca.pub) and grants the cluster to kube-dev;
	// pollSigner restarts it with that and the signer's KRL.
	bstWrite(t, e.cfgPath, append(readFile(t, e.cfgPath), kubeDevRole+"recording = \"off\"\n"...), 0o600)
	e.pollSigner(t, s)
	k.configureForwarder(t, e.hostCA, filepath.Join(e.dir, "host_ca.pub"), e.addr, e.knownHosts)
	k.startForwarder(t)

	alice := e.user(t, "alice@example.com", bstCertOpts{roles: "ops,kube-dev"})
	bob := e.user(t, "bob@example.com", bstCertOpts{roles: "kube-dev"})
	aliceEnv := personEnv(filepath.Join(e.dir, "home-alice"), alice.agent.Socket)
	bobEnv := personEnv(filepath.Join(e.dir, "home-bob"), bob.agent.Socket)

	shell := startSSHSession(t, alice, "-tt", "node1", "echo started; tty; exec cat")
	if _, err := shell.stdin.Write([]byte("typed-before-revoke\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Count(shell.stdout.String(), "typed-before-revoke") == 2 }) // the pty's echo, then cat's
	if !strings.Contains(shell.stdout.String(), "/dev/pts/") {
		t.Fatalf("alice's session has no pty:\n%s", shell.stdout)
	}
	aliceWatch, bobWatch := k.startWatch(t, aliceEnv), k.startWatch(t, bobEnv)
	watching(t, k, "before-revoke", map[string]*kubeWatch{"alice": aliceWatch, "bob": bobWatch})
	// alice's kube-exec proxy, idle: it stops too, rather than reconnect.
	proxy := k.startProxy(t, filepath.Join(e.dir, "home-alice"), alice.agent.Socket)
	if code, body := proxy.get(t, "/api/v1/namespaces/team-a/pods", nil); code != 200 {
		t.Fatalf("alice's proxy: %d %s", code, body)
	}

	issued := time.Now()
	out := run(t, s.bin, "revoke", "--config", s.cfgPath, "--key-id", "alice@example.com", "--reason", "left the company")
	revoked := time.Now()
	if !strings.Contains(out, `revoked key id "alice@example.com" (generation 1)`) {
		t.Fatalf("revoke output:\n%s", out)
	}
	deadline := time.After(5 * time.Second)
	for _, x := range []struct {
		what string
		done chan struct{}
	}{{"interactive session", shell.done}, {"kubectl watch", aliceWatch.done}, {"kube-exec proxy", proxy.proc.done}} {
		select {
		case <-x.done:
		case <-deadline:
			t.Fatalf("alice's %s still runs 5s after the revocation; bastion log:\n%s", x.what, e.logs)
		}
	}
	t.Logf("revoke -> end: ssh %s, kube-exec %s after the revoke command returned (it took %s; revocation_poll 2s)",
		shell.ended.Sub(revoked).Round(time.Millisecond), aliceWatch.ended.Sub(revoked).Round(time.Millisecond),
		revoked.Sub(issued).Round(time.Millisecond))

	if code := shell.cmd.ProcessState.ExitCode(); code == 0 {
		t.Errorf("alice's ssh exited 0 after the revocation")
	}
	code, stderr := aliceWatch.cmd.ProcessState.ExitCode(), aliceWatch.stderr.String()
	if code == 0 || !strings.Contains(stderr, "kube-exec: error: your access was revoked") {
		t.Errorf("alice's kube-exec exited %d, stderr:\n%s\nwant non-zero and %q", code, stderr, "kube-exec: error: your access was revoked")
	}
	t.Logf("alice's kube-exec exited %d, stderr:\n%s", code, stderr)
	if code := proxy.proc.cmd.ProcessState.ExitCode(); code == 0 || !strings.Contains(proxy.proc.logs.String(), "kube-exec: error: your access was revoked") {
		t.Errorf("alice's kube-exec proxy exited %d, output:\n%s", code, proxy.proc.logs)
	}

	// The end events of her hop and of her kube channels name the
	// revocation (kubectl may have opened and closed other channels
	// before: those ended as usual).
	swept := time.Now()
	for _, method := range []string{"direct-tcpip", "kube"} {
		end := e.waitEvent(t, audit.SessionEnd, func(ev audit.Event) bool {
			return ev.Person == "alice@example.com" && ev.Method == method && ev.Reason == "revoked"
		})
		if !strings.Contains(end.Error, `key ID "alice@example.com"`) || !strings.Contains(end.Error, "generation 1") {
			t.Errorf("alice's %s session.end = %+v; want the error naming the key ID and generation", method, end)
		}
		if end.Time.Before(swept) {
			swept = end.Time
		}
	}
	for _, ev := range e.events(t, audit.SessionEnd) {
		if ev.Person == "alice@example.com" && !ev.Time.Before(swept) && ev.Reason != "revoked" {
			t.Errorf("alice's session ended by the revocation without naming it: %+v", ev)
		}
	}

	// The forwarder ended the watch it carried for her: its one event.
	waitKubeEvent(t, k.fwdLog, audit.KubeRequest, func(ev audit.Event) bool {
		return ev.Person == "alice@example.com" && ev.Verb == "watch" && ev.Resource == "pods"
	})

	// Her next ssh -J and her next kube-exec are refused, with the message.
	_, stderr, code = bstRun(t, "ssh", alice.cfg, "", "node1", "echo", "should-not-run")
	if code != 255 || !strings.Contains(stderr, revocationMessage) {
		t.Errorf("alice's next ssh -J: exit %d, stderr:\n%s\nwant 255 and %q", code, stderr, revocationMessage)
	}
	out, stderr, code = k.runEnv(t, aliceEnv, "", "get", "pods", "-n", "team-a")
	if code == 0 || !strings.Contains(stderr, "refused your certificate: your access was revoked") {
		t.Errorf("alice's next kube-exec: exit %d, stdout %q, stderr:\n%s", code, out, stderr)
	}
	t.Logf("alice's next kube-exec exited %d, stderr:\n%s", code, stderr)
	e.waitEvent(t, audit.AuthFailed, func(ev audit.Event) bool {
		return ev.Person == "alice@example.com" && ev.Login == "kube" && strings.HasPrefix(ev.Reason, "revoked: ")
	})

	// bob's watch goes on.
	watching(t, k, "after-revoke", map[string]*kubeWatch{"bob": bobWatch})
	e.noEvent(t, audit.SessionEnd, func(ev audit.Event) bool { return ev.Person == "bob@example.com" })
}
