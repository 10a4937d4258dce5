package server

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/api"
	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/auditlog"
	"github.com/postern-dev/postern/internal/bastionauth"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/metrics"
	"github.com/postern-dev/postern/internal/sshcert"
	"github.com/postern-dev/postern/internal/version"
	"github.com/postern-dev/postern/signer/ca"
	"github.com/postern-dev/postern/signer/login"
	"github.com/postern-dev/postern/signer/policy"
	"github.com/postern-dev/postern/signer/revocation"
)

// maxBody bounds request bodies.
const maxBody = 64 << 10

// Options are the server's injected dependencies.
type Options struct {
	Logger *slog.Logger
	Audit  audit.Emitter
	// IdPClient talks to the identity provider (nil: http.DefaultClient).
	IdPClient *http.Client
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Revocations stores the revocation list (nil: the store the config's
	// signer.revocation_store names, see revocation.Open).
	Revocations revocation.Store
	// AuditStats reports the audit log's S3 shipping, for metrics (nil or
	// ok false: not shipping).
	AuditStats func() (auditlog.Stats, bool)
}

// Server is the signer's HTTP API.
type Server struct {
	cfg *config.Config
	// roles are the [[role]] entries in force, swapped by Reload.
	roles  atomic.Pointer[[]config.Role]
	userCA *ca.Authority
	hostCA *ca.Authority
	logins *login.Manager
	log    *slog.Logger
	audit  audit.Emitter
	now    func() time.Time
	// metrics are the Prometheus metrics (metrics.go).
	metrics *signerMetrics
	revs    *revocation.Cache
	// bastions authenticates bastions' signed requests.
	bastions *bastionauth.Verifier
	// sigs remembers the CA signatures of the certificates bastions
	// present (their own host certificates, the persons' certificates)
	// that verified; see sshcert.SigCache.
	sigs *sshcert.SigCache
}

// New loads the CA keys and the OIDC client secret named in cfg.
func New(cfg *config.Config, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Audit == nil {
		return nil, errors.New("signer server needs an audit emitter")
	}
	m := newSignerMetrics()
	auditlog.RegisterMetrics(m.reg, opts.AuditStats)
	s := &Server{cfg: cfg, log: opts.Logger, audit: metrics.CountingEmitter{Inner: opts.Audit, Errors: m.auditErrs, Observe: m.observe}, now: opts.Now, metrics: m}
	s.roles.Store(&cfg.Roles)
	if opts.Revocations == nil {
		st, err := revocation.Open(context.Background(), cfg, opts.Logger)
		if err != nil {
			return nil, err
		}
		opts.Revocations = st
	}
	s.revs = &revocation.Cache{Store: opts.Revocations}
	var err error
	if s.userCA, err = ca.Load(cfg.Signer.UserCAKey); err != nil {
		return nil, fmt.Errorf("load user CA: %w", err)
	}
	if s.hostCA, err = ca.Load(cfg.Signer.HostCAKey); err != nil {
		return nil, fmt.Errorf("load host CA: %w", err)
	}
	s.userCA.Now, s.hostCA.Now = opts.Now, opts.Now
	s.sigs = sshcert.NewSigCache(0)
	s.bastions = &bastionauth.Verifier{
		Sigs:       s.sigs,
		HostCA:     func() []ssh.PublicKey { return []ssh.PublicKey{s.hostCA.PublicKey()} },
		Principals: func() []string { return cfg.Signer.Bastions },
		Now:        opts.Now,
	}
	o := cfg.Signer.OIDC
	if o.Issuer != "" {
		secret, err := os.ReadFile(o.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("read OIDC client secret: %w", err)
		}
		s.logins = login.New(login.Config{
			Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: strings.TrimSpace(string(secret)),
			RedirectURL: o.RedirectURL, Scopes: o.Scopes,
			UsernameClaim: o.UsernameClaim, GroupsClaim: o.GroupsClaim,
			DeviceFlow: o.DeviceFlowEnabled(), Timeout: cfg.Signer.LoginTimeout.Duration,
			HTTPClient: opts.IdPClient, Logger: opts.Logger,
		}, s.issueUser, s.loginFailed)
		s.logins.Now = opts.Now
	}
	return s, nil
}

// Close stops background work.
func (s *Server) Close() {
	if s.logins != nil {
		s.logins.Close()
	}
}

// Handler returns the HTTP API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.PathCA, s.handleCA)
	mux.HandleFunc("POST "+api.PathLoginStart, s.handleLoginStart)
	mux.HandleFunc("POST "+api.PathLoginPoll, s.handleLoginPoll)
	mux.HandleFunc("GET "+api.PathCallback, s.handleCallback)
	mux.HandleFunc("POST "+api.PathHostCert, s.handleHostCert)
	mux.HandleFunc("POST "+api.PathRevoke, s.handleRevoke)
	mux.HandleFunc("GET "+api.PathKRL, s.handleKRL)
	mux.HandleFunc("GET "+api.PathRevocations, s.handleRevocations)
	mux.HandleFunc("POST "+api.PathDelegate, s.handleDelegate)
	mux.HandleFunc("POST "+api.PathNodeHostCert, s.handleNodeHostCert)
	mux.HandleFunc("GET "+api.PathHealth, func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	return mux
}

// Run serves HTTPS on the configured address until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	cert, err := LoadTLS(s.cfg.Signer)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.cfg.Signer.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return s.Serve(ctx, ln, cert)
}

