package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is the whole deployment's configuration. Each part reads its own
// section plus the roles.
type Config struct {
	Signer  Signer  `toml:"signer"`
	Bastion Bastion `toml:"bastion"`
	Storage Storage `toml:"storage"`
	Kube    Kube    `toml:"kube"`
	Audit   Audit   `toml:"audit"`
	// Roles map identity-provider groups to what a person may do.
	Roles []Role `toml:"role"`

	// Path is the file the configuration was read from ("" for Default()).
	Path string `toml:"-"`
	// lines maps a key path ("signer.listen", "role[1].logins") to the line
	// it was written on, for error messages.
	lines map[string]int
}

// Signer configures postern-signer.
type Signer struct {
	// Listen is the HTTPS listen address. Default "127.0.0.1:3080".
	Listen string `toml:"listen"`
	// ID names this signer in audit events (writer_id) and logs; give
	// each signer of an HA install its own. Default: the host name.
	ID string `toml:"id"`
	// URL is the public base URL clients and the IdP use to reach the
	// signer. Default "https://" + Listen.
	URL string `toml:"url"`
	// DataDir holds the CA keys, the development TLS certificate and the
	// audit log. Default "/var/lib/postern/signer".
	DataDir string `toml:"data_dir"`
	// UserCAKey and HostCAKey are OpenSSH private key files. Defaults
	// DataDir/user_ca and DataDir/host_ca.
	UserCAKey string `toml:"user_ca_key"`
	HostCAKey string `toml:"host_ca_key"`
	// TLSCert and TLSKey are PEM files. When both are empty the signer
	// generates a self-signed certificate for development into
	// DataDir/tls.crt and DataDir/tls.key; clients must then pin it.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// AuditLog is the JSON-lines audit file; "-" writes to stdout.
	// Default DataDir/audit.log.
	AuditLog string `toml:"audit_log"`
	// HostCertTTL is the validity of host certificates. Default 30d.
	HostCertTTL Duration `toml:"host_cert_ttl"`
	// JoinTokenFile holds join tokens, one per line, that allow
	// POST /v1/host-cert. Empty disables the API (the host-cert command
	// still works for operators). Lines starting with # are ignored.
	JoinTokenFile string `toml:"join_token_file"`
	// HostPatterns limits the names and addresses a join token may get a
	// host certificate for: globs ("*.prod.internal") and CIDRs. Empty
	// means the API issues nothing.
	HostPatterns []string `toml:"host_patterns"`
	// LoginTimeout bounds how long a started login may take. Default 10m.
	LoginTimeout Duration `toml:"login_timeout"`
	// RevocationFile is the revocation list (JSON), written by
	// `postern-signer revoke` and POST /v1/revoke and published as a KRL.
	// Default DataDir/revocations.json.
	RevocationFile string `toml:"revocation_file"`
	// RevocationStore is where the revocation list is kept: "file"
	// (RevocationFile, the default) or "s3" (the [storage] bucket, under
	// revocations/, so several signers share one list; requires
	// storage.s3_bucket).
	RevocationStore string `toml:"revocation_store"`
	// AdminTokenFile holds admin tokens, one per line (# comments), that
	// allow POST /v1/revoke. Empty disables the API (the revoke command
	// still works for operators). Re-read on every request.
	AdminTokenFile string `toml:"admin_token_file"`
	// Bastions are the host-certificate principals of the bastions allowed
	// to ask for delegated certificates and node host certificates
	// (recording mode). Empty: none. Default ["postern-bastion"].
	Bastions []string `toml:"bastions"`
	// DelegatedTTL is the validity of a delegated certificate. Default 1m.
	DelegatedTTL Duration `toml:"delegated_ttl"`
	// NodeHostCertTTL is the validity of host certificates a bastion gets
	// for node names. Default 24h.
	NodeHostCertTTL Duration `toml:"node_host_cert_ttl"`

	// MetricsListen serves /metrics, /healthz and /readyz over plain HTTP
	// on this address, apart from the API. Empty (the default): off.
	MetricsListen string `toml:"metrics_listen"`

	OIDC OIDC `toml:"oidc"`
}

