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
	"os/signal"
	"path/filepath"
	"sync"

	"golang.org/x/crypto/ssh/agent"

	"github.com/postern-dev/postern/internal/climsg"
	"github.com/postern-dev/postern/internal/kubeproto"
	"github.com/postern-dev/postern/kube-exec/client"
)

// clientFlags are the flags of kube-exec and kube-exec proxy.
type clientFlags struct {
	cluster, bastion, knownHosts string
	verbose                      bool
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.cluster, "cluster", os.Getenv("POSTERN_KUBE_CLUSTER"), "cluster `NAME`")
	fs.StringVar(&f.bastion, "bastion", os.Getenv("POSTERN_BASTION"), "bastion `HOST:PORT`")
	fs.StringVar(&f.knownHosts, "known-hosts", "", "known_hosts `FILE` (default ~/.postern/known_hosts)")
	fs.BoolVar(&f.verbose, "v", false, "log each failed request to stderr")
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

// connect checks the flags, connects to the bastion and opens a first
// channel to the cluster, so that refusals are reported before anything
// runs. It returns the endpoint's dial function (which hands out the
// first channel first). onRevoked is called when the bastion says the
// person's access was revoked (client.Bastion.OnRevoked).
func (f *clientFlags) connect(ctx context.Context, onRevoked func()) (*client.Bastion, func(context.Context) (net.Conn, error), error) {
	if f.cluster == "" {
		return nil, nil, climsg.WithHint(errors.New("no cluster given"), "kube-exec --cluster NAME -- kubectl ... (or set POSTERN_KUBE_CLUSTER)")
	}
	if err := kubeproto.ValidCluster(f.cluster); err != nil {
		return nil, nil, err
	}
	home := posternHome()
	if f.knownHosts == "" {
		f.knownHosts = filepath.Join(home, "known_hosts")
	}
	if f.bastion == "" {
		addr, err := client.BastionFromSigner(ctx, filepath.Join(home, "state.json"))
		if err != nil {
			return nil, nil, climsg.WithHint(err, "pass --bastion HOST:PORT, or run postern login and postern config first")
		}
		f.bastion = addr
	}
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, nil, climsg.WithHint(client.ErrNotLoggedIn, "start ssh-agent and run postern login")
	}
	ac, err := net.Dial("unix", sock)
	if err != nil {
		return nil, nil, climsg.WithHint(fmt.Errorf("connect to ssh-agent: %w", err), "check SSH_AUTH_SOCK, then postern login")
	}
	b := &client.Bastion{Addr: f.bastion, KnownHosts: f.knownHosts, Agent: agent.NewClient(ac), OnRevoked: onRevoked}
	first, err := b.Dial(ctx, f.cluster)
	if err != nil {
		ac.Close()
		switch {
		case errors.Is(err, client.ErrNotLoggedIn), errors.Is(err, client.ErrExpired):
			return nil, nil, climsg.WithHint(err, "run postern login")
		case errors.Is(err, client.ErrRefused):
			return nil, nil, climsg.WithHint(err, "ask the bastion what you may reach: ssh "+f.bastion+" whoami")
		}
		return nil, nil, err
	}
	var mu sync.Mutex
	dial := func(ctx context.Context) (net.Conn, error) {
		mu.Lock()
		c := first
		first = nil
		mu.Unlock()
		if c != nil {
			return c, nil
		}
		return b.Dial(ctx, f.cluster)
	}
	return b, dial, nil
}

func (f *clientFlags) logger(stderr io.Writer) *slog.Logger {
	level := slog.LevelError + 1
	if f.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

// listenLoopback listens on a port derived from the cluster name, so that
// kubectl's discovery cache (kept per server address) is reused from run
// to run; on any other free port when that one is taken.
func listenLoopback(cluster string) (net.Listener, error) {
	port := kubeproto.ProxyPort(cluster)
	if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
		return ln, nil
	}
	return net.Listen("tcp", "127.0.0.1:0")
}

func cmdExec(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kube-exec", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	var f clientFlags
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cmdArgs := fs.Args()
	if len(cmdArgs) == 0 {
		return climsg.WithHint(errors.New("no command given"), "kube-exec --cluster NAME -- kubectl get pods")
	}
	// A revocation ends the command (kubectl's watch included) at once.
	rctx, revoked := context.WithCancel(ctx)
	defer revoked()
	b, dial, err := f.connect(ctx, revoked)
	if err != nil {
		return err
	}
	defer b.Close()
	ln, err := listenLoopback(f.cluster)
	if err != nil {
		return fmt.Errorf("listen on loopback: %w", err)
	}
	token := client.NewToken()
	cert, caPEM, err := client.LoopbackTLS("")
	if err != nil {
		return err
	}
	local := &client.Local{Token: token, Dial: dial, Logger: f.logger(stderr)}
	sctx, stopServe := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { _ = client.Serve(sctx, ln, cert, local.Handler()); close(served) }()
	defer func() { stopServe(); <-served }()

	// Ctrl-C goes to the whole foreground process group: let the child
	// decide, and keep serving until it exits.
	signal.Ignore(os.Interrupt)
	code, err := client.RunCommand(rctx, client.Command{
		Args: cmdArgs, Env: os.Environ(), Stdin: os.Stdin, Stdout: stdout, Stderr: stderr,
	}, f.cluster, "https://"+ln.Addr().String(), caPEM, token, client.CurrentNamespace(os.Getenv("KUBECONFIG")))
	if rerr := b.Revoked(); rerr != nil {
		return revokedError(rerr)
	}
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	sctx, revoked := context.WithCancel(ctx)
	defer revoked()
	b, dial, err := f.connect(ctx, revoked)
	if err != nil {
		return err
	}
	defer b.Close()
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
	fmt.Fprintf(stdout, "kube-exec: serving cluster %s at %s (token in %s, certificate %s)\n", f.cluster, server,
		filepath.Join(posternHome(), client.ProxyTokenFile), filepath.Join(posternHome(), client.ProxyCertFile))
	fmt.Fprintf(stdout, "kube-exec: hint: postern kube config --cluster %s --server %s  then  kubectl --context %s get pods\n",
		f.cluster, server, client.ContextName(f.cluster))
	local := &client.Local{Token: token, Dial: dial, Logger: f.logger(stderr)}
	ictx, stop := signal.NotifyContext(sctx, os.Interrupt)
	defer stop()
	err = client.Serve(ictx, ln, cert, local.Handler())
	if rerr := b.Revoked(); rerr != nil {
		return revokedError(rerr)
	}
	return err
}

// revokedError is what kube-exec says when the bastion revoked the
// person's access while it ran.
func revokedError(err error) error {
	return climsg.WithHint(err, "an administrator revoked your postern certificate; ask them before you log in again")
}
