// Command postern-kube-forwarder is the in-VPC end of kube-exec: it dials
// out to every configured bastion, serves the kube channels they hand it,
// and proxies each request to the API server as the person (impersonation),
// writing one audit event per request. `kube-exec forwarder` runs it.
//
// It is its own binary so that kube-exec, which every kubectl command
// through postern starts, does not load the forwarder's dependencies
// (client-go's transport, the S3 client of the audit shipper, Prometheus).
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

	"github.com/postern-dev/postern/internal/auditlog"
	"github.com/postern-dev/postern/internal/climsg"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/version"
	"github.com/postern-dev/postern/kube-exec/forwarder"
)

const usage = `postern-kube-forwarder carries kubectl requests from postern bastions to a cluster.
It proxies each request to the API server as the person who made it
(impersonation) and writes one audit event per request. It runs inside the
cluster's network and dials out to the bastions: the cluster needs no inbound
port. kube-exec forwarder runs this binary.

Usage:
  postern-kube-forwarder --config FILE [--log-level LEVEL] [--log-format text|json]
  postern-kube-forwarder --version

Flags:
  --config FILE         configuration with [kube] and [kube.forwarder] (docs/config.md)
  --log-level LEVEL     debug, info, warn or error (default info)
  --log-format FORMAT   text or json (default text)

Signals: SIGINT and SIGTERM stop it (tunnels are closed, the audit log is
flushed); SIGHUP is logged and ignored (restart to apply a changed config).
Documentation: docs/kubernetes.md in the source tree.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	default:
		climsg.Print(os.Stderr, "postern-kube-forwarder", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("postern-kube-forwarder", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	cfgPath := fs.String("config", "", "configuration `FILE` ([kube] and [kube.forwarder])")
	logLevel := fs.String("log-level", "info", "log `LEVEL`: debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "log `FORMAT`: text or json")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintln(stdout, "postern-kube-forwarder", version.Version)
		return nil
	}
	if fs.NArg() > 0 {
		return climsg.WithHint(fmt.Errorf("unexpected argument %q", fs.Arg(0)), "postern-kube-forwarder --config FILE")
	}
	log, err := climsg.NewLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return err
	}
	if *cfgPath == "" {
		return climsg.WithHint(errors.New("no configuration file given"), "postern-kube-forwarder --config /etc/postern/kube-forwarder.toml")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if err := cfg.CheckForwarder(); err != nil {
		return err
	}
	f := cfg.Kube.Forwarder
	if f.AuditLog != "-" {
		if err := os.MkdirAll(f.DataDir, 0o700); err != nil {
			return fmt.Errorf("create data dir: %w", err)
		}
	}
	aw, err := auditlog.Open(ctx, cfg, auditlog.Part{Writer: "kube-forwarder", WriterID: f.ID, Path: f.AuditLog, DataDir: f.DataDir, Serve: true},
		auditlog.Options{Logger: log})
	if err != nil {
		return err
	}
	defer aw.Close()
	ictx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	// SIGHUP (systemctl reload, a terminal closing) would otherwise end the
	// process as if cleanly, and Restart=on-failure would not bring it back.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				log.Warn("SIGHUP: the forwarder has nothing to reload; restart it to apply a changed configuration")
			case <-ictx.Done():
				return
			}
		}
	}()
	return forwarder.Run(ictx, cfg, forwarder.Options{Logger: log, Audit: aw})
}
