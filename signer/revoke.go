package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/api"
	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/climsg"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/signer/ca"
	"github.com/postern-dev/postern/signer/revocation"
	"github.com/postern-dev/postern/signer/server"
)

func cmdRevoke(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("postern-signer revoke", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration `FILE`")
	keyID := fs.String("key-id", "", "revoke the person: every certificate with this key `ID`, now and later")
	serial := fs.Uint64("serial", 0, "revoke one certificate of the user CA by serial `N`")
	keyFile := fs.String("key", "", "revoke a plain public key `FILE` and every certificate for it")
	reason := fs.String("reason", "", "why (required; kept in the list and the audit log)")
	undo := fs.Bool("undo", false, "remove the revocation instead (e.g. a person who returns)")
	list := fs.Bool("list", false, "print the revocation list and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *cfgPath == "" {
		return climsg.WithHint(errors.New("--config is required"), "postern-signer revoke --config /etc/postern/postern.toml --key-id alice@example.com --reason \"left the company\"")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	ctx := context.Background()
	store, err := revocation.Open(ctx, cfg, cliLogger(stderr))
	if err != nil {
		return err
	}
	if *list {
		l, err := loadForReading(ctx, store, stderr)
		if err != nil {
			return err
		}
		return printList(l, stdout)
	}
	targets := 0
	for _, set := range []bool{*keyID != "", *serial != 0, *keyFile != ""} {
		if set {
			targets++
		}
	}
	if targets != 1 {
		return climsg.WithHint(errors.New("name exactly one of --key-id, --serial and --key"), "postern-signer revoke --config FILE --key-id alice@example.com --reason \"left the company\"")
	}
	if strings.TrimSpace(*reason) == "" {
		return climsg.WithHint(errors.New("--reason is required"), "say why, e.g. --reason \"left the company\"; it goes to the audit log")
	}
	var e revocation.Entry
	switch {
	case *keyID != "":
		if err := revocation.CheckKeyID(*keyID); err != nil {
			return err
		}
		caPub, err := userCAPublicKey(cfg)
		if err != nil {
			return err
		}
		e = revocation.NewKeyID(caPub, *keyID)
	case *serial != 0:
		caPub, err := userCAPublicKey(cfg)
		if err != nil {
			return err
		}
		e = revocation.NewSerial(caPub, *serial)
	default:
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return fmt.Errorf("read public key: %w", err)
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
		if err != nil {
			return fmt.Errorf("parse public key %s: %w", *keyFile, err)
		}
		if c, ok := pub.(*ssh.Certificate); ok {
			return climsg.WithHint(fmt.Errorf("%s is a certificate, not a plain key", *keyFile),
				fmt.Sprintf("revoke this certificate with --serial %d, its person with --key-id %q, or its key with the plain .pub file", c.Serial, c.KeyId))
		}
		if err := notOwnCA(cfg, pub); err != nil {
			return err
		}
		e = revocation.NewKey(pub)
	}
	host, _ := os.Hostname()
	aw, err := openAudit(cfg, false, nil)
	if err != nil {
		return err
	}
	defer aw.Close()

	now := time.Now()
	e.Reason, e.By, e.Time = strings.TrimSpace(*reason), operator(host), now.UTC().Truncate(time.Second)
	result, l, changed, err := revocation.Apply(ctx, store, e, *undo, now)
	if errors.Is(err, revocation.ErrNotRevoked) {
		return climsg.WithHint(err, "postern-signer revoke --config FILE --list shows what is revoked")
	}
	if err != nil {
		return err
	}
	issued := issuedCerts(cfg.Signer.AuditLog, result, now)
	if changed {
		ev := server.EventFor(result, *undo)
		ev.Method, ev.Reason = e.By, e.Reason
		if ev.Person == "" && len(issued) > 0 {
			ev.Person = issued[0].Person
		}
		if err := aw.Emit(ctx, ev); err != nil {
			return fmt.Errorf("the revocation list was changed (generation %d) but: %w", l.Generation, err)
		}
	}
	switch {
	case *undo:
		fmt.Fprintf(stdout, "removed the revocation of %s (generation %d)\n", result.Target(), l.Generation)
	case !changed:
		fmt.Fprintf(stdout, "%s was already revoked on %s (generation %d unchanged)\n", result.Target(), result.Time.Format(time.RFC3339), l.Generation)
	default:
		fmt.Fprintf(stdout, "revoked %s (generation %d)\n", result.Target(), l.Generation)
		for _, c := range issued {
			fmt.Fprintf(stdout, "  still-valid certificate: serial %d of %s, valid until %s\n", c.Serial, c.Person, c.ValidBefore.Format(time.RFC3339))
		}
		if cfg.Signer.RevocationStore == "s3" {
			fmt.Fprintf(stdout, "every signer sharing the list serves it within seconds (GET %s); nodes refuse it when their KRL is refreshed\n", api.PathKRL)
		} else {
			fmt.Fprintf(stdout, "the running signer serves it at once (GET %s); nodes refuse it when their KRL is refreshed\n", api.PathKRL)
		}
	}
	return nil
}

// userCAPublicKey reads the user CA's .pub file, or derives it from the key.
func userCAPublicKey(cfg *config.Config) (ssh.PublicKey, error) {
	if b, err := os.ReadFile(cfg.Signer.UserCAKey + ".pub"); err == nil {
		pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
		if err != nil {
			return nil, fmt.Errorf("parse %s.pub: %w", cfg.Signer.UserCAKey, err)
		}
		return pub, nil
	}
	a, err := ca.Load(cfg.Signer.UserCAKey)
	if err != nil {
		return nil, fmt.Errorf("load user CA: %w", err)
	}
	return a.PublicKey(), nil
}

// notOwnCA refuses to revoke the signer's own CA keys: that would refuse
// every certificate at once. Rotating a CA is a separate procedure.
func notOwnCA(cfg *config.Config, pub ssh.PublicKey) error {
	for _, path := range []string{cfg.Signer.UserCAKey + ".pub", cfg.Signer.HostCAKey + ".pub"} {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		if ca, _, _, _, err := ssh.ParseAuthorizedKey(b); err == nil && string(ca.Marshal()) == string(pub.Marshal()) {
			return climsg.WithHint(fmt.Errorf("%s is the signer's own CA key (%s): revoking it would refuse every certificate", ssh.FingerprintSHA256(pub), path),
				"to replace a compromised CA, create a new one and re-trust it on nodes (TrustedUserCAKeys); revoke people with --key-id")
		}
	}
	return nil
}

// operator names who runs the command, for the list and the audit log.
func operator(host string) string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	if su := os.Getenv("SUDO_USER"); su != "" && su != name {
		name = su + " (as " + name + ")"
	}
	return "revoke command by " + name + " on " + host
}

// issuedCerts finds certificates in the local audit log that the entry
// revokes and that are still valid. Best effort: an unreadable log gives
// nothing.
func issuedCerts(path string, e revocation.Entry, now time.Time) []audit.Event {
	if path == "-" {
		return nil
	}
	evs, err := audit.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []audit.Event
	for _, ev := range audit.Filter(evs, audit.CertIssued) {
		match := (e.Kind == api.RevokeKeyID && ev.Person == e.KeyID) ||
			(e.Kind == api.RevokeSerial && ev.Serial == e.Serial) ||
			(e.Kind == api.RevokeKey && ev.KeyFP == e.KeyFP)
		if match && ev.ValidBefore != nil && ev.ValidBefore.After(now) {
			out = append(out, ev)
		}
	}
	return out
}

// loadForReading reads the list for --list and krl. A shared list that
// cannot be refreshed is shown as last read, with a warning.
func loadForReading(ctx context.Context, store revocation.Store, stderr io.Writer) (*revocation.List, error) {
	if r, ok := store.(interface{ Refresh(context.Context) error }); ok {
		if err := r.Refresh(ctx); err != nil {
			l, lerr := store.Load(ctx)
			if lerr != nil {
				return nil, lerr
			}
			fmt.Fprintf(stderr, "warning: %v\nwarning: showing the last list this host read (generation %d); newer changes may exist\n", err, l.Generation)
			return l, nil
		}
	}
	return store.Load(ctx)
}

// cliLogger logs warnings and errors of the stores for the commands.
func cliLogger(stderr io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func printList(l *revocation.List, stdout io.Writer) error {
	fmt.Fprintf(stdout, "generation %d, %d revocations", l.Generation, len(l.Entries))
	if !l.Updated.IsZero() {
		fmt.Fprintf(stdout, ", last change %s", l.Updated.Format(time.RFC3339))
	}
	fmt.Fprintln(stdout)
	if len(l.Entries) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WHAT\tWHEN\tBY\tREASON")
	for _, e := range l.Entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Target(), e.Time.Format(time.RFC3339), e.By, e.Reason)
	}
	return tw.Flush()
}

func cmdKRL(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("postern-signer krl", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration `FILE`")
	out := fs.String("out", "", "write the binary KRL to `FILE` atomically (- for stdout)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *cfgPath == "" || *out == "" {
		return climsg.WithHint(errors.New("--config and --out are required"), "postern-signer krl --config /etc/postern/postern.toml --out /etc/ssh/postern.krl")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	ctx := context.Background()
	store, err := revocation.Open(ctx, cfg, cliLogger(stderr))
	if err != nil {
		return err
	}
	l, err := loadForReading(ctx, store, stderr)
	if err != nil {
		return err
	}
	snap, err := revocation.NewSnapshot(l)
	if err != nil {
		return err
	}
	if *out == "-" {
		_, err := stdout.Write(snap.KRL)
		return err
	}
	if err := revocation.WriteFileAtomic(*out, snap.KRL, 0o644); err != nil {
		return fmt.Errorf("write KRL: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s (generation %d, %d revocations)\n", *out, l.Generation, len(l.Entries))
	return nil
}
