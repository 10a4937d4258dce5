// Command postern-bastion is postern's SSH bastion: the sole entry point
// for ssh -J. It accepts only user certificates from the user CA, authorises
// every hop by role, forwards to nodes and writes the audit log.
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
	"runtime/debug"
	"syscall"

	"github.com/postern-dev/postern/bastion/server"
	"github.com/postern-dev/postern/internal/auditlog"
	"github.com/postern-dev/postern/internal/climsg"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/version"
)

const usage = `postern-bastion is the SSH entry point: ssh -J BASTION NODE.

Usage:
  postern-bastion --config FILE                serve (the [bastion] section and the roles)
  postern-bastion check-config --config FILE   validate the configuration, keys and certificate
  postern-bastion audit verify|search|pubkey …  check and search audit logs (audit help)
  postern-bastion --version

Flags:
  --config FILE      the shared postern configuration file
  --log-level LEVEL  debug, info, warn or error (default info)
  --log-format FMT   text or json (default text)

Signals: SIGTERM/SIGINT shut down gracefully; SIGHUP reloads the roles and
node rules from the configuration file (docs/operating.md).

Documentation: docs/bastion.md and docs/roles.md in the source tree.
`

func main() {
	if err := cli(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		climsg.Print(os.Stderr, "postern-bastion", err)
		os.Exit(1)
	}
}

func cli(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "help" {
		args[0] = "--help"
	}
	if len(args) > 0 && args[0] == "audit" {
		return auditCmd(args[1:], stdout, stderr)
	}
	check := len(args) > 0 && args[0] == "check-config"
	if check {
		args = args[1:]
	} else if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		return climsg.WithHint(fmt.Errorf("unknown command %q", args[0]), "run postern-bastion --help")
	}
	fs := flag.NewFlagSet("postern-bastion", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, below
	fs.Usage = func() {}
	cfgPath := fs.String("config", "", "configuration `FILE`")
	showVersion := fs.Bool("version", false, "print the version and exit")
	logLevel := fs.String("log-level", "info", "log `LEVEL`")
	logFormat := fs.String("log-format", "text", "log `FORMAT`: text or json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return nil
		}
		return climsg.WithHint(err, "run postern-bastion --help")
	}
	if *showVersion {
		fmt.Fprintln(stdout, "postern-bastion", version.Version)
		return nil
	}
	if *cfgPath == "" {
		return climsg.WithHint(errors.New("no configuration file given"), "postern-bastion --config /etc/postern/postern.toml")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if check {
		return server.CheckConfig(cfg, stdout)
	}
	log, err := climsg.NewLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, cfg, *cfgPath, log)
}

// tuneGC trades memory for CPU: the SSH library allocates a slice per
// packet, and at the default GOGC the collector took about an eighth of the
// bastion's CPU in the benchmarks (docs/benchmarks.md). GOGC=400 cut CPU
// per GiB by a fifth. A soft memory limit keeps the larger heap bounded.
// GOGC and GOMEMLIMIT in the environment win. releaseWhenIdle (idlegc.go)
// gives the larger heap back once the bastion goes quiet.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(2 << 30)
	}
}

func run(ctx context.Context, cfg *config.Config, cfgPath string, log *slog.Logger) error {
	tuneGC()
	go releaseWhenIdle(ctx, idleGCEvery, debug.FreeOSMemory)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	b := cfg.Bastion
	if err := os.MkdirAll(b.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	aw, err := auditlog.Open(ctx, cfg, auditlog.Part{Writer: "bastion", WriterID: b.ID, Path: b.AuditLog, DataDir: b.DataDir, Serve: true},
		auditlog.Options{Logger: log})
	if err != nil {
		return err
	}
	defer aw.Close()
	srv, err := server.New(cfg, server.Options{Logger: log, Audit: aw, AuditStats: aw.Stats})
	if err != nil {
		return climsg.WithHint(err, "check [bastion] user_ca, host_key and host_cert; postern-bastion check-config --config FILE")
	}
	ln, err := net.Listen("tcp", b.Listen)
	if err != nil {
		return climsg.WithHint(fmt.Errorf("listen: %w", err), "change [bastion] listen or stop what uses the port")
	}
	log.Info("bastion listening", "addr", ln.Addr().String(), "id", b.ID, "version", version.Version)
	go config.ReloadOn(ctx, hup, cfgPath, srv.Reload, log)
	return srv.Serve(ctx, ln)
}
