package server

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/bastion/authz"
	"github.com/postern-dev/postern/internal/config"
)

// CheckConfig validates what the bastion needs beyond the configuration
// file itself — the user CA, the host key and certificate, the node rules —
// without creating anything, and prints a summary. The error lists every
// problem.
func CheckConfig(cfg *config.Config, w io.Writer) error {
	b := cfg.Bastion
	var errs []error
	if cas, err := loadUserCAs(b.UserCA); err != nil {
		errs = append(errs, err)
	} else {
		for _, ca := range cas {
			fmt.Fprintf(w, "user CA: %s %s\n", ca.Type(), ssh.FingerprintSHA256(ca))
		}
	}
	if _, err := os.Stat(b.HostKey); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(w, "host key: %s does not exist yet; it is generated on first start\n", b.HostKey)
	} else if hk, err := LoadHostKey(b.HostKey, b.HostCert, time.Now()); err != nil {
		errs = append(errs, err)
	} else {
		fmt.Fprintf(w, "host key: %s %s\n", b.HostKey, ssh.FingerprintSHA256(hk.Signer.PublicKey()))
		if hk.Cert != nil {
			fmt.Fprintf(w, "host certificate: %s, principals %s, valid until %s\n", b.HostCert,
				strings.Join(hk.Cert.ValidPrincipals, ","), time.Unix(int64(min(hk.Cert.ValidBefore, 1<<40)), 0).UTC().Format(time.RFC3339))
		}
		for _, warn := range hk.Warnings {
			fmt.Fprintf(w, "warning: %s\n", warn)
		}
	}
	if _, err := authz.New(cfg); err != nil {
		errs = append(errs, err)
	}
	fmt.Fprintf(w, "listen: %s, %d roles, %d inventory nodes, audit log %s\n", b.Listen, len(cfg.Roles), len(b.Nodes), b.AuditLog)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	fmt.Fprintf(w, "%s: ok\n", cfg.Path)
	return nil
}
