// Command testkubelet serves the streaming endpoints of a kubelet — exec,
// attach and port-forward — so that a test's kube-apiserver has a node to
// send pods/exec, pods/attach and pods/portforward to. It is part of the
// kubetest harness and for tests only.
//
// The protocol side is Kubernetes' own: the handlers are the CRI streaming
// server's ServeExec, ServeAttach and ServePortForward
// (k8s.io/cri-streaming), which speak SPDY and WebSocket exactly as a
// kubelet backed by a container runtime does. Only the runtime is a stand-in:
//
//   - exec runs the command as a local process (argv as given, no shell),
//     with stdin, stdout and stderr wired, or a pseudo-terminal for a TTY
//     (resized as the client asks); its exit status is the command's.
//     POD_NAMESPACE, POD_NAME and CONTAINER_NAME tell it where it "runs".
//   - attach starts `cat` as the container's main process: it echoes what
//     it reads.
//   - port-forward dials the port on --pod-ip (default 127.0.0.1).
//
// It listens on HTTPS and accepts only a client certificate from
// --client-ca-file whose common name is --allowed-user (the API server's
// kubelet client certificate); anything else gets 401 or 403.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// The kubelet's defaults (KubeletConfiguration streamingConnectionIdleTimeout
// and the CRI streaming server's creation timeout).
const (
	idleTimeout           = 4 * time.Hour
	streamCreationTimeout = remotecommand.DefaultStreamCreationTimeout
	// outputDrain bounds the wait for a TTY's last output after the
	// command exited (a background process may hold the terminal).
	outputDrain = 2 * time.Second
)

func main() {
	listen := flag.String("listen", "127.0.0.1:10250", "address to serve on")
	certFile := flag.String("tls-cert-file", "", "serving certificate (PEM)")
	keyFile := flag.String("tls-private-key-file", "", "serving key (PEM)")
	clientCA := flag.String("client-ca-file", "", "CA of the client certificates accepted (PEM)")
	allowed := flag.String("allowed-user", "kube-apiserver-kubelet-client", "the one client certificate common name allowed")
	podIP := flag.String("pod-ip", "127.0.0.1", "address port-forward connects to")
	attachCmd := flag.String("attach-command", "cat", "the process attach starts as the container's main process")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	log.SetPrefix("testkubelet: ")
	if *certFile == "" || *keyFile == "" || *clientCA == "" {
		log.Fatal("--tls-cert-file, --tls-private-key-file and --client-ca-file are required")
	}
	if net.ParseIP(*podIP) == nil {
		log.Fatalf("--pod-ip %q is not an IP address", *podIP)
	}
	caPEM, err := os.ReadFile(*clientCA)
	if err != nil {
		log.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		log.Fatalf("%s: no certificate", *clientCA)
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatal(err)
	}

	rt := &runtime{podIP: *podIP, attachCmd: *attachCmd}
	srv := &http.Server{
		Addr:    *listen,
		Handler: authorize(*allowed, rt.routes()),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientCAs:    pool,
			ClientAuth:   tls.VerifyClientCertIfGiven,
			MinVersion:   tls.VersionTLS12,
			// SPDY upgrades need HTTP/1.1, as on a kubelet.
			NextProtos: []string{"http/1.1"},
		},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.Default(),
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		rt.killAll()
		_ = srv.Close()
	}()
	log.Printf("serving on https://%s", ln.Addr())
	if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// authorize lets through only requests with a verified client certificate