// Serve serves HTTPS on ln until ctx is done, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, ln net.Listener, cert tls.Certificate) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if err := s.startMetrics(ctx); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	s.log.Info("signer listening", "addr", ln.Addr().String(), "url", s.cfg.Signer.URL)
	s.metrics.serving.Store(true)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.metrics.stopping.Store(true)
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := hs.Shutdown(sctx)
	s.Close()
	return err
}

func (s *Server) handleCA(w http.ResponseWriter, r *http.Request) {
	info := api.CAInfo{
		UserCA:  []string{authorizedKey(s.userCA.PublicKey())},
		HostCA:  []string{authorizedKey(s.hostCA.PublicKey())},
		Issuer:  s.cfg.Signer.OIDC.Issuer,
		Version: version.Version,
	}
	info.DeviceFlow = s.logins != nil && s.cfg.Signer.OIDC.DeviceFlowEnabled()
	b := s.cfg.Bastion
	info.Bastion = &api.BastionInfo{Name: b.Name, Addr: b.PublicAddr, JumpHosts: b.JumpHosts}
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) handleLoginStart(w http.ResponseWriter, r *http.Request) {
	if s.logins == nil {
		writeErr(w, http.StatusServiceUnavailable, "this signer has no identity provider configured", "set [signer.oidc] issuer in the signer's config")
		return
	}
	var req api.LoginStartRequest
	if !readJSON(w, r, &req) {
		return
	}
	pub, err := parseUserKey(req.PublicKey)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error(), "")
		return
	}
	ttl := time.Duration(req.TTLSeconds) * time.Second
	client := clientAddr(r)
	var (
		l    *login.Login
		resp api.LoginStartResponse
	)
	switch req.Mode {
	case api.ModeBrowser, "":
		l, resp, err = s.logins.StartBrowser(r.Context(), pub, ttl, req.RedirectURL, client)
	case api.ModeDevice:
		l, resp, err = s.logins.StartDevice(r.Context(), pub, ttl, client)
	default:
		writeErr(w, http.StatusBadRequest, fmt.Sprintf("unknown login mode %q", req.Mode), "use \"browser\" or \"device\"")
		return
	}
	if err != nil {
		s.emit(r.Context(), audit.Event{Event: audit.LoginFailed, ClientAddr: client, KeyFP: sshcert.Fingerprint(pub), Method: req.Mode, Reason: err.Error()})
		status := http.StatusBadGateway
		switch {
		case errors.Is(err, login.ErrBadRedirect):
			status = http.StatusBadRequest
		case errors.Is(err, login.ErrDeviceDisabled):
			status = http.StatusNotImplemented
		case errors.Is(err, login.ErrTooMany):
			status = http.StatusTooManyRequests
		}
		writeErr(w, status, err.Error(), "")
		return
	}
	s.emit(r.Context(), audit.Event{Event: audit.LoginStarted, ClientAddr: client, KeyFP: sshcert.Fingerprint(pub), Method: l.Mode, LoginID: l.ID})
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) handleLoginPoll(w http.ResponseWriter, r *http.Request) {
	if s.logins == nil {
		writeErr(w, http.StatusServiceUnavailable, "this signer has no identity provider configured", "")
		return
	}
	var req api.LoginPollRequest
	if !readJSON(w, r, &req) {
		return
	}
	resp, err := s.logins.Poll(r.Context(), req.LoginID, req.PollToken)
	switch {
	case errors.Is(err, login.ErrUnknownLogin):
		writeErr(w, http.StatusNotFound, err.Error(), "start a new login")
	case errors.Is(err, login.ErrBadPollToken):
		writeErr(w, http.StatusForbidden, err.Error(), "")
	case err != nil:
		writeErr(w, http.StatusInternalServerError, err.Error(), "")
	default:
		writeJSON(w, http.StatusOK, resp)
	}
}

