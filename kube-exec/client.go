package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh/agent"

	"github.com/postern-dev/postern/internal/climsg"
	"github.com/postern-dev/postern/internal/kubeproto"
	"github.com/postern-dev/postern/kube-exec/client"
)

// clientFlags are the flags of kube-exec and kube-exec proxy.
type clientFlags struct {
	cluster, bastion, knownHosts string
	verbose                      bool
	reuse                        bool // kube-exec --: use a running kube-exec proxy

	person string // set by prepare: the key ID of the agent's newest valid certificate
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.cluster, "cluster", os.Getenv("POSTERN_KUBE_CLUSTER"), "cluster `NAME`")
	fs.StringVar(&f.bastion, "bastion", os.Getenv("POSTERN_BASTION"), "bastion `HOST:PORT`")
	fs.StringVar(&f.knownHosts, "known-hosts", "", "known_hosts `FILE` (default ~/.postern/known_hosts)")
	fs.BoolVar(&f.verbose, "v", false, "log each failed request to stderr")
}

// reuseDefault is --reuse's default: on, unless POSTERN_KUBE_REUSE says no.
func reuseDefault() bool {
	switch strings.ToLower(os.Getenv("POSTERN_KUBE_REUSE")) {
	case "0", "no", "false", "off":
		return false
	}
	return true
}

// checkCluster checks that a valid cluster name was given.
func (f *clientFlags) checkCluster() error {
	if f.cluster == "" {
		return climsg.WithHint(errors.New("no cluster given"), "kube-exec --cluster NAME -- kubectl ... (or set POSTERN_KUBE_CLUSTER)")
	}
	return kubeproto.ValidCluster(f.cluster)
}

func posternHome() string {
	if h := os.Getenv("POSTERN_HOME"); h != "" {
		return h
	}
	h, err := os.UserHomeDir()
	if err != nil {
		return ".postern"
	}
	return filepath.Join(h, ".postern")
}

// prepare checks the flags and what can be checked without the network
// (ssh-agent holds a valid postern certificate), and returns the bastion
// connection, not yet dialled. onRevoked is called when the bastion says
// the person's access was revoked (client.Bastion.OnRevoked).
func (f *clientFlags) prepare(onRevoked func()) (*client.Bastion, error) {
	if err := f.checkCluster(); err != nil {
		return nil, err
	}
	if f.knownHosts == "" {
		f.knownHosts = filepath.Join(posternHome(), "known_hosts")
	}
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, climsg.WithHint(client.ErrNotLoggedIn, "start ssh-agent and run postern login")
	}
	ac, err := net.Dial("unix", sock)
	if err != nil {
		return nil, climsg.WithHint(fmt.Errorf("connect to ssh-agent: %w", err), "check SSH_AUTH_SOCK, then postern login")
	}
	b := &client.Bastion{Addr: f.bastion, KnownHosts: f.knownHosts, Agent: agent.NewClient(ac), AgentConn: ac, OnRevoked: onRevoked}
	signers, err := client.Signers(b.Agent, time.Now())
	if err != nil {
		b.Close()
		return nil, f.hint(err)
	}
	f.person = client.KeyID(signers[0])
	b.UseSigners(signers)
	return b, nil
}

// connect finds the bastion (asking the signer when --bastion is not
// given), connects and opens a first channel to the cluster, so that a
// refusal is known before any request is made.
func (f *clientFlags) connect(ctx context.Context, b *client.Bastion) (net.Conn, error) {
	if b.Addr == "" {
		addr, err := client.BastionFromSigner(ctx, filepath.Join(posternHome(), "state.json"))
		if err != nil {
			return nil, climsg.WithHint(err, "pass --bastion HOST:PORT, or run postern login and postern config first")
		}
		b.Addr = addr
		f.bastion = addr
	}
	first, err := b.Dial(ctx, f.cluster)
	if err != nil {
		return nil, f.hint(err)
	}
	return first, nil
}

// hint adds what to do about a connection error.
func (f *clientFlags) hint(err error) error {
	switch {
	case errors.Is(err, client.ErrNotLoggedIn), errors.Is(err, client.ErrExpired):
		return climsg.WithHint(err, "run postern login")
	case errors.Is(err, client.ErrRefused):
		return climsg.WithHint(err, "ask the bastion what you may reach: ssh "+f.bastion+" whoami")
	}
	return err
}

// pending is the bastion connection being made while the command starts.
type pending struct {
	done  chan struct{}
	err   error // set before done is closed
	mu    sync.Mutex
	first net.Conn // handed out once
}

