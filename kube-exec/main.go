// Command kube-exec carries kubectl (or any Kubernetes client) to a
// cluster through the postern bastion, as the person logged in with
// postern. `kube-exec forwarder` runs postern-kube-forwarder, the in-VPC
// end that dials out to the bastions and talks to the API server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/postern-dev/postern/internal/climsg"
	"github.com/postern-dev/postern/internal/version"
)

const usage = `kube-exec runs kubectl (or any Kubernetes client) against a cluster through
the postern bastion, as you: no Kubernetes credentials on your machine.

Usage:
  kube-exec [--cluster NAME] -- COMMAND [ARGS...]   e.g. kube-exec --cluster prod -- kubectl get pods
  kube-exec proxy --cluster NAME [--listen ADDR]    a long-running local endpoint (see postern kube config),
                                                    which kube-exec -- COMMAND also uses while it runs
  kube-exec forwarder --config FILE                 the in-VPC forwarder: runs postern-kube-forwarder
                                                    (postern-kube-forwarder --help)
  kube-exec --version

Client flags (kube-exec and kube-exec proxy):
  --cluster NAME       the cluster (default $POSTERN_KUBE_CLUSTER)
  --bastion HOST:PORT  the bastion (default $POSTERN_BASTION, else the one the signer publishes)
  --known-hosts FILE   known_hosts certifying the bastion (default ~/.postern/known_hosts)
  -v                   log each failed request to stderr

kube-exec -- COMMAND sends the command's requests through a kube-exec proxy
that you run for the same cluster (and bastion, when --bastion is given),
if there is one: no SSH connection of its own, so each command starts
sooner. --reuse=false (or POSTERN_KUBE_REUSE=no) makes its own connection.
--persist DURATION (or POSTERN_KUBE_PERSIST=10m) starts such a proxy in the
background when none runs, which exits after DURATION without requests (as
OpenSSH's ControlPersist); its output goes to ~/.postern/kube-proxy-CLUSTER.log.

Log in first with postern login; postern config writes the known_hosts file.
Documentation: docs/kubernetes.md in the source tree.
`

// exitError carries an exit status without a message.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	err := cli(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var code exitError
	switch {
	case err == nil:
	case errors.As(err, &code):
		os.Exit(int(code))
	case errors.Is(err, flag.ErrHelp):
	default:
		climsg.Print(os.Stderr, "kube-exec", err)
		os.Exit(1)
	}
}

func cli(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "forwarder":
			return cmdForwarder(args[1:])
		case "proxy":
			return cmdProxy(ctx, args[1:], stdout, stderr)
		case "--version", "-version", "version":
			fmt.Fprintln(stdout, "kube-exec", version.Version)
			return nil
		case "help", "--help", "-help", "-h":
			fmt.Fprint(stdout, usage)
			return nil
		}
	}
	return cmdExec(ctx, args, stdout, stderr)
}