var resultPage = template.Must(template.New("r").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>postern login</title></head>
<body><h1>{{.Title}}</h1><p>{{.Text}}</p></body></html>
`))

func (s *Server) handleCallback(w http.ResponseWriter, r *http.Request) {
	if s.logins == nil {
		http.NotFound(w, r)
		return
	}
	l, err := s.logins.Callback(r.Context(), r.URL.Query())
	if l == nil || l.Redirect == nil {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusBadRequest)
		_ = resultPage.Execute(w, map[string]string{"Title": "Login failed", "Text": "This login link is not valid or was already used. Run postern login again."})
		return
	}
	u := *l.Redirect
	q := u.Query()
	q.Set("login_id", l.ID)
	if err != nil {
		q.Set("status", api.StatusFailed)
	} else {
		q.Set("status", api.StatusDone)
	}
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// noRoleError carries advice for a person no role matched.
type noRoleError struct{ error }

func (noRoleError) Hint() string {
	return "ask an administrator to add you to an IdP group that a postern role lists"
}

// issueUser is the login package's IssueFunc: policy, signature, audit.
func (s *Server) issueUser(ctx context.Context, l *login.Login, c login.Claims) (string, error) {
	ev := audit.Event{Person: c.Username, Groups: c.Groups, ClientAddr: l.ClientAddr, LoginID: l.ID,
		Method: l.Mode, KeyFP: sshcert.Fingerprint(l.PublicKey)}
	if err := s.checkNotRevoked(ctx, c.Username, l.PublicKey); err != nil {
		ev.Event, ev.Reason = audit.CertRefused, err.Error()
		s.emit(ctx, ev)
		return "", err
	}
	g, err := policy.Decide(*s.roles.Load(), c.Groups)
	if err != nil {
		ev.Event, ev.Reason = audit.CertRefused, err.Error()
		s.emit(ctx, ev)
		return "", noRoleError{fmt.Errorf("%w (you are %s, groups: %s)", err, c.Username, groupList(c.Groups))}
	}
	cert, err := s.userCA.SignUser(ca.UserCert{
		Key: l.PublicKey, KeyID: c.Username, Principals: g.Logins, TTL: g.TTL(l.TTL),
		Extensions: g.Extensions, CriticalOptions: g.CriticalOptions,
	})
	if err != nil {
		ev.Event, ev.Reason = audit.CertRefused, err.Error()
		s.emit(ctx, ev)
		return "", err
	}
	va, vb := time.Unix(int64(cert.ValidAfter), 0).UTC(), time.Unix(int64(cert.ValidBefore), 0).UTC()
	ev.Event, ev.Roles, ev.Principals, ev.Serial, ev.ValidAfter, ev.ValidBefore = audit.CertIssued, g.Roles, g.Logins, cert.Serial, &va, &vb
	// An issuance that cannot be audited is not made.
	if err := s.audit.Emit(ctx, ev); err != nil {
		s.log.Error("audit write failed; certificate withheld", "err", err, "login_id", l.ID)
		return "", errors.New("the signer cannot write its audit log")
	}
	s.log.Info("certificate issued", "person", c.Username, "serial", cert.Serial, "roles", g.Roles, "login_id", l.ID)
	return authorizedKey(cert), nil
}

func groupList(g []string) string {
	if len(g) == 0 {
		return "none"
	}
	return strings.Join(g, ", ")
}

func (s *Server) loginFailed(ctx context.Context, l *login.Login, err error) {
	ev := audit.Event{Event: audit.LoginFailed, Reason: err.Error()}
	if l != nil {
		ev.LoginID, ev.ClientAddr, ev.Method, ev.KeyFP = l.ID, l.ClientAddr, l.Mode, sshcert.Fingerprint(l.PublicKey)
	}
	s.log.Warn("login failed", "login_id", ev.LoginID, "reason", ev.Reason)
	s.emit(ctx, ev)
}

func (s *Server) handleHostCert(w http.ResponseWriter, r *http.Request) {
	client := clientAddr(r)
	ev := audit.Event{Event: audit.HostCertRefused, ClientAddr: client}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !s.validJoinToken(token) {
		ev.Reason = "missing or unknown join token"
		s.emit(r.Context(), ev)
		writeErr(w, http.StatusUnauthorized, "join token refused", "pass a token listed in the signer's join_token_file")
		return
	}
	var req api.HostCertRequest
	if !readJSON(w, r, &req) {
		return
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey))
	if err == nil {
		if _, isCert := pub.(*ssh.Certificate); isCert {
			err = errors.New("a certificate is not a host key")
		}
	}
	if err != nil {
		ev.Reason = "bad public key"
		s.emit(r.Context(), ev)
		writeErr(w, http.StatusBadRequest, fmt.Sprintf("parse public key: %v", err), "")
		return
	}
	ev.KeyFP, ev.Principals = sshcert.Fingerprint(pub), req.Hosts
	if err := HostsAllowed(s.cfg.Signer.HostPatterns, req.Hosts); err != nil {
		ev.Reason = err.Error()
		s.emit(r.Context(), ev)
		writeErr(w, http.StatusForbidden, err.Error(), "the signer's host_patterns must cover every requested name")
		return
	}
	cert, err := s.hostCA.SignHost(pub, req.Hosts, s.cfg.Signer.HostCertTTL.Duration)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error(), "")
		return
	}
	ev.Event, ev.Serial, ev.Method = audit.HostCertIssued, cert.Serial, "join-token"
	if err := s.audit.Emit(r.Context(), ev); err != nil {
		writeErr(w, http.StatusInternalServerError, "the signer cannot write its audit log", "")
		return
	}
	writeJSON(w, http.StatusOK, api.HostCertResponse{Certificate: authorizedKey(cert)})
}

// validJoinToken compares against every token in the join token file,
// re-read on each request so tokens can be rotated without a restart.
func (s *Server) validJoinToken(token string) bool {
	_, ok := s.matchToken("join token file", s.cfg.Signer.JoinTokenFile, token)
	return ok
}

// matchToken compares token in constant time against every token in the
// file at path (one per line, # comments) and returns the 1-based number of
// the matching token. The file is re-read on each call, so a removed token
// stops working at once. An empty path or token matches nothing.
func (s *Server) matchToken(what, path, token string) (int, bool) {
	if path == "" || token == "" {
		return 0, false
	}
	f, err := os.Open(path)
	if err != nil {
		s.log.Error("read "+what, "err", err)
		return 0, false
	}
	defer f.Close()
	want := sha256.Sum256([]byte(token))
	n, match := 0, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		n++
		h := sha256.Sum256([]byte(line))
		if subtle.ConstantTimeCompare(h[:], want[:]) == 1 && match == 0 {
			match = n
		}
	}
	return match, match != 0
}

// HostsAllowed checks every requested host against patterns (globs and
// CIDRs). An empty pattern list allows nothing.
func HostsAllowed(patterns, hosts []string) error {
	if len(hosts) == 0 {
		return errors.New("no host names requested")
	}
	for _, h := range hosts {
		if !hostAllowed(patterns, h) {
			return fmt.Errorf("host %q is not covered by the signer's host_patterns", h)
		}
	}
	return nil
}

func hostAllowed(patterns []string, h string) bool {
	if h == "" || strings.ContainsAny(h, " ,*?[]") {
		return false
	}
	addr, addrErr := netip.ParseAddr(h)
	for _, p := range patterns {
		if strings.Contains(p, "/") {
			if pr, err := netip.ParsePrefix(p); err == nil && addrErr == nil && pr.Contains(addr.Unmap()) {
				return true
			}
			continue
		}
		if ok, _ := filepath.Match(p, strings.ToLower(h)); ok {
			return true
		}
	}
	return false
}

// SignHostKey signs a host key directly (the operator's host-cert command).
func SignHostKey(cfg *config.Config, pub ssh.PublicKey, hosts []string, ttl time.Duration) (*ssh.Certificate, error) {
	a, err := ca.Load(cfg.Signer.HostCAKey)
	if err != nil {
		return nil, err
	}
	if ttl <= 0 {
		ttl = cfg.Signer.HostCertTTL.Duration
	}
	return a.SignHost(pub, hosts, ttl)
}

func parseUserKey(s string) (ssh.PublicKey, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	if _, ok := pub.(*ssh.Certificate); ok {
		return nil, errors.New("send a plain public key, not a certificate")
	}
	if ck, ok := pub.(ssh.CryptoPublicKey); ok {
		if k, ok := ck.CryptoPublicKey().(interface{ Size() int }); ok && pub.Type() == ssh.KeyAlgoRSA && k.Size()*8 < 2048 {
			return nil, errors.New("RSA keys shorter than 2048 bits are refused")
		}
	}
	return pub, nil
}

func authorizedKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func clientAddr(r *http.Request) string {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap().String()
	}
	return r.RemoteAddr
}

func (s *Server) emit(ctx context.Context, e audit.Event) {
	if err := s.audit.Emit(ctx, e); err != nil {
		s.log.Error("audit write failed", "err", err, "event", e.Event)
	}
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, "malformed request: "+err.Error(), "")
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, msg, hint string) {
	writeJSON(w, status, api.Error{Error: msg, Hint: hint})
}

// Reload applies the roles of a newly loaded configuration (SIGHUP): which
// IdP groups get which roles, logins, extensions, TTLs and source
// addresses, for certificates issued from then on. Everything else (keys,
// listeners, the IdP, storage) needs a restart. cfg must have been loaded
// and validated (config.Load).
func (s *Server) Reload(cfg *config.Config) error {
	roles := cfg.Roles
	s.roles.Store(&roles)
	s.log.Info("reloaded roles", "roles", len(roles))
	return nil
}
