package testenv

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// HostBlock is one "Host" block of a client config.
type HostBlock struct {
	Pattern   string   // Host pattern, e.g. "node1"
	HostName  string   // HostName; empty omits it
	Port      int      // Port; 0 omits it
	User      string   // User; empty omits it
	ProxyJump string   // ProxyJump, e.g. "bastion"; empty omits it
	Extra     []string // further lines, e.g. "HostKeyAlias node1"
}

// ClientConfig writes an ssh client config for ssh -F into t.TempDir() and
// returns its path. Use -F rather than -o options: ssh -J does not pass -o
// options to the inner hop, while every hop reads the -F file.
//
// The host blocks come first (ssh keeps the first value it reads), then a
// "Host *" block that pins knownHosts as the only known_hosts file with
// StrictHostKeyChecking yes, BatchMode yes, the agent at agentSock as the
// only source of keys (empty agentSock: none), LogLevel ERROR and
// ConnectTimeout 10.
func ClientConfig(t testing.TB, knownHosts string, agentSock string, hosts ...HostBlock) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ssh_config")
	mustWrite(t, path, []byte(renderClientConfig(knownHosts, agentSock, hosts)), 0o644)
	return path
}

func renderClientConfig(knownHosts, agentSock string, hosts []HostBlock) string {
	var b strings.Builder
	line := func(kw, v string) {
		if v != "" {
			fmt.Fprintf(&b, "  %s %s\n", kw, quote(v))
		}
	}
	for _, h := range hosts {
		fmt.Fprintf(&b, "Host %s\n", h.Pattern)
		line("HostName", h.HostName)
		if h.Port != 0 {
			line("Port", strconv.Itoa(h.Port))
		}
		line("User", h.User)
		line("ProxyJump", h.ProxyJump)
		for _, l := range h.Extra {
			fmt.Fprintf(&b, "  %s\n", l)
		}
		b.WriteString("\n")
	}
	if agentSock == "" {
		agentSock = "none"
	}
	b.WriteString("Host *\n")
	line("UserKnownHostsFile", knownHosts)
	for _, kv := range [][2]string{
		{"GlobalKnownHostsFile", "/dev/null"},
		{"StrictHostKeyChecking", "yes"},
		{"UpdateHostKeys", "no"},
		{"CheckHostIP", "no"},
		{"BatchMode", "yes"},
		{"IdentityAgent", agentSock},
		{"IdentityFile", "none"}, // no ~/.ssh/id_* keys: only the agent's
		{"PreferredAuthentications", "publickey"},
		{"ControlMaster", "no"},
		{"ControlPath", "none"},
		{"LogLevel", "ERROR"},
		{"ConnectTimeout", "10"},
	} {
		line(kv[0], kv[1])
	}
	return b.String()
}

// quote double-quotes config values that contain spaces.
func quote(v string) string {
	if strings.ContainsAny(v, " \t") {
		return `"` + v + `"`
	}
	return v
}

// KnownHostsCA returns a known_hosts line, ending in a newline, that trusts
// hostCA for host certificates of hosts matching pattern:
// "@cert-authority PATTERN <hostCA pubkey>".
func KnownHostsCA(pattern string, hostCA ssh.PublicKey) string {
	return "@cert-authority " + pattern + " " + string(ssh.MarshalAuthorizedKey(hostCA))
}