// startConnect connects in the background; see [pending.dialer].
func (f *clientFlags) startConnect(ctx context.Context, b *client.Bastion) *pending {
	p := &pending{done: make(chan struct{})}
	go func() {
		p.first, p.err = f.connect(ctx, b)
		close(p.done)
	}()
	return p
}

// dialer returns the endpoint's dial function: it waits for the
// connection, hands out the first channel first, then opens new ones.
// When the connection failed it holds the request until its client goes
// away: kube-exec ends the command and reports the error itself, rather
// than have the command print a second, vaguer one.
func (p *pending) dialer(b *client.Bastion, cluster string) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		select {
		case <-p.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if p.err != nil {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		p.mu.Lock()
		c := p.first
		p.first = nil
		p.mu.Unlock()
		if c != nil {
			return c, nil
		}
		return b.Dial(ctx, cluster)
	}
}

func (f *clientFlags) logger(stderr io.Writer) *slog.Logger {
	level := slog.LevelError + 1
	if f.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

// loopbackPorts is how many ports, from the one derived from the cluster
// name on, kube-exec tries before taking any free port.
const loopbackPorts = 8

// listenLoopback listens on a port derived from the cluster name, so that
// kubectl's discovery cache (kept per server address) is reused from run
// to run; when that one is taken (a kube-exec proxy, a k9s through
// kube-exec in another terminal) on the next of a few fixed ones, so that
// the cache still holds; on any free port after that.
func listenLoopback(cluster string) (net.Listener, error) {
	base := kubeproto.ProxyPort(cluster)
	for i := range loopbackPorts {
		port := kubeproto.ProxyPortBase + (base-kubeproto.ProxyPortBase+i)%kubeproto.ProxyPortRange
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			return ln, nil
		}
	}
	return net.Listen("tcp", "127.0.0.1:0")
}

func cmdExec(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kube-exec", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	var f clientFlags
	f.register(fs)
	fs.BoolVar(&f.reuse, "reuse", reuseDefault(), "send the command's requests through a running kube-exec proxy for the cluster, if there is one (default true unless $POSTERN_KUBE_REUSE=no)")
	persistEnv, perr := persistDefault()
	persist := fs.Duration("persist", persistEnv, "with --reuse: when no proxy runs, start one in the background that exits after `DURATION` without requests (default $POSTERN_KUBE_PERSIST, else 0: never)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if perr != nil && !flagSet(fs, "persist") {
		return perr
	}
	if *persist < 0 {
		return fmt.Errorf("--persist %s: must not be negative", *persist)
	}
	cmdArgs := fs.Args()
	if len(cmdArgs) == 0 {
		return climsg.WithHint(errors.New("no command given"), "kube-exec --cluster NAME -- kubectl get pods")
	}
	if err := f.checkCluster(); err != nil {
		return err
	}
	if f.reuse {
		st, ok, err := f.proxyToReuse(*persist, stderr)
		if err != nil {
			return err
		}
		if ok {
			if token, caPEM, err := client.ProxyCredentials(posternHome()); err == nil {
				if f.verbose {
					fmt.Fprintf(stderr, "kube-exec: using the kube-exec proxy at %s (pid %d, bastion %s)\n", st.Addr, st.PID, st.Bastion)
				}
				code, err := runCommand(ctx, f.cluster, cmdArgs, "https://"+st.Addr, caPEM, token, stdout, stderr)
				return commandResult(code, err)
			}
		}
	}
	// A revocation, or a connection that cannot be made, ends the command
	// (kubectl's watch included) at once; kube-exec says why.
	rctx, abort := context.WithCancel(ctx)
	defer abort()
	b, err := f.prepare(abort)
	if err != nil {
		return err
	}
	defer b.Close()
	// The command starts while SSH connects: its own start-up (tens of
	// milliseconds for kubectl) hides the handshake. Its requests wait
	// for the connection; none is sent before it is authenticated.
	cctx, cancelConnect := context.WithCancel(ctx)
	defer cancelConnect()
	conn := f.startConnect(cctx, b)
	ln, err := listenLoopback(f.cluster)
	if err != nil {
		return fmt.Errorf("listen on loopback: %w", err)
	}
	token := client.NewToken()
	cert, caPEM, err := client.CachedLoopbackTLS(filepath.Join(posternHome(), client.ExecTLSFile))
	if err != nil {
		return err
	}
	local := &client.Local{Token: token, Dial: conn.dialer(b, f.cluster), Logger: f.logger(stderr)}
	sctx, stopServe := context.WithCancel(context.Background())
	served := make(chan struct{})
	// Stopped once the command has exited: its connections are gone, and
	// waiting for them to be noticed as closed would delay kube-exec's exit.
	go func() { _ = client.Serve(sctx, ln, cert, local.Handler(), 0); close(served) }()
	defer func() { stopServe(); <-served }()

	go func() {
		select {
		case <-conn.done:
			if conn.err != nil {
				abort()
			}
		case <-rctx.Done():
		}
	}()

	code, err := runCommand(rctx, f.cluster, cmdArgs, "https://"+ln.Addr().String(), caPEM, token, stdout, stderr)
	if rerr := b.Revoked(); rerr != nil {
		return revokedError(rerr)
	}
	select {
	case <-conn.done:
		if conn.err != nil && rctx.Err() != nil && ctx.Err() == nil {
			return conn.err
		}
	default:
	}
	return commandResult(code, err)
}