// OIDC configures the signer as an OpenID Connect relying party
// (a confidential client).
type OIDC struct {
	// Issuer is the IdP's issuer URL. Required to serve logins.
	Issuer string `toml:"issuer"`
	// ClientID is the client registered at the IdP. Default "postern".
	ClientID string `toml:"client_id"`
	// ClientSecretFile holds the client secret. Required with Issuer.
	ClientSecretFile string `toml:"client_secret_file"`
	// Scopes requested. Default ["openid", "email", "profile", "groups"].
	Scopes []string `toml:"scopes"`
	// UsernameClaim names the person (becomes the certificate's KeyId).
	// Default "email".
	UsernameClaim string `toml:"username_claim"`
	// GroupsClaim lists the person's groups. Default "groups".
	GroupsClaim string `toml:"groups_claim"`
	// RedirectURL is the callback registered at the IdP.
	// Default URL + "/v1/login/callback".
	RedirectURL string `toml:"redirect_url"`
	// DeviceFlow enables headless logins (RFC 8628). Default true.
	DeviceFlow *bool `toml:"device_flow"`
}

// Bastion configures postern-bastion.
type Bastion struct {
	// Listen is the SSH listen address. Default "127.0.0.1:2222".
	Listen string `toml:"listen"`
	// PublicAddr is the host:port users dial; written by `postern config`.
	// Default Listen.
	PublicAddr string `toml:"public_addr"`
	// Name is the ssh_config alias users type (ssh -J NAME). Default
	// "postern-bastion".
	Name string `toml:"name"`
	// ID names this bastion in audit events. Default: the host name.
	ID string `toml:"id"`
	// DataDir holds the host key, spool and audit log. Default
	// "/var/lib/postern/bastion".
	DataDir string `toml:"data_dir"`
	// HostKey is the bastion's private host key. Default DataDir/host_key.
	HostKey string `toml:"host_key"`
	// HostCert is its host certificate. Default HostKey + "-cert.pub".
	HostCert string `toml:"host_cert"`
	// UserCA is the user CA's public key (authorized_keys format). Default
	// DataDir/user_ca.pub.
	UserCA string `toml:"user_ca"`
	// AuditLog is the JSON-lines audit file; "-" writes to stdout.
	// Default DataDir/audit.log.
	AuditLog string `toml:"audit_log"`
	// JumpHosts are ssh_config Host patterns that `postern config` routes
	// through the bastion, e.g. ["*.prod.internal"].
	JumpHosts []string `toml:"jump_hosts"`
	// ClockSkew tolerated on certificate validity. Default 30s.
	ClockSkew Duration `toml:"clock_skew"`
	// ShutdownGrace is how long sessions may finish on shutdown. Default 30s.
	ShutdownGrace Duration `toml:"shutdown_grace"`
	// DialTimeout bounds connecting to a node. Default 10s.
	DialTimeout Duration `toml:"dial_timeout"`
	// HandshakeTimeout bounds the SSH handshake and authentication of a new
	// connection. Default 30s.
	HandshakeTimeout Duration `toml:"handshake_timeout"`
	// Nodes is an optional inventory of named nodes with labels.
	Nodes []Node `toml:"node"`

	// SignerURL is where the bastion reaches the signer (delegated
	// certificates in recording mode). Default: [signer] url.
	SignerURL string `toml:"signer_url"`
	// SignerCA is a PEM file pinning the signer's TLS certificate. Default:
	// the signer's development certificate (data_dir/tls.crt) when the
	// signer has no tls_cert, else the system roots.
	SignerCA string `toml:"signer_ca"`
	// SpoolDir holds recordings until they are stored. Default
	// DataDir/spool.
	SpoolDir string `toml:"spool_dir"`
	// ExecCaptureLimit caps the bytes of output recorded per session
	// without a terminal (exec). Default 1048576 (1 MiB).
	ExecCaptureLimit int64 `toml:"exec_capture_limit"`

	// Revocation is where the bastion gets the KRL it enforces: "signer"
	// (poll signer_url's GET /v1/krl, pinned to signer_ca), "file" (re-read
	// krl_file when it changes) or "off". Default "file" when krl_file is
	// set, else "signer" when signer_url is https, else "off".
	Revocation string `toml:"revocation"`
	// KRLFile is a local KRL kept current by something else (revocation =
	// "file").
	KRLFile string `toml:"krl_file"`
	// RevocationPoll is how often the KRL is refreshed, jittered ±20%.
	// Default 2s.
	RevocationPoll Duration `toml:"revocation_poll"`
	// RevocationMaxStale, when set, refuses new connections once the KRL
	// could not be refreshed for this long (fail closed). Default 0: the
	// last good list stays in force (fail open).
	RevocationMaxStale Duration `toml:"revocation_max_stale"`

	// MetricsListen serves /metrics, /healthz and /readyz over plain HTTP
	// on this address. Empty (the default): off.
	MetricsListen string `toml:"metrics_listen"`
	// ProxyProtocol makes the listener expect a PROXY protocol header (v1
	// or v2) from a load balancer listed in ProxyFrom, so audit events
	// carry the client's address. Connections from other addresses, and
	// listed ones that send no valid header, are refused. Default false.
	ProxyProtocol bool `toml:"proxy_protocol"`
	// ProxyFrom lists the load balancers' addresses or CIDRs whose PROXY
	// headers are trusted. Required when ProxyProtocol is set.
	ProxyFrom []string `toml:"proxy_from"`
	// DirectFrom lists addresses or CIDRs that may connect without the
	// load balancer when ProxyProtocol is on (kube forwarders dialing each
	// bastion, administrators inside the VPC); they send no PROXY header
	// and their own address is used. Default: none, only the balancers.
	DirectFrom []string `toml:"direct_from"`
}

