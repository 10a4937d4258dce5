package api

import "time"

// Paths served by the signer.
const (
	PathCA          = "/v1/ca"
	PathLoginStart  = "/v1/login/start"
	PathLoginPoll   = "/v1/login/poll"
	PathCallback    = "/v1/login/callback"
	PathHostCert    = "/v1/host-cert"
	PathHealth      = "/healthz"
	PathRevoke      = "/v1/revoke"
	PathKRL         = "/v1/krl"
	PathRevocations = "/v1/revocations"
)

// HeaderKRLGeneration carries the revocation list's generation on
// GET /v1/krl and GET /v1/revocations. It only grows; a reader that sees a
// smaller one than it already has is talking to a stale signer.
const HeaderKRLGeneration = "X-Postern-KRL-Generation"

// Revocation kinds.
const (
	// RevokeSerial revokes one certificate of a CA by serial number.
	RevokeSerial = "serial"
	// RevokeKeyID revokes every certificate of a CA with a key ID, that is
	// the person: those alive now and any issued later, until undone.
	RevokeKeyID = "key_id"
	// RevokeKey revokes a plain public key and every certificate for it.
	RevokeKey = "key"
)

// Login modes.
const (
	ModeBrowser = "browser"
	ModeDevice  = "device"
)

// Login states returned by the poll endpoint.
const (
	StatusPending = "pending"
	StatusDone    = "done"
	StatusFailed  = "failed"
)

// CAInfo is returned by GET /v1/ca: everything a client needs besides the
// signer's URL.
type CAInfo struct {
	// UserCA and HostCA are authorized_keys-format public keys.
	UserCA []string `json:"user_ca"`
	HostCA []string `json:"host_ca"`
	// DeviceFlow tells whether --device logins are offered.
	DeviceFlow bool `json:"device_flow"`
	// Issuer is the IdP people sign in at (informational).
	Issuer string `json:"issuer,omitempty"`
	// Bastion describes the SSH entry point for `postern config`.
	Bastion *BastionInfo `json:"bastion,omitempty"`
	// Version of the signer.
	Version string `json:"version,omitempty"`
}

// BastionInfo is what `postern config` writes into ssh_config.
type BastionInfo struct {
	Name      string   `json:"name"`       // ssh_config alias
	Addr      string   `json:"addr"`       // host:port
	JumpHosts []string `json:"jump_hosts"` // Host patterns routed through it
}

// LoginStartRequest begins a login for PublicKey.
type LoginStartRequest struct {
	// PublicKey (authorized_keys format) is the only key this login can
	// get certified.
	PublicKey string `json:"public_key"`
	// Mode is ModeBrowser or ModeDevice.
	Mode string `json:"mode"`
	// TTLSeconds requested; 0 means the roles' maximum. Capped, not refused.
	TTLSeconds int64 `json:"ttl_seconds,omitempty"`
	// RedirectURL is the CLI's loopback listener (browser mode only); the
	// signer sends the browser there when the login is over. Must be
	// http://127.0.0.1:PORT/..., http://[::1]:PORT/... or
	// http://localhost:PORT/....
	RedirectURL string `json:"redirect_url,omitempty"`
}

// LoginStartResponse tells the CLI where the person signs in.
type LoginStartResponse struct {
	LoginID string `json:"login_id"`
	// PollToken must accompany every poll; only this client knows it.
	PollToken string `json:"poll_token"`
	// AuthURL is opened in the browser (browser mode).
	AuthURL string `json:"auth_url,omitempty"`
	// Device mode: where to go and what to type.
	VerificationURI         string `json:"verification_uri,omitempty"`
	VerificationURIComplete string `json:"verification_uri_complete,omitempty"`
	UserCode                string `json:"user_code,omitempty"`
	// IntervalSeconds between polls.
	IntervalSeconds int `json:"interval_seconds"`
	// ExpiresInSeconds until the login is abandoned.
	ExpiresInSeconds int `json:"expires_in_seconds"`
}

// LoginPollRequest asks for a login's result.
type LoginPollRequest struct {
	LoginID   string `json:"login_id"`
	PollToken string `json:"poll_token"`
}

// LoginPollResponse carries the certificate once the login is done.
type LoginPollResponse struct {
	Status string `json:"status"`
	// Certificate in authorized_keys format (StatusDone).
	Certificate string `json:"certificate,omitempty"`
	// Error and Hint explain StatusFailed in words fit for the person.
	Error string `json:"error,omitempty"`
	Hint  string `json:"hint,omitempty"`
}

