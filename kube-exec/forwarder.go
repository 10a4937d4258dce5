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
	"github.com/postern-dev/postern/kube-exec/forwarder"
)

func cmdForwarder(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kube-exec forwarder", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration `FILE` ([kube] and [kube.forwarder])")
	logLevel := fs.String("log-level", "info", "log `LEVEL`: debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "log `FORMAT`: text or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := climsg.NewLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return err
	}
	if *cfgPath == "" {
		return climsg.WithHint(errors.New("no configuration file given"), "kube-exec forwarder --config /etc/postern/kube-forwarder.toml")
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
