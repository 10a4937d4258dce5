package config

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/postern-dev/postern/internal/kubeproto"
)

// Kube configures Kubernetes access: the bastion's side (which forwarders
// it accepts) and the forwarder (`kube-exec forwarder`), which reads only
// [kube.forwarder].
type Kube struct {
	// ForwarderCA is read by the bastion: the host CA public key(s)
	// (authorized_keys format) whose host certificates with the principal
	// "kube-forwarder/CLUSTER" let a forwarder serve CLUSTER. Default
	// bastion.data_dir/host_ca.pub; when that file does not exist the
	// bastion accepts no forwarder.
	ForwarderCA string `toml:"forwarder_ca"`
	// KeepAlive is how often the bastion checks a forwarder's connection
	// (and the forwarder the bastion's); three missed answers close it.
	// Default 15s.
	KeepAlive Duration `toml:"keepalive"`

	Forwarder KubeForwarder `toml:"forwarder"`
}

// KubeForwarder configures one forwarder: the in-VPC process that dials
// out to the bastions and proxies to its cluster's API server.
type KubeForwarder struct {
	// Cluster is the name people ask for (kube-exec --cluster NAME) and
	// roles list in kube_clusters. Required to run a forwarder.
	Cluster string `toml:"cluster"`
	// ID names this forwarder in audit events and logs. Default: the host
	// name.
	ID string `toml:"id"`
	// Kubeconfig holds the forwarder's own credential, whose only right
	// should be to impersonate. Empty: the in-cluster service account.
	Kubeconfig string `toml:"kubeconfig"`
	// Context in Kubeconfig. Default: its current context.
	Context string `toml:"context"`
	// Bastions are the host:port of every bastion to dial. Required.
	Bastions []string `toml:"bastions"`
	// DataDir holds the host key and the audit log. Default
	// "/var/lib/postern/kube-forwarder".
	DataDir string `toml:"data_dir"`
	// HostKey is the forwarder's private key. Default DataDir/host_key;
	// generated (Ed25519, 0600) if missing.
	HostKey string `toml:"host_key"`
	// HostCert is its host certificate, with the principal
	// "kube-forwarder/CLUSTER". Default HostKey + "-cert.pub".
	HostCert string `toml:"host_cert"`
	// HostCA is the host CA public key that certifies the bastions.
	// Default DataDir/host_ca.pub.
	HostCA string `toml:"host_ca"`
	// AuditLog receives one kube.request event per API request; "-" for
	// stdout. Default DataDir/audit.log.
	AuditLog string `toml:"audit_log"`
	// MinBackoff and MaxBackoff bound the wait between reconnects to a
	// bastion (doubling, with jitter). Defaults 500ms and 30s.
	MinBackoff Duration `toml:"min_backoff"`
	MaxBackoff Duration `toml:"max_backoff"`
	// DialTimeout bounds connecting and authenticating to a bastion.
	// Default 10s.
	DialTimeout Duration `toml:"dial_timeout"`
	// MetricsListen serves /metrics, /healthz and /readyz over plain HTTP
	// on this address. Empty (the default): off.
	MetricsListen string `toml:"metrics_listen"`
}

// Defaults of [kube].
const (
	DefaultKubeKeepAlive     = 15 * time.Second
	DefaultKubeForwarderDir  = "/var/lib/postern/kube-forwarder"
	DefaultKubeMinBackoff    = 500 * time.Millisecond
	DefaultKubeMaxBackoff    = 30 * time.Second
	DefaultKubeDialTimeout   = 10 * time.Second
	defaultKubeForwarderUser = "kube-forwarder"
)

// KubeForwarderLogin is the SSH user name a forwarder logs in with (the
// bastion goes by the certificate, not by this).
const KubeForwarderLogin = defaultKubeForwarderUser

