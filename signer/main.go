// Command postern-signer is postern's certificate authority: it signs
// people in through the company's OIDC provider and issues short-lived
// OpenSSH user certificates, and host certificates for bastions and nodes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/auditlog"
	"github.com/postern-dev/postern/internal/climsg"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/version"
	"github.com/postern-dev/postern/signer/ca"
	"github.com/postern-dev/postern/signer/revocation"
	"github.com/postern-dev/postern/signer/server"
)

const usage = `postern-signer issues short-lived OpenSSH certificates after an OIDC login.

Usage:
  postern-signer --config FILE            serve the HTTPS API (see [signer] in the config)
  postern-signer init --dir DIR           create the user and host CA keys and a starter DIR/postern.toml
  postern-signer host-cert --config FILE --host NAME[,IP...] --pubkey FILE
                                          sign a host key (writes NAME-cert.pub next to FILE)
  postern-signer check-config --config FILE
                                          validate the configuration and exit
  postern-signer revoke --config FILE (--key-id ID | --serial N | --key FILE) --reason TEXT [--undo]
                                          revoke a person, a certificate or a key (or undo it)
  postern-signer revoke --config FILE --list
                                          print the revocation list
  postern-signer krl --config FILE --out FILE
                                          write the OpenSSH KRL for sshd's RevokedKeys
  postern-signer --version

Run "postern-signer COMMAND --help" for a command's flags.
Signals: SIGTERM/SIGINT stop the server; SIGHUP reloads the [[role]] entries
from the configuration file (a file that does not validate is refused).
Documentation: docs/config.md, docs/login.md, docs/revocation.md in the source tree.
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		climsg.Print(os.Stderr, "postern-signer", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "init":
			return cmdInit(args[1:], stdout)
		case "host-cert":
			return cmdHostCert(args[1:], stdout)
		case "check-config":
			return cmdCheck(args[1:], stdout)
		case "revoke":
			return cmdRevoke(args[1:], stdout, stderr)
		case "krl":
			return cmdKRL(args[1:], stdout, stderr)
		case "serve":
			args = args[1:]
		case "help":
			fmt.Fprint(stdout, usage)
			return nil
		default:
			return climsg.WithHint(fmt.Errorf("unknown command %q", args[0]), "run postern-signer --help")
		}
	}
	fs := flag.NewFlagSet("postern-signer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	cfgPath := fs.String("config", "", "configuration `FILE`")
	showVersion := fs.Bool("version", false, "print the version and exit")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *showVersion {
		fmt.Fprintln(stdout, "postern-signer", version.Version)
		return nil
	}
	if *cfgPath == "" {
		return climsg.WithHint(errors.New("no configuration file given"), "run postern-signer init --dir DIR to create one, then postern-signer --config DIR/postern.toml")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	logger, err := climsg.NewLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return err
	}
	aw, err := openAudit(cfg, true, logger)
	if err != nil {
		return err
	}
	defer aw.Close()
	revs, err := revocation.Open(context.Background(), cfg, logger)
	if err != nil {
		return err
	}
	if l, err := revs.Load(context.Background()); err != nil {
		logger.Error("revocation list unreadable: no certificates are issued until it can be read", "store", cfg.Signer.RevocationStore, "err", err)
	} else {
		logger.Info("revocation list loaded", "store", cfg.Signer.RevocationStore, "generation", l.Generation, "revocations", len(l.Entries))
	}
	srv, err := server.New(cfg, server.Options{Logger: logger, Audit: aw, AuditStats: aw.Stats, Revocations: revs})
	if err != nil {
		return climsg.WithHint(err, "run postern-signer init --dir DIR to create the CA keys")
	}
	tuneGC()
	if cfg.Signer.OIDC.Issuer == "" {
		logger.Warn("no [signer.oidc] issuer configured: logins are disabled")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go config.ReloadOn(ctx, hup, *cfgPath, srv.Reload, logger)
	return srv.Run(ctx)
}

func cmdInit(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("postern-signer init", flag.ContinueOnError)
	dir := fs.String("dir", "", "data `DIR` for keys, the audit log and the starter config (required)")
	keyType := fs.String("key-type", "ed25519", "CA key type: ed25519, ecdsa or rsa")
	issuer := fs.String("issuer", "", "OIDC issuer `URL` to write into the starter config")
	listen := fs.String("listen", config.DefaultSignerListen, "listen `ADDR` to write into the starter config")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *dir == "" {
		return climsg.WithHint(errors.New("--dir is required"), "postern-signer init --dir /var/lib/postern/signer")
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	for _, k := range []struct{ file, comment string }{{"user_ca", "postern user CA"}, {"host_ca", "postern host CA"}} {
		path := filepath.Join(abs, k.file)
		err := ca.Generate(path, *keyType, k.comment)
		switch {
		case errors.Is(err, ca.ErrExists):
			fmt.Fprintf(stdout, "kept existing %s\n", path)
		case err != nil:
			return err
		default:
			fmt.Fprintf(stdout, "created %s (and %s.pub)\n", path, path)
		}
	}
	cfgPath := filepath.Join(abs, "postern.toml")
	f, err := os.OpenFile(cfgPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		fmt.Fprintf(stdout, "kept existing %s\n", cfgPath)
		return nil
	}
	if err != nil {
		return fmt.Errorf("create config: %w", err)
	}
	defer f.Close()
	if _, err := fmt.Fprint(f, starterConfig(abs, *listen, *issuer)); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	fmt.Fprintf(stdout, "created %s\nnext: edit [signer.oidc] and the roles, then run postern-signer --config %s\n", cfgPath, cfgPath)
	return nil
}

func starterConfig(dir, listen, issuer string) string {
	iss := `# issuer = "https://idp.example.com"`
	if issuer != "" {
		iss = fmt.Sprintf("issuer = %q", issuer)
	}
	return fmt.Sprintf(`# postern configuration: one file for the signer, the bastion and the roles.
# Every key and its default: docs/config.md.

[signer]
listen = %q
data_dir = %q
# url = "https://signer.example.com"   # public URL; default https://<listen>
# tls_cert = "/etc/postern/tls.crt"      # empty: a self-signed development certificate
# tls_key = "/etc/postern/tls.key"
# admin_token_file = "/etc/postern/admin-tokens"   # enables POST /v1/revoke (docs/revocation.md)
# revocation_store = "s3"   # share the revocation list with other signers through [storage]

[signer.oidc]
%s
client_id = "postern"
client_secret_file = %q
# username_claim = "email"
# groups_claim = "groups"

[bastion]
# listen = "127.0.0.1:2222"
# jump_hosts = ["*.internal"]

# A role maps IdP groups to Unix logins and nodes.
[[role]]
name = "infra"
groups = ["infra"]
logins = ["ubuntu"]
nodes = ["*.internal"]
max_ttl = "8h"
extensions = ["permit-pty", "permit-port-forwarding"]
`, listen, dir, iss, filepath.Join(dir, "oidc-secret"))
}