// Node is one inventory entry.
type Node struct {
	// Name is what users ask for (ssh -J bastion NAME). Required, unique.
	Name string `toml:"name"`
	// Addr is the node's IP address or DNS name (no port). Required.
	Addr string `toml:"addr"`
	// Labels are matched by "label:KEY=VALUE" node rules.
	Labels map[string]string `toml:"labels"`
	// Recording overrides the roles' recording mode for this node: "on",
	// "off", or "" (the roles decide).
	Recording string `toml:"recording"`
}

// Storage configures where audit logs and recordings are kept.
type Storage struct {
	// S3Bucket; empty keeps everything under LocalDir.
	S3Bucket    string `toml:"s3_bucket"`
	S3Prefix    string `toml:"s3_prefix"`
	S3Region    string `toml:"s3_region"`
	S3Endpoint  string `toml:"s3_endpoint"`
	S3PathStyle bool   `toml:"s3_path_style"`
	// LocalDir is used when S3Bucket is empty. Default
	// "/var/lib/postern/recordings".
	LocalDir string `toml:"local_dir"`

	// S3Profile and S3CredentialsFile pick a profile and a shared
	// credentials file (AWS format) for the SDK's standard credential
	// chain. Empty: the SDK's defaults (environment, ~/.aws, instance or
	// pod role). Keys never go in this file.
	S3Profile         string `toml:"s3_profile"`
	S3CredentialsFile string `toml:"s3_credentials_file"`
	// UploadMinBackoff and UploadMaxBackoff bound the wait between upload
	// retries (doubling, with jitter). Defaults 1s and 5m.
	UploadMinBackoff Duration `toml:"upload_min_backoff"`
	UploadMaxBackoff Duration `toml:"upload_max_backoff"`
	// UploadTimeout bounds one upload attempt. Default 10m.
	UploadTimeout Duration `toml:"upload_timeout"`
	// SpoolSyncInterval bounds how long spooled bytes wait for an fsync.
	// Default 1s.
	SpoolSyncInterval Duration `toml:"spool_sync_interval"`
}

// Role grants logins and node access to people in some IdP groups.
type Role struct {
	// Name appears in certificates and audit events. Required, unique.
	Name string `toml:"name"`
	// Groups: a person in any of these IdP groups gets the role.
	Groups []string `toml:"groups"`
	// Logins are the Unix accounts (certificate principals) allowed.
	Logins []string `toml:"logins"`
	// Nodes are node rules: host globs, CIDRs or inventory labels
	// ("label:env=prod"), each optionally followed by ":PORT" or
	// ":LOW-HIGH". Port 22 when none is given.
	Nodes []string `toml:"nodes"`
	// MaxTTL caps certificate lifetime. Default 8h.
	MaxTTL Duration `toml:"max_ttl"`
	// Extensions are the permit-* certificate extensions this role allows.
	// Default ["permit-pty"].
	Extensions []string `toml:"extensions"`
	// SourceAddresses pins certificates to these CIDRs (the source-address
	// critical option). Empty: no pinning.
	SourceAddresses []string `toml:"source_addresses"`
	// Recording is "on" (default) or "off".
	Recording string `toml:"recording"`
	// RecordInput also records what people type in terminal sessions
	// (passwords typed at prompts included). Default false.
	RecordInput bool `toml:"record_input"`
	// ViewRecordings lets people with this role list and play every
	// recording on the bastion (`ssh BASTION recordings`, `play`). Without
	// it a person sees only recordings of their own sessions. Default false.
	ViewRecordings bool `toml:"view_recordings"`
	// KubeClusters, KubeUsers and KubeGroups grant Kubernetes access.
	KubeClusters []string `toml:"kube_clusters"`
	KubeUsers    []string `toml:"kube_users"`
	KubeGroups   []string `toml:"kube_groups"`
}

