package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/testenv"
	"github.com/postern-dev/postern/signer/ca"
)

// TestBastionRefusesCredentials: every credential that is not a valid user
// certificate from the user CA is refused at the bastion, and each refusal
// is an auth.failed event naming what was refused and why.
func TestBastionRefusesCredentials(t *testing.T) {
	e := startBastionEnv(t)
	otherCADir := t.TempDir() + "/other_ca"
	if err := ca.Generate(otherCADir, ca.KeyEd25519, "not the user CA"); err != nil {
		t.Fatal(err)
	}
	otherCA, err := ca.Load(otherCADir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		keyID  string
		opts   bstCertOpts
		reason string
	}{
		{"expired certificate", "expired@example.com", bstCertOpts{roles: "ops", notAt: time.Now().Add(-3 * time.Hour)}, "certificate expired"},
		{"certificate from another CA", "other@example.com", bstCertOpts{roles: "ops", authority: otherCA}, "not signed by the user CA"},
		{"host certificate as user certificate", "hostcert@example.com", bstCertOpts{hostCert: true}, "host certificate offered as a user certificate"},
		{"unknown critical option", "verify@example.com", bstCertOpts{roles: "ops", crit: map[string]string{"verify-required": ""}}, `unknown critical option: "verify-required"`},
		{"force-command", "forced@example.com", bstCertOpts{roles: "ops", crit: map[string]string{"force-command": "/bin/true"}}, `unknown critical option: "force-command"`},
		{"source-address elsewhere", "pinned@example.com", bstCertOpts{roles: "ops", crit: map[string]string{"source-address": "192.0.2.0/24"}}, "source-address"},
		{"plain key", "plain", bstCertOpts{plain: true}, "plain public key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := e.user(t, tt.keyID, tt.opts)
			_, stderr, code := bstRun(t, "ssh", u.cfg, "", "bastion", "whoami")
			if code != 255 || !strings.Contains(stderr, "Permission denied") {
				t.Fatalf("ssh bastion: exit %d, stderr %q; want 255 and Permission denied", code, stderr)
			}
			// Through the bastion to a node it is the same refusal.
			if _, _, code := bstRun(t, "ssh", u.cfg, "", "node1", "true"); code != 255 {
				t.Errorf("ssh -J node1: exit %d, want 255", code)
			}
			fp := ssh.FingerprintSHA256(u.pub)
			ev := e.waitEvent(t, audit.AuthFailed, func(ev audit.Event) bool { return ev.KeyFP == fp })
			if !strings.Contains(ev.Reason, tt.reason) || ev.ClientAddr == "" || ev.ConnID == "" || ev.WriterID != "e2e-bastion" {
				t.Errorf("auth.failed = %+v; want reason %q", ev, tt.reason)
			}
			if !tt.opts.plain && ev.Person != tt.keyID {
				t.Errorf("auth.failed names %q, want the certificate's key id %q", ev.Person, tt.keyID)
			}
			for _, name := range []string{audit.SessionStart, audit.Command, audit.AccessDenied} {
				e.noEvent(t, name, func(ev audit.Event) bool { return ev.KeyFP == fp })
			}
		})
	}
}

// TestBastionAddressPolicy: a person whose role allows any name on any
// port still cannot jump to loopback, link-local or metadata addresses,
// the bastion's own addresses, or names resolving to them.
func TestBastionAddressPolicy(t *testing.T) {
	e := startBastionEnv(t)
	own := bastionOwnAddr(t, e)
	targets := []struct {
		name, host string
		port       int
	}{
		{"loopback", "127.0.0.1", 22},
		{"metadata", "169.254.169.254", 80},
		{"link-local", "169.254.10.10", 22},
		{"v6 loopback", "::1", 22},
		{"own address", own, 22},
		{"name resolving to loopback", "localhost", 22},
	}
	var hosts []testenv.HostBlock
	for i, tg := range targets {
		if tg.host == "" {
			continue
		}
		hosts = append(hosts, testenv.HostBlock{Pattern: fmt.Sprintf("t%d", i), HostName: tg.host, Port: tg.port})
	}
	carol := e.user(t, "carol@example.com", bstCertOpts{roles: "wide"}, hosts...)

	if e.netns {
		// The same role does reach a node: the refusals below are the
		// address policy, not a missing rule.
		if out, stderr, code := bstRun(t, "ssh", carol.cfg, "", "node1", "echo in"); code != 0 || out != "in\n" {
			t.Fatalf("carol to node1: %q, exit %d: %s", out, code, stderr)
		}
	}
	for i, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			if tg.host == "" {
				t.Skip("the bastion host has no address besides loopback")
			}
			_, stderr, code := bstRun(t, "ssh", carol.cfg, "", fmt.Sprintf("t%d", i), "true")
			if code != 255 || !strings.Contains(stderr, "refused address") {
				t.Fatalf("jump to %s: exit %d, stderr %q; want 255 and the refusal", tg.host, code, stderr)
			}
			target := net.JoinHostPort(tg.host, fmt.Sprint(tg.port))
			ev := e.waitEvent(t, audit.AccessDenied, func(ev audit.Event) bool {
				return ev.Person == "carol@example.com" && ev.Target == target
			})
			if ev.Reason != "resolves to a refused address" || ev.Error == "" {
				t.Errorf("access.denied = %+v", ev)
			}
			e.noEvent(t, audit.SessionStart, func(ev audit.Event) bool { return ev.Target == target })
		})
	}
}

// bastionOwnAddr returns a non-loopback address of the bastion's host:
// the host end of node1's veth pair when there is one.
func bastionOwnAddr(t *testing.T, e *bastionEnv) string {
	if e.node1.Netns != nil {
		return e.node1.Netns.HostIP
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
				return ip.Unmap().String()
			}
		}
	}
	return ""
}