func cmdHostCert(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("postern-signer host-cert", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration `FILE` (its host_ca_key signs)")
	hosts := fs.String("host", "", "comma-separated host `NAMES` and IPs to certify (principals)")
	pubPath := fs.String("pubkey", "", "host public key `FILE` (e.g. /etc/ssh/ssh_host_ed25519_key.pub)")
	out := fs.String("out", "", "write the certificate to `FILE` (default: FILE-cert.pub beside the key; - for stdout)")
	ttl := fs.String("ttl", "", "validity, e.g. 720h or 30d (default: signer.host_cert_ttl)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *cfgPath == "" || *hosts == "" || *pubPath == "" {
		return climsg.WithHint(errors.New("--config, --host and --pubkey are required"), "postern-signer host-cert --config postern.toml --host node1,10.0.0.5 --pubkey /etc/ssh/ssh_host_ed25519_key.pub")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	var d time.Duration
	if *ttl != "" {
		if d, err = config.ParseDuration(*ttl); err != nil {
			return err
		}
	}
	b, err := os.ReadFile(*pubPath)
	if err != nil {
		return fmt.Errorf("read public key: %w", err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return fmt.Errorf("parse public key %s: %w", *pubPath, err)
	}
	var names []string
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			names = append(names, h)
		}
	}
	cert, err := server.SignHostKey(cfg, pub, names, d)
	if err != nil {
		return err
	}
	aw, err := openAudit(cfg, false, nil)
	if err != nil {
		return err
	}
	defer aw.Close()
	if err := aw.Emit(context.Background(), audit.Event{Event: audit.HostCertIssued, Principals: names, Serial: cert.Serial,
		KeyFP: ssh.FingerprintSHA256(pub), Method: "host-cert command"}); err != nil {
		return err
	}
	data := ssh.MarshalAuthorizedKey(cert)
	dest := *out
	if dest == "" {
		dest = strings.TrimSuffix(*pubPath, ".pub") + "-cert.pub"
	}
	if dest == "-" {
		_, err = stdout.Write(data)
		return err
	}
	if err := os.WriteFile(dest, data, 0o644); err != nil {
		return fmt.Errorf("write certificate: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s (serial %d, principals %s)\n", dest, cert.Serial, strings.Join(names, ","))
	return nil
}

func cmdCheck(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("postern-signer check-config", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration `FILE`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *cfgPath == "" {
		return errors.New("--config is required")
	}
	if _, err := config.Load(*cfgPath); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok\n", *cfgPath)
	return nil
}

// openAudit opens the signer's audit log as [audit] configures it; serve is
// set for the server (stdout mirror, S3 shipping in the background), not
// for one-shot commands.
func openAudit(cfg *config.Config, serve bool, log *slog.Logger) (*auditlog.Log, error) {
	return auditlog.Open(context.Background(), cfg, auditlog.Part{Writer: "signer", WriterID: cfg.Signer.ID, Path: cfg.Signer.AuditLog, DataDir: cfg.Signer.DataDir, Serve: serve},
		auditlog.Options{Logger: log})
}