// Defaults for values that are not set.
const (
	DefaultSignerListen     = "127.0.0.1:3080"
	DefaultSignerDataDir    = "/var/lib/postern/signer"
	DefaultBastionListen    = "127.0.0.1:2222"
	DefaultBastionDir       = "/var/lib/postern/bastion"
	DefaultBastionName      = "postern-bastion"
	DefaultLocalDir         = "/var/lib/postern/recordings"
	DefaultMaxTTL           = 8 * time.Hour
	DefaultHostCertTTL      = 30 * 24 * time.Hour
	DefaultLoginTimeout     = 10 * time.Minute
	DefaultClockSkew        = 30 * time.Second
	DefaultShutdownGrace    = 30 * time.Second
	DefaultDelegatedTTL     = time.Minute
	DefaultExecCaptureLimit = 1 << 20
	DefaultNodeHostCertTTL  = 24 * time.Hour
	DefaultDialTimeout      = 10 * time.Second
	DefaultHandshake        = 30 * time.Second
	DefaultRevPoll          = 2 * time.Second
)

// PermitExtensions are the standard OpenSSH permit-* extensions a role may
// allow.
var PermitExtensions = []string{
	"permit-X11-forwarding",
	"permit-agent-forwarding",
	"permit-port-forwarding",
	"permit-pty",
	"permit-user-rc",
}

// tomlErrRe picks apart the decoder's type errors, which carry the line
// only in their text.
var tomlErrRe = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

// Default returns the configuration used when no file is given: every part
// on loopback, data under /var/lib/postern.
func Default() *Config {
	c := &Config{}
	c.applyDefaults()
	return c
}

