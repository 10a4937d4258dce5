package kubeproto

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

const (
	// SubsystemPrefix starts the subsystem name kube-exec asks for:
	// "kube/prod".
	SubsystemPrefix = "kube/"
	// ChannelType is the channel the bastion opens on a forwarder's
	// connection for one client channel.
	ChannelType = "postern-kube@postern"
	// ClientChannelType is the channel kube-exec opens on the bastion for
	// one stream to a cluster, its [ClientOpen] as extra data: the same as
	// a session channel asking for the subsystem kube/CLUSTER, in one
	// round trip instead of two. Bastions that do not know it reject it
	// as an unknown channel type; kube-exec then asks for the subsystem.
	ClientChannelType = "postern-kube-client@postern"
	// RegisterRequest is the global request a forwarder sends after
	// authenticating; its payload is a [Register].
	RegisterRequest = "postern-kube-forwarder@postern"
	// RevokedRequest is the global request the bastion sends (wanting a
	// reply) on a connection that carried kube channels when the KRL
	// revokes the person's certificate, just before it closes the
	// connection; its payload is a [Revoked]. kube-exec then ends the
	// command, tells the person and does not reconnect.
	RevokedRequest = "postern-revoked@postern"
	// principalPrefix starts a forwarder's host certificate principal.
	principalPrefix = "kube-forwarder/"
	// MaxClusterLen bounds a cluster name.
	MaxClusterLen = 63
)

// ErrBadCluster refuses a cluster name that is not valid.
var ErrBadCluster = errors.New("invalid cluster name")

// ValidCluster checks a cluster name: 1 to 63 characters of lower-case
// letters, digits, '-', '_' and '.', starting with a letter or digit.
func ValidCluster(name string) error {
	if name == "" || len(name) > MaxClusterLen {
		return fmt.Errorf("%w: must be 1 to %d characters", ErrBadCluster, MaxClusterLen)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9'
		if i > 0 {
			ok = ok || r == '-' || r == '_' || r == '.'
		}
		if !ok {
			return fmt.Errorf("%w: %q (use lower-case letters, digits, '-', '_', '.')", ErrBadCluster, sanitize(name))
		}
	}
	return nil
}

// Subsystem returns the subsystem name for a cluster.
func Subsystem(cluster string) string { return SubsystemPrefix + cluster }

// ParseSubsystem returns the cluster a subsystem name asks for; ok is
// false when the name is not a kube subsystem at all, err set when it is
// one with an invalid cluster.
func ParseSubsystem(name string) (cluster string, ok bool, err error) {
	c, found := strings.CutPrefix(name, SubsystemPrefix)
	if !found {
		return "", false, nil
	}
	if err := ValidCluster(c); err != nil {
		return "", true, err
	}
	return c, true, nil
}

// ForwarderPrincipal is the host certificate principal that lets a
// forwarder serve cluster.
func ForwarderPrincipal(cluster string) string { return principalPrefix + cluster }

// ForwarderClusters returns the clusters a host certificate's principals
// name (principals of any other form are ignored).
func ForwarderClusters(principals []string) []string {
	var out []string
	for _, p := range principals {
		if c, ok := strings.CutPrefix(p, principalPrefix); ok && ValidCluster(c) == nil {
			out = append(out, c)
		}
	}
	return out
}

// ClientOpen is the extra data of a [ClientChannelType] channel open (SSH
// wire format: one string).
type ClientOpen struct {
	Cluster string
}

// Register is the payload of [RegisterRequest] (JSON).
type Register struct {
	// Cluster the forwarder serves; its certificate must name it.
	Cluster string `json:"cluster"`
	// ID names the forwarder instance in logs.
	ID string `json:"id,omitempty"`
	// Version of the forwarder.
	Version string `json:"version,omitempty"`
}

// Revoked is the payload of [RevokedRequest] (SSH wire encoding).
type Revoked struct {
	// Message is what the person is told, e.g. "postern: your access was
	// revoked".
	Message string
}

// Identity is for whom a forwarder acts on one channel: the extra data of
// a [ChannelType] channel open (JSON).
type Identity struct {
	// Person is the certificate's KeyId.
	Person string `json:"person"`
	// Cluster is the cluster asked for.
	Cluster string `json:"cluster"`
	// Users are the Kubernetes user names the person may act as, default
	// first: the roles' kube_users, or the person when none.
	Users []string `json:"users"`
	// Groups are the roles' kube_groups for this cluster.
	Groups []string `json:"groups,omitempty"`
	// Roles that granted the cluster.
	Roles []string `json:"roles,omitempty"`
	// SessionID and ConnID tie the forwarder's events to the bastion's.
	SessionID string `json:"session_id,omitempty"`
	ConnID    string `json:"conn_id,omitempty"`
	// ClientAddr is the person's address as the bastion saw it.
	ClientAddr string `json:"client_addr,omitempty"`
	// Bastion is the id of the bastion that opened the channel.
	Bastion string `json:"bastion,omitempty"`
}

// maxIdentity bounds the encoded identity.
const maxIdentity = 64 << 10

// Marshal encodes the identity for the channel's extra data.
func (id Identity) Marshal() []byte {
	b, _ := json.Marshal(id)
	return b
}

// ParseIdentity decodes and checks a channel's extra data.
func ParseIdentity(b []byte) (Identity, error) {
	var id Identity
	if len(b) > maxIdentity {
		return id, errors.New("identity too large")
	}
	if err := json.Unmarshal(b, &id); err != nil {
		return id, fmt.Errorf("decode identity: %w", err)
	}
	if id.Person == "" || len(id.Users) == 0 {
		return id, errors.New("identity without a person or user")
	}
	for _, u := range id.Users {
		if u == "" {
			return id, errors.New("identity with an empty user name")
		}
	}
	if err := ValidCluster(id.Cluster); err != nil {
		return id, err
	}
	return id, nil
}

// sanitize bounds and cleans an untrusted name for messages.
func sanitize(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// Files `kube-exec proxy` keeps in the postern directory (~/.postern) so
// that a kubeconfig context written once (`postern kube config`) stays
// valid across restarts: its bearer token and its loopback TLS
// certificate.
const (
	ProxyTokenFile = "kube-proxy.token"
	ProxyCertFile  = "kube-proxy.crt"
)

// ProxyPort is the loopback port kube-exec prefers for a cluster: fixed
// per cluster name, so kubectl's discovery cache (kept per server
// address) and a written kubeconfig context stay valid from run to run.
func ProxyPort(cluster string) int {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(cluster); i++ {
		h ^= uint32(cluster[i])
		h *= 16777619
	}
	return ProxyPortBase + int(h%ProxyPortRange)
}

// ProxyPort's range: ProxyPortRange ports from ProxyPortBase.
const (
	ProxyPortBase  = 40000
	ProxyPortRange = 20000
)