// runCommand runs the command against the endpoint at server (TLS
// certificate caPEM, bearer token) and returns its exit status.
func runCommand(ctx context.Context, cluster string, args []string, server string, caPEM []byte, token string, stdout, stderr io.Writer) (int, error) {
	// Ctrl-C goes to the whole foreground process group: let the child
	// decide, and keep serving until it exits. Caught, not ignored: an
	// ignored signal stays ignored in the child across exec.
	sigint := make(chan os.Signal, 1)
	signal.Notify(sigint, os.Interrupt)
	defer signal.Stop(sigint)
	return client.RunCommand(ctx, client.Command{
		Args: args, Env: os.Environ(), Stdin: os.Stdin, Stdout: stdout, Stderr: stderr,
	}, cluster, server, caPEM, token, client.CurrentNamespace(os.Getenv("KUBECONFIG")))
}

// commandResult is kube-exec's result for the command's exit status.
func commandResult(code int, err error) error {
	if err != nil {
		return err
	}
	if code != 0 {
		return exitError(code)
	}
	return nil
}

func cmdProxy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kube-exec proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f clientFlags
	f.register(fs)
	listen := fs.String("listen", "", "loopback `ADDR` to serve on (default: a port derived from the cluster name)")
	idleExit := fs.Duration("idle-exit", 0, "exit after `DURATION` without a request in progress (0: never)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *idleExit < 0 {
		return fmt.Errorf("--idle-exit %s: must not be negative", *idleExit)
	}
	sctx, revoked := context.WithCancel(ctx)
	defer revoked()
	b, err := f.prepare(revoked)
	if err != nil {
		return err
	}
	defer b.Close()
	first, err := f.connect(ctx, b)
	if err != nil {
		return err
	}
	conn := &pending{done: make(chan struct{}), first: first}
	close(conn.done)
	dial := conn.dialer(b, f.cluster)
	token, err := client.ProxyToken(posternHome())
	if err != nil {
		return fmt.Errorf("proxy token: %w", err)
	}
	cert, _, err := client.LoopbackTLS(posternHome())
	if err != nil {
		return fmt.Errorf("proxy certificate: %w", err)
	}
	var ln net.Listener
	if *listen != "" {
		host, _, perr := net.SplitHostPort(*listen)
		if ip := net.ParseIP(host); perr != nil || ip == nil || !ip.IsLoopback() {
			return climsg.WithHint(fmt.Errorf("--listen %q is not a loopback address", *listen), "use 127.0.0.1:PORT")
		}
		ln, err = net.Listen("tcp", *listen)
	} else {
		ln, err = listenLoopback(f.cluster)
	}
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	server := "https://" + ln.Addr().String()
	// kube-exec -- CMD for this cluster sends its requests through this
	// proxy while it runs (--reuse).
	unpublish, err := client.PublishProxy(posternHome(), client.ProxyState{Cluster: f.cluster, Bastion: f.bastion, Person: f.person, Addr: ln.Addr().String(), PID: os.Getpid()})
	if err != nil {
		return fmt.Errorf("publish the proxy for kube-exec: %w", err)
	}
	defer unpublish()
	fmt.Fprintf(stdout, "kube-exec: serving cluster %s at %s (token in %s, certificate %s)\n", f.cluster, server,
		filepath.Join(posternHome(), client.ProxyTokenFile), filepath.Join(posternHome(), client.ProxyCertFile))
	fmt.Fprintf(stdout, "kube-exec: hint: postern kube config --cluster %s --server %s  then  kubectl --context %s get pods\n",
		f.cluster, server, client.ContextName(f.cluster))
	local := &client.Local{Token: token, Dial: dial, Logger: f.logger(stderr)}
	h := local.Handler()
	ictx, stop := signal.NotifyContext(sctx, os.Interrupt)
	defer stop()
	if *idleExit > 0 {
		go exitWhenIdle(ictx, local, *idleExit, stop, stdout)
	}
	err = client.Serve(ictx, ln, cert, h, 2*time.Second)
	if rerr := b.Revoked(); rerr != nil {
		return revokedError(rerr)
	}
	return err
}