// naming user.
func authorize(user string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		if cn := r.TLS.VerifiedChains[0][0].Subject.CommonName; cn != user {
			log.Printf("refused %s %s from %q", r.Method, r.URL.Path, cn)
			http.Error(w, fmt.Sprintf("Forbidden (user=%s)", cn), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// runtime is the stand-in container runtime.
type runtime struct {
	podIP     string
	attachCmd string

	mu    sync.Mutex
	procs map[*exec.Cmd]struct{}
}

// routes are the kubelet's streaming paths (pkg/kubelet/server), with and
// without the pod UID.
func (rt *runtime) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	for _, p := range []string{"/exec/{ns}/{pod}/{container}", "/exec/{ns}/{pod}/{uid}/{container}"} {
		mux.HandleFunc(p, rt.serveExec)
	}
	for _, p := range []string{"/attach/{ns}/{pod}/{container}", "/attach/{ns}/{pod}/{uid}/{container}"} {
		mux.HandleFunc(p, rt.serveAttach)
	}
	for _, p := range []string{"/portForward/{ns}/{pod}", "/portForward/{ns}/{pod}/{uid}"} {
		mux.HandleFunc(p, rt.servePortForward)
	}
	return mux
}

func methodOK(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return false
	}
	return true
}

func (rt *runtime) serveExec(w http.ResponseWriter, r *http.Request) {
	if !methodOK(w, r) {
		return
	}
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cmd := r.URL.Query()["command"]
	if len(cmd) == 0 {
		http.Error(w, "no command", http.StatusBadRequest)
		return
	}
	ns, pod, ctr := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	log.Printf("exec %s/%s/%s %q tty=%v stdin=%v", ns, pod, ctr, cmd, opts.TTY, opts.Stdin)
	remotecommand.ServeExec(w, r, executor{rt, ns}, pod, r.PathValue("uid"), ctr, cmd, opts,
		idleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

func (rt *runtime) serveAttach(w http.ResponseWriter, r *http.Request) {
	if !methodOK(w, r) {
		return
	}
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ns, pod, ctr := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	log.Printf("attach %s/%s/%s tty=%v stdin=%v", ns, pod, ctr, opts.TTY, opts.Stdin)
	remotecommand.ServeAttach(w, r, executor{rt, ns}, pod, r.PathValue("uid"), ctr, opts,
		idleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

func (rt *runtime) servePortForward(w http.ResponseWriter, r *http.Request) {
	if !methodOK(w, r) {
		return
	}
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	log.Printf("portforward %s/%s", r.PathValue("ns"), r.PathValue("pod"))
	portforward.ServePortForward(w, r, rt, r.PathValue("pod"), r.PathValue("uid"), opts,
		idleTimeout, streamCreationTimeout, portforward.SupportedProtocols)
}

// PortForward implements portforward.PortForwarder: it connects stream to
// port on the pod IP.
func (rt *runtime) PortForward(ctx context.Context, pod, _ string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(rt.podIP, strconv.Itoa(int(port))))
	if err != nil {
		log.Printf("portforward %s: %v", pod, err)
		return fmt.Errorf("connect to port %d of pod %s: %w", port, pod, err)
	}
	defer c.Close()
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(c, stream)
		_ = c.(*net.TCPConn).CloseWrite()
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(stream, c)
		done <- struct{}{}
	}()
	select {
	case <-done:
		<-done
	case <-ctx.Done():
	}
	return nil
}

// executor implements remotecommand.Executor and Attacher for one
// namespace.
type executor struct {
	rt *runtime
	ns string
}

func (e executor) ExecInContainer(ctx context.Context, pod, _, container string, cmd []string, in io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, _ time.Duration) error {
	return e.rt.run(ctx, e.ns, pod, container, cmd, in, stdout, stderr, tty, resize)
}

func (e executor) AttachContainer(ctx context.Context, pod, _, container string, in io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	return e.rt.run(ctx, e.ns, pod, container, []string{e.rt.attachCmd}, in, stdout, stderr, tty, resize)
}

// run runs argv with the streams until it exits or ctx ends (the client
// went away). A non-zero exit is a utilexec.ExitError, which the streaming
// server reports to the client as the exit code.
func (rt *runtime) run(ctx context.Context, ns, pod, container string, argv []string, in io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "POD_NAMESPACE="+ns, "POD_NAME="+pod, "CONTAINER_NAME="+container)
	cmd.WaitDelay = outputDrain
	// Each command runs in its own process group (session for a TTY):
	// end all of it.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var err error
	if tty {
		err = rt.runTTY(cmd, in, stdout, resize)
	} else {
		err = rt.runPipes(cmd, in, stdout, stderr)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code := ee.ExitCode()
		if code < 0 { // killed by a signal: the shell's convention
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
		}
		if code == 0 {
			return nil
		}
		return utilexec.CodeExitError{Err: err, Code: code}
	}
	return err
}

func (rt *runtime) runPipes(cmd *exec.Cmd, in io.Reader, stdout, stderr io.Writer) error {
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if stderr != nil {
		cmd.Stderr = stderr
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var stdin io.WriteCloser
	if in != nil {
		var err error
		if stdin, err = cmd.StdinPipe(); err != nil {
			return err
		}
	}
	if err := rt.start(cmd, func() error { return cmd.Start() }); err != nil {
		return err
	}
	defer rt.done(cmd)
	if stdin != nil {
		// Not waited for: a command that does not read its input ends
		// without it.
		go func() {
			_, _ = io.Copy(stdin, in)
			_ = stdin.Close()
		}()
	}
	return cmd.Wait()
}

func (rt *runtime) runTTY(cmd *exec.Cmd, in io.Reader, out io.Writer, resize <-chan remotecommand.TerminalSize) error {
	var ptmx *os.File
	err := rt.start(cmd, func() error {
		var err error
		ptmx, err = pty.StartWithAttrs(cmd, nil, &syscall.SysProcAttr{Setsid: true, Setctty: true, Pdeathsig: syscall.SIGKILL})
		return err
	})
	if err != nil {
		return err
	}
	defer rt.done(cmd)
	defer ptmx.Close()
	go func() {
		for sz := range resize {
			_ = pty.Setsize(ptmx, &pty.Winsize{Rows: sz.Height, Cols: sz.Width})
		}
	}()
	if in != nil {
		go func() { _, _ = io.Copy(ptmx, in) }()
	}
	copied := make(chan struct{})
	go func() {
		if out != nil {
			_, _ = io.Copy(out, ptmx) // ends with EIO once no process holds the terminal
		} else {
			_, _ = io.Copy(io.Discard, ptmx)
		}
		close(copied)
	}()
	err = cmd.Wait()
	select {
	case <-copied:
	case <-time.After(outputDrain):
	}
	return err
}

// start starts cmd and records it, so that a stopping kubelet kills it.
func (rt *runtime) start(cmd *exec.Cmd, start func() error) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if err := start(); err != nil {
		return err
	}
	if rt.procs == nil {
		rt.procs = map[*exec.Cmd]struct{}{}
	}
	rt.procs[cmd] = struct{}{}
	return nil
}

func (rt *runtime) done(cmd *exec.Cmd) {
	rt.mu.Lock()
	delete(rt.procs, cmd)
	rt.mu.Unlock()
}

func (rt *runtime) killAll() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for cmd := range rt.procs {
		// Each runs in its own process group (session for a TTY).
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