func (c *Config) applyKubeDefaults() {
	k := &c.Kube
	setDefault(&k.ForwarderCA, filepath.Join(c.Bastion.DataDir, "host_ca.pub"))
	setDurDefault(&k.KeepAlive, DefaultKubeKeepAlive)
	f := &k.Forwarder
	if f.ID == "" {
		f.ID, _ = os.Hostname()
	}
	setDefault(&f.DataDir, DefaultKubeForwarderDir)
	setDefault(&f.HostKey, filepath.Join(f.DataDir, "host_key"))
	setDefault(&f.HostCert, f.HostKey+"-cert.pub")
	setDefault(&f.HostCA, filepath.Join(f.DataDir, "host_ca.pub"))
	setDefault(&f.AuditLog, filepath.Join(f.DataDir, "audit.log"))
	setDurDefault(&f.MinBackoff, DefaultKubeMinBackoff)
	setDurDefault(&f.MaxBackoff, DefaultKubeMaxBackoff)
	setDurDefault(&f.DialTimeout, DefaultKubeDialTimeout)
}

// validateKube checks [kube] and the roles' kube_clusters.
func (c *Config) validateKube(add func(error)) {
	k := c.Kube
	if k.KeepAlive.Duration < time.Second {
		add(c.errAt("kube.keepalive", "must be at least 1s, got %s", k.KeepAlive.Duration))
	}
	f := k.Forwarder
	if f.Cluster != "" {
		if err := kubeproto.ValidCluster(f.Cluster); err != nil {
			add(c.errAt("kube.forwarder.cluster", "%v", err))
		}
	}
	for _, b := range f.Bastions {
		if err := checkHostPort(b); err != nil {
			add(c.errAt("kube.forwarder.bastions", "%v", err))
		}
	}
	if f.MaxBackoff.Duration < f.MinBackoff.Duration {
		add(c.errAt("kube.forwarder.max_backoff", "must not be below min_backoff (%v)", f.MinBackoff.Duration))
	}
	for i, r := range c.Roles {
		for _, cl := range r.KubeClusters {
			if err := kubeproto.ValidCluster(cl); err != nil {
				add(c.errAt(fmt.Sprintf("role[%d].kube_clusters", i), "%v", err))
			}
		}
		for _, u := range r.KubeUsers {
			if u == "" {
				add(c.errAt(fmt.Sprintf("role[%d].kube_users", i), "empty user name"))
			}
		}
		for _, g := range r.KubeGroups {
			if g == "" {
				add(c.errAt(fmt.Sprintf("role[%d].kube_groups", i), "empty group name"))
			}
		}
	}
}

// CheckForwarder reports what a forwarder needs beyond Validate: a
// cluster and at least one bastion.
func (c *Config) CheckForwarder() error {
	f := c.Kube.Forwarder
	switch {
	case f.Cluster == "":
		return c.errAt("kube.forwarder.cluster", "required to run a forwarder")
	case len(f.Bastions) == 0:
		return c.errAt("kube.forwarder.bastions", "required to run a forwarder: list the bastions' host:port")
	}
	return nil
}

// KubeAccess is what a person's roles grant on one cluster.
type KubeAccess struct {
	Roles  []string // the roles that list the cluster
	Users  []string // their kube_users, deduplicated, in order
	Groups []string // their kube_groups, deduplicated, in order
}

// KubeAccessFor returns what the named roles grant on cluster; ok is false
// when none of them lists it. Roles the configuration does not know grant
// nothing.
func (c *Config) KubeAccessFor(roles []string, cluster string) (a KubeAccess, ok bool) {
	seenU, seenG := map[string]bool{}, map[string]bool{}
	for _, name := range roles {
		r, found := c.RoleByName(name)
		if !found || !contains(r.KubeClusters, cluster) {
			continue
		}
		ok = true
		a.Roles = append(a.Roles, r.Name)
		for _, u := range r.KubeUsers {
			if !seenU[u] {
				seenU[u] = true
				a.Users = append(a.Users, u)
			}
		}
		for _, g := range r.KubeGroups {
			if !seenG[g] {
				seenG[g] = true
				a.Groups = append(a.Groups, g)
			}
		}
	}
	return a, ok
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