// exitWhenIdle calls stop once local has been idle for d.
func exitWhenIdle(ctx context.Context, local *client.Local, d time.Duration, stop func(), stdout io.Writer) {
	tick := time.NewTicker(min(max(d/8, 10*time.Millisecond), time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if local.Idle() >= d {
				fmt.Fprintf(stdout, "kube-exec: no request for %s: exiting\n", d)
				stop()
				return
			}
		}
	}
}

// proxyToReuse returns the running kube-exec proxy for the cluster, or
// with persist > 0 one it started, when the person logged in may use it;
// ok is false when kube-exec is to connect on its own. The login is
// checked once, before a proxy is used or started: commands stop with the
// login even though a proxy's connection does not, and a missing login is
// reported as usual rather than in a proxy's log.
func (f *clientFlags) proxyToReuse(persist time.Duration, stderr io.Writer) (st client.ProxyState, ok bool, err error) {
	st, ok = client.RunningProxy(posternHome(), f.cluster, f.bastion)
	if !ok && persist == 0 {
		return st, false, nil
	}
	b, err := f.prepare(func() {})
	if err != nil {
		return st, false, err
	}
	b.Close()
	if !ok {
		if st, ok = f.startProxy(persist, stderr); !ok {
			return st, false, nil
		}
	}
	if f.person != st.Person {
		return st, false, climsg.WithHint(fmt.Errorf("the kube-exec proxy for cluster %s (pid %d) runs as %s, not as %s, who is logged in", f.cluster, st.PID, st.Person, f.person),
			"stop that proxy, or pass --reuse=false")
	}
	return st, true, nil
}

// startProxy starts `kube-exec proxy --idle-exit persist` for the cluster
// in the background (its own session, output in
// ~/.postern/kube-proxy-CLUSTER.log) and waits until it serves. It returns
// false when it could not: kube-exec then connects on its own, and says
// why if that fails too.
func (f *clientFlags) startProxy(persist time.Duration, stderr io.Writer) (client.ProxyState, bool) {
	fail := func(err error) (client.ProxyState, bool) {
		if f.verbose {
			fmt.Fprintf(stderr, "kube-exec: could not start a background kube-exec proxy (%v); connecting on my own\n", err)
		}
		return client.ProxyState{}, false
	}
	self, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(posternHome(), 0o700); err != nil {
		return fail(err)
	}
	args := []string{"proxy", "--cluster", f.cluster, "--known-hosts", f.knownHosts, "--idle-exit", persist.String()}
	if f.bastion != "" {
		args = append(args, "--bastion", f.bastion)
	}
	logPath := filepath.Join(posternHome(), "kube-proxy-"+f.cluster+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fail(err)
	}
	defer logf.Close()
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // not ended with the terminal
	if err := cmd.Start(); err != nil {
		return fail(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.After(20 * time.Second)
	for {
		if st, ok := client.RunningProxy(posternHome(), f.cluster, f.bastion); ok && st.PID == cmd.Process.Pid {
			if f.verbose {
				fmt.Fprintf(stderr, "kube-exec: started a kube-exec proxy for %s (pid %d, exits after %s without requests; log %s)\n", f.cluster, st.PID, persist, logPath)
			}
			return st, true
		}
		select {
		case <-exited:
			return fail(fmt.Errorf("it exited; see %s", logPath))
		case <-deadline:
			_ = cmd.Process.Kill()
			return fail(fmt.Errorf("not serving after 20 s; see %s", logPath))
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// persistDefault is --persist's default, from POSTERN_KUBE_PERSIST.
func persistDefault() (time.Duration, error) {
	v := os.Getenv("POSTERN_KUBE_PERSIST")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("POSTERN_KUBE_PERSIST=%q: not a duration such as 10m", v)
	}
	return d, nil
}

// revokedError is what kube-exec says when the bastion revoked the
// person's access while it ran.
func revokedError(err error) error {
	return climsg.WithHint(err, "an administrator revoked your postern certificate; ask them before you log in again")
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}