// Load reads, decodes and validates the file at path. The error lists every
// problem found, each as "FILE:LINE: KEY: problem".
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates data read from path (used in messages).
func Parse(path string, data []byte) (*Config, error) {
	c := &Config{Path: path, lines: indexLines(data)}
	md, err := toml.Decode(string(data), c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			key := pe.LastKey
			msg := pe.Message
			if key != "" {
				return nil, fmt.Errorf("%s:%d: %s: %s", path, pe.Position.Line, key, msg)
			}
			return nil, fmt.Errorf("%s:%d: %s", path, pe.Position.Line, msg)
		}
		if m := tomlErrRe.FindStringSubmatch(err.Error()); m != nil {
			return nil, fmt.Errorf("%s:%s: %s: %s", path, m[1], m[2], m[3])
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var errs []error
	seen := map[string]bool{}
	for _, k := range md.Undecoded() {
		ks := k.String()
		if seen[ks] {
			continue
		}
		seen[ks] = true
		errs = append(errs, c.errAt(ks, "unknown key"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// errAt formats a problem with a key, adding the line when known.
func (c *Config) errAt(key, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	file := c.Path
	if file == "" {
		file = "(default config)"
	}
	if line, ok := c.lines[key]; ok {
		return fmt.Errorf("%s:%d: %s: %s", file, line, key, msg)
	}
	if line, ok := c.lines[stripIndex(key)]; ok {
		return fmt.Errorf("%s:%d: %s: %s", file, line, key, msg)
	}
	return fmt.Errorf("%s: %s: %s", file, key, msg)
}

func (c *Config) applyDefaults() {
	s := &c.Signer
	setDefault(&s.Listen, DefaultSignerListen)
	if s.ID == "" {
		s.ID, _ = os.Hostname()
	}
	setDefault(&s.URL, "https://"+s.Listen)
	s.URL = strings.TrimRight(s.URL, "/")
	setDefault(&s.DataDir, DefaultSignerDataDir)
	setDefault(&s.UserCAKey, filepath.Join(s.DataDir, "user_ca"))
	setDefault(&s.HostCAKey, filepath.Join(s.DataDir, "host_ca"))
	setDefault(&s.AuditLog, filepath.Join(s.DataDir, "audit.log"))
	setDefault(&s.RevocationFile, filepath.Join(s.DataDir, "revocations.json"))
	setDefault(&s.RevocationStore, "file")
	if s.Bastions == nil {
		s.Bastions = []string{DefaultBastionName}
	}
	setDurDefault(&s.DelegatedTTL, DefaultDelegatedTTL)
	setDurDefault(&s.NodeHostCertTTL, DefaultNodeHostCertTTL)
	setDurDefault(&s.HostCertTTL, DefaultHostCertTTL)
	setDurDefault(&s.LoginTimeout, DefaultLoginTimeout)
	o := &s.OIDC
	setDefault(&o.ClientID, "postern")
	if o.Scopes == nil {
		o.Scopes = []string{"openid", "email", "profile", "groups"}
	}
	setDefault(&o.UsernameClaim, "email")
	setDefault(&o.GroupsClaim, "groups")
	setDefault(&o.RedirectURL, s.URL+"/v1/login/callback")
	if o.DeviceFlow == nil {
		t := true
		o.DeviceFlow = &t
	}

	b := &c.Bastion
	setDefault(&b.Listen, DefaultBastionListen)
	setDefault(&b.PublicAddr, b.Listen)
	setDefault(&b.Name, DefaultBastionName)
	if b.ID == "" {
		b.ID, _ = os.Hostname()
	}
	setDefault(&b.DataDir, DefaultBastionDir)
	setDefault(&b.HostKey, filepath.Join(b.DataDir, "host_key"))
	setDefault(&b.HostCert, b.HostKey+"-cert.pub")
	setDefault(&b.UserCA, filepath.Join(b.DataDir, "user_ca.pub"))
	setDefault(&b.AuditLog, filepath.Join(b.DataDir, "audit.log"))
	setDefault(&b.SignerURL, s.URL)
	if b.SignerCA == "" && s.TLSCert == "" {
		b.SignerCA = filepath.Join(s.DataDir, "tls.crt")
	}
	setDefault(&b.SpoolDir, filepath.Join(b.DataDir, "spool"))
	if b.ExecCaptureLimit == 0 {
		b.ExecCaptureLimit = DefaultExecCaptureLimit
	}
	setDurDefault(&b.ClockSkew, DefaultClockSkew)
	setDurDefault(&b.ShutdownGrace, DefaultShutdownGrace)
	setDurDefault(&b.DialTimeout, DefaultDialTimeout)
	setDurDefault(&b.HandshakeTimeout, DefaultHandshake)
	setDurDefault(&b.RevocationPoll, DefaultRevPoll)
	if b.Revocation == "" {
		b.Revocation = defaultRevocation(b)
	}

	setDefault(&c.Storage.LocalDir, DefaultLocalDir)
	c.Storage.applyDefaults()
	c.Audit.applyDefaults()
	c.applyKubeDefaults()

	for i := range c.Roles {
		r := &c.Roles[i]
		setDurDefault(&r.MaxTTL, DefaultMaxTTL)
		if r.Extensions == nil {
			r.Extensions = []string{"permit-pty"}
		}
		setDefault(&r.Recording, "on")
	}
}

func setDefault(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func setDurDefault(p *Duration, v time.Duration) {
	if p.Duration == 0 {
		p.Duration = v
	}
}

// DeviceFlowEnabled reports whether headless logins are on.
func (o OIDC) DeviceFlowEnabled() bool { return o.DeviceFlow == nil || *o.DeviceFlow }

// Validate checks values that decoding cannot, returning every problem.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) { errs = append(errs, err) }

	s := c.Signer
	if err := checkHostPort(s.Listen); err != nil {
		add(c.errAt("signer.listen", "%v", err))
	}
	if u, err := url.Parse(s.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		add(c.errAt("signer.url", "must be an absolute http(s) URL, got %q", s.URL))
	}
	if (s.TLSCert == "") != (s.TLSKey == "") {
		add(c.errAt("signer.tls_cert", "tls_cert and tls_key must be set together"))
	}
	for _, p := range s.HostPatterns {
		if err := checkHostPattern(p); err != nil {
			add(c.errAt("signer.host_patterns", "%v", err))
		}
	}
	o := s.OIDC
	if o.Issuer != "" {
		if u, err := url.Parse(o.Issuer); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			add(c.errAt("signer.oidc.issuer", "must be an absolute http(s) URL, got %q", o.Issuer))
		}
		if o.ClientSecretFile == "" {
			add(c.errAt("signer.oidc.client_secret_file", "required when issuer is set"))
		}
	}
	if !slices.Contains(o.Scopes, "openid") {
		add(c.errAt("signer.oidc.scopes", "must include \"openid\""))
	}

	b := c.Bastion
	if err := checkHostPort(b.Listen); err != nil {
		add(c.errAt("bastion.listen", "%v", err))
	}
	if err := checkHostPort(b.PublicAddr); err != nil {
		add(c.errAt("bastion.public_addr", "%v", err))
	}
	c.validateRevocation(add)
	names := map[string]bool{}
	for i, n := range b.Nodes {
		key := fmt.Sprintf("bastion.node[%d]", i)
		if n.Name == "" {
			add(c.errAt(key+".name", "required"))
		} else if names[n.Name] {
			add(c.errAt(key+".name", "duplicate node name %q", n.Name))
		}
		names[n.Name] = true
		if n.Addr == "" {
			add(c.errAt(key+".addr", "required"))
		} else if err := checkNodeAddr(n.Addr); err != nil {
			add(c.errAt(key+".addr", "%v", err))
		}
		for k := range n.Labels {
			if k == "" || strings.ContainsAny(k, "=: \t") {
				add(c.errAt(key+".labels", "bad label key %q", k))
			}
		}
		if n.Recording != "" && n.Recording != "on" && n.Recording != "off" {
			add(c.errAt(key+".recording", "must be \"on\", \"off\" or empty, got %q", n.Recording))
		}
	}
	if b.ExecCaptureLimit < 0 {
		add(c.errAt("bastion.exec_capture_limit", "must not be negative"))
	}

	c.validateStorage(add)
	c.validateKube(add)
	c.validateOps(add)
	c.validateAudit(add)

	roles := map[string]bool{}
	for i, r := range c.Roles {
		key := fmt.Sprintf("role[%d]", i)
		switch {
		case r.Name == "":
			add(c.errAt(key+".name", "required"))
		case roles[r.Name]:
			add(c.errAt(key+".name", "duplicate role name %q", r.Name))
		case strings.ContainsAny(r.Name, ", \t\n"):
			add(c.errAt(key+".name", "must not contain commas or spaces: %q", r.Name))
		}
		roles[r.Name] = true
		if len(r.Groups) == 0 {
			add(c.errAt(key+".groups", "role %q matches nobody: list at least one IdP group", r.Name))
		}
		for _, l := range r.Logins {
			if l == "" || strings.ContainsAny(l, ", \t\n*?") {
				add(c.errAt(key+".logins", "invalid login %q", l))
			}
		}
		for _, e := range r.Extensions {
			if !slices.Contains(PermitExtensions, e) {
				add(c.errAt(key+".extensions", "unknown extension %q (allowed: %s)", e, strings.Join(PermitExtensions, ", ")))
			}
		}
		for _, a := range r.SourceAddresses {
			if _, err := netip.ParsePrefix(a); err != nil {
				if _, err2 := netip.ParseAddr(a); err2 != nil {
					add(c.errAt(key+".source_addresses", "not an address or CIDR: %q", a))
				}
			}
		}
		if r.Recording != "on" && r.Recording != "off" {
			add(c.errAt(key+".recording", "must be \"on\" or \"off\", got %q", r.Recording))
		}
		for _, n := range r.Nodes {
			if _, err := ParseNodeRule(n); err != nil {
				add(c.errAt(key+".nodes", "%v", err))
			}
		}
	}
	return errors.Join(errs...)
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want host:port, got %q", s)
	}
	_ = host
	if port == "" {
		return fmt.Errorf("missing port in %q", s)
	}
	return nil
}

// checkNodeAddr accepts an IP address or a DNS name, without a port.
func checkNodeAddr(s string) error {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return fmt.Errorf("address %q: zones are not supported", s)
		}
		return nil
	}
	if len(s) > 253 || strings.HasPrefix(s, "-") || strings.HasPrefix(s, ".") {
		return fmt.Errorf("not an IP address or DNS name: %q", s)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return fmt.Errorf("not an IP address or DNS name (no port, no brackets): %q", s)
		}
	}
	return nil
}

func checkHostPattern(p string) error {
	if p == "" {
		return errors.New("empty pattern")
	}
	if strings.Contains(p, "/") {
		if _, err := netip.ParsePrefix(p); err != nil {
			return fmt.Errorf("bad CIDR %q", p)
		}
		return nil
	}
	if _, err := filepath.Match(p, "x"); err != nil {
		return fmt.Errorf("bad glob %q", p)
	}
	return nil
}

// RoleByName returns the named role.
func (c *Config) RoleByName(name string) (Role, bool) {
	for _, r := range c.Roles {
		if r.Name == name {
			return r, true
		}
	}
	return Role{}, false
}