// HostCertRequest asks for a host certificate; the join token goes in the
// Authorization header as a bearer token.
type HostCertRequest struct {
	PublicKey string   `json:"public_key"`
	Hosts     []string `json:"hosts"` // names and addresses, become principals
}

// HostCertResponse returns the host certificate.
type HostCertResponse struct {
	Certificate string `json:"certificate"`
}

// Error is the body of every non-2xx response.
type Error struct {
	Error string `json:"error"`
	Hint  string `json:"hint,omitempty"`
}

// RevokeRequest is the body of POST /v1/revoke; an admin token goes in the
// Authorization header as a bearer token. Exactly one of KeyID, Serial and
// PublicKey is set.
type RevokeRequest struct {
	KeyID string `json:"key_id,omitempty"`
	// Serial of a certificate issued by the signer's user CA.
	Serial uint64 `json:"serial,omitempty"`
	// PublicKey in authorized_keys format (a plain key, not a certificate).
	PublicKey string `json:"public_key,omitempty"`
	// Reason is required: it goes to the revocation list and the audit log.
	Reason string `json:"reason"`
	// Undo removes the revocation instead (e.g. a person who returns).
	Undo bool `json:"undo,omitempty"`
}

// RevokeResponse reports the list after a revoke request.
type RevokeResponse struct {
	// Generation of the list after the request.
	Generation uint64 `json:"generation"`
	// Changed is false when the target was already revoked (or, with Undo,
	// was not revoked); the list is then unchanged.
	Changed bool `json:"changed"`
	// Revocation is the entry added, found or removed.
	Revocation Revocation `json:"revocation"`
}

// RevocationList is returned by GET /v1/revocations.
type RevocationList struct {
	// Generation grows with every change; it is also the KRL's version.
	Generation uint64 `json:"generation"`
	// Updated is the time of the last change (zero for an empty list).
	Updated     time.Time    `json:"updated"`
	Revocations []Revocation `json:"revocations"`
}

// Revocation is one entry of the list.
type Revocation struct {
	// Kind is RevokeSerial, RevokeKeyID or RevokeKey.
	Kind string `json:"kind"`
	// CA is the issuing CA's public key (authorized_keys format) for
	// RevokeSerial and RevokeKeyID.
	CA     string `json:"ca,omitempty"`
	Serial uint64 `json:"serial,omitempty"`
	KeyID  string `json:"key_id,omitempty"`
	// PublicKey (authorized_keys format) and KeyFP (SHA256:…) for RevokeKey.
	PublicKey string `json:"public_key,omitempty"`
	KeyFP     string `json:"key_fp,omitempty"`
	// Time the revocation was made.
	Time time.Time `json:"time"`
	// Reason and By (who revoked) are shown to admins only.
	Reason string `json:"reason,omitempty"`
	By     string `json:"by,omitempty"`
}

// Paths a bastion calls, authenticated with internal/bastionauth.
const (
	PathDelegate     = "/v1/bastion/delegate"
	PathNodeHostCert = "/v1/bastion/host-cert"
)

// DelegateRequest asks for a short certificate that lets the bastion log
// in to a node as the person (recording mode). The envelope fields of
// internal/bastionauth are embedded by the caller's JSON.
type DelegateRequest struct {
	BastionCert string `json:"bastion_cert"`
	Timestamp   int64  `json:"timestamp"`
	Nonce       string `json:"nonce"`
	// PersonCert is the person's user certificate the bastion just
	// authenticated (authorized_keys line).
	PersonCert string `json:"person_cert"`
	// Login is the one Unix account asked for.
	Login string `json:"login"`
	// Node names the node, for the audit log.
	Node string `json:"node"`
	// PublicKey is the bastion's key for this connection.
	PublicKey string `json:"public_key"`
	// SessionID ties the issuance to the bastion's session.
	SessionID string `json:"session_id,omitempty"`
}

// NodeHostCertRequest asks for a host certificate for node names, which
// the bastion presents to clients in recording mode.
type NodeHostCertRequest struct {
	BastionCert string   `json:"bastion_cert"`
	Timestamp   int64    `json:"timestamp"`
	Nonce       string   `json:"nonce"`
	PublicKey   string   `json:"public_key"`
	Hosts       []string `json:"hosts"`
}

// CertResponse carries one certificate.
type CertResponse struct {
	Certificate string `json:"certificate"`
}
