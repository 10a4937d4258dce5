package login

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/crypto/ssh"
	"golang.org/x/oauth2"

	"github.com/postern-dev/postern/internal/api"
)

// Errors for refused logins; the server maps them to HTTP statuses and
// audit reasons.
var (
	ErrUnknownLogin   = errors.New("unknown or expired login")
	ErrBadPollToken   = errors.New("poll token does not match the login")
	ErrStateMismatch  = errors.New("state does not match any pending login")
	ErrBadToken       = errors.New("identity token refused")
	ErrIdP            = errors.New("identity provider refused the login")
	ErrBadRedirect    = errors.New("redirect must be a loopback http URL with a port")
	ErrDeviceDisabled = errors.New("device login is disabled on this signer")
	ErrTooMany        = errors.New("too many logins in progress")
	ErrUnreachable    = errors.New("identity provider unreachable")
)

// MaxPending bounds the logins held in memory at once.
const MaxPending = 10000

// Config configures the relying party.
type Config struct {
	Issuer        string
	ClientID      string
	ClientSecret  string
	RedirectURL   string
	Scopes        []string
	UsernameClaim string
	GroupsClaim   string
	DeviceFlow    bool
	// Timeout bounds a login from start to certificate.
	Timeout time.Duration
	// HTTPClient talks to the IdP; nil uses http.DefaultClient.
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Claims is what the IdP vouched for.
type Claims struct {
	Subject  string
	Username string
	Groups   []string
}

// Login is one login in progress.
type Login struct {
	ID         string
	Mode       string
	PublicKey  ssh.PublicKey
	TTL        time.Duration
	ClientAddr string
	Redirect   *url.URL

	state, nonce, verifier string
	pollHash               [32]byte
	expires                time.Time

	status, cert, errMsg, hint string
}

// IssueFunc turns verified claims into a certificate (authorized_keys line)
// for l.PublicKey. An error is shown to the person as "error: hint".
type IssueFunc func(ctx context.Context, l *Login, c Claims) (cert string, err error)

// FailFunc is told about every refused step, for the audit log. l is nil
// when no login could be identified.
type FailFunc func(ctx context.Context, l *Login, err error)

// Manager runs logins against one OIDC provider.
type Manager struct {
	cfg   Config
	issue IssueFunc
	fail  FailFunc
	log   *slog.Logger
	// Now is the clock; tests replace it.
	Now func() time.Time

	discoverMu sync.Mutex
	provider   *oidc.Provider

	mu      sync.Mutex
	byID    map[string]*Login
	byState map[string]*Login
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
}

// New returns a Manager. Discovery happens on first use, so the signer can
// start while the IdP is down.
func New(cfg Config, issue IssueFunc, fail FailFunc) *Manager {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{cfg: cfg, issue: issue, fail: fail, log: cfg.Logger, Now: time.Now,
		byID: map[string]*Login{}, byState: map[string]*Login{}, ctx: ctx, cancel: cancel}
}

// Close stops device-flow polling and waits for it.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
}

func (m *Manager) clientCtx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, m.cfg.HTTPClient)
}

func (m *Manager) discover(ctx context.Context) (*oidc.Provider, error) {
	m.discoverMu.Lock()
	defer m.discoverMu.Unlock()
	if m.provider != nil {
		return m.provider, nil
	}
	p, err := oidc.NewProvider(m.clientCtx(ctx), m.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	m.provider = p
	return p, nil
}

func (m *Manager) oauth(p *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     m.cfg.ClientID,
		ClientSecret: m.cfg.ClientSecret,
		Endpoint:     p.Endpoint(),
		RedirectURL:  m.cfg.RedirectURL,
		Scopes:       m.cfg.Scopes,
	}
}

func (m *Manager) verifier(p *oidc.Provider) *oidc.IDTokenVerifier {
	return p.Verifier(&oidc.Config{ClientID: m.cfg.ClientID, Now: m.Now})
}

// StartBrowser begins an authorization-code + PKCE login whose result the
// browser carries back to redirect.
func (m *Manager) StartBrowser(ctx context.Context, pub ssh.PublicKey, ttl time.Duration, redirect, clientAddr string) (*Login, api.LoginStartResponse, error) {
	ru, err := CheckRedirect(redirect)
	if err != nil {
		return nil, api.LoginStartResponse{}, err
	}
	p, err := m.discover(ctx)
	if err != nil {
		return nil, api.LoginStartResponse{}, err
	}
	l, token, err := m.newLogin(api.ModeBrowser, pub, ttl, clientAddr)
	if err != nil {
		return nil, api.LoginStartResponse{}, err
	}
	l.Redirect = ru
	l.state = randString(24)
	l.nonce = randString(24)
	l.verifier = oauth2.GenerateVerifier()
	authURL := m.oauth(p).AuthCodeURL(l.state, oidc.Nonce(l.nonce), oauth2.S256ChallengeOption(l.verifier))
	m.mu.Lock()
	m.byState[l.state] = l
	m.mu.Unlock()
	return l, api.LoginStartResponse{
		LoginID: l.ID, PollToken: token, AuthURL: authURL,
		IntervalSeconds: 1, ExpiresInSeconds: int(m.cfg.Timeout.Seconds()),
	}, nil
}

// StartDevice begins a device-authorization login; the signer polls the
// IdP itself and the client polls the signer.
func (m *Manager) StartDevice(ctx context.Context, pub ssh.PublicKey, ttl time.Duration, clientAddr string) (*Login, api.LoginStartResponse, error) {
	if !m.cfg.DeviceFlow {
		return nil, api.LoginStartResponse{}, ErrDeviceDisabled
	}
	p, err := m.discover(ctx)
	if err != nil {
		return nil, api.LoginStartResponse{}, err
	}
	oc := m.oauth(p)
	if oc.Endpoint.DeviceAuthURL == "" {
		return nil, api.LoginStartResponse{}, fmt.Errorf("%w: it offers no device authorization endpoint", ErrDeviceDisabled)
	}
	l, token, err := m.newLogin(api.ModeDevice, pub, ttl, clientAddr)
	if err != nil {
		return nil, api.LoginStartResponse{}, err
	}
	da, err := oc.DeviceAuth(m.clientCtx(ctx))
	if err != nil {
		m.drop(l)
		return nil, api.LoginStartResponse{}, fmt.Errorf("%w: device authorization: %v", ErrIdP, err)
	}
	expiry := m.Now().Add(m.cfg.Timeout)
	if !da.Expiry.IsZero() && da.Expiry.Before(expiry) {
		expiry = da.Expiry
	}
	m.mu.Lock()
	l.expires = expiry
	m.mu.Unlock()
	m.wg.Add(1)
	go m.pollDevice(l, oc, da, expiry)
	interval := int(da.Interval)
	if interval <= 0 {
		interval = 5
	}
	return l, api.LoginStartResponse{
		LoginID: l.ID, PollToken: token,
		VerificationURI: da.VerificationURI, VerificationURIComplete: da.VerificationURIComplete,
		UserCode: da.UserCode, IntervalSeconds: interval,
		ExpiresInSeconds: int(time.Until(expiry).Seconds()),
	}, nil
}

func (m *Manager) pollDevice(l *Login, oc *oauth2.Config, da *oauth2.DeviceAuthResponse, expiry time.Time) {
	defer m.wg.Done()
	ctx, cancel := context.WithDeadline(m.ctx, expiry)
	defer cancel()
	tok, err := oc.DeviceAccessToken(m.clientCtx(ctx), da)
	if err != nil {
		var re *oauth2.RetrieveError
		switch {
		case errors.As(err, &re):
			m.finish(ctx, l, "", fmt.Errorf("%w: %s", ErrIdP, re.ErrorCode), "start a new login with `postern login --device`")
		case ctx.Err() != nil:
			m.finish(ctx, l, "", fmt.Errorf("%w: device code expired before it was approved", ErrIdP), "start a new login with `postern login --device`")
		default:
			m.finish(ctx, l, "", fmt.Errorf("%w: %v", ErrUnreachable, err), "")
		}
		return
	}
	m.complete(ctx, l, tok, "")
}

// Callback finishes a browser login from the IdP's redirect. The returned
// login (nil when the state matched nothing) tells where to send the
// browser.
func (m *Manager) Callback(ctx context.Context, q url.Values) (*Login, error) {
	state := q.Get("state")
	m.mu.Lock()
	l := m.byState[state]
	if l != nil {
		// A state is good for exactly one callback.
		delete(m.byState, state)
	}
	m.mu.Unlock()
	if l == nil || state == "" {
		err := ErrStateMismatch
		if m.fail != nil {
			m.fail(ctx, nil, err)
		}
		return nil, err
	}
	if m.expired(l) {
		m.finish(ctx, l, "", ErrUnknownLogin, "start a new login")
		return l, ErrUnknownLogin
	}
	if e := q.Get("error"); e != "" {
		err := fmt.Errorf("%w: %s", ErrIdP, e)
		m.finish(ctx, l, "", err, "")
		return l, err
	}
	p, err := m.discover(ctx)
	if err != nil {
		m.finish(ctx, l, "", err, "")
		return l, err
	}
	tok, err := m.oauth(p).Exchange(m.clientCtx(ctx), q.Get("code"), oauth2.VerifierOption(l.verifier))
	if err != nil {
		err = fmt.Errorf("%w: code exchange: %v", ErrIdP, err)
		m.finish(ctx, l, "", err, "start a new login")
		return l, err
	}
	return l, m.complete(ctx, l, tok, l.nonce)
}

// complete verifies the ID token in tok and issues the certificate.
func (m *Manager) complete(ctx context.Context, l *Login, tok *oauth2.Token, nonce string) error {
	claims, err := m.verifyToken(ctx, tok, nonce)
	if err != nil {
		m.finish(ctx, l, "", err, "start a new login; if it keeps failing, the signer's [signer.oidc] settings may not match the IdP")
		return err
	}
	cert, err := m.issue(ctx, l, claims)
	if err != nil {
		m.finish(ctx, l, "", err, hintFor(err))
		return err
	}
	m.finish(ctx, l, cert, nil, "")
	return nil
}

// Hinter lets an IssueFunc error carry advice for the person.
type Hinter interface{ Hint() string }

func hintFor(err error) string {
	var h Hinter
	if errors.As(err, &h) {
		return h.Hint()
	}
	return ""
}

func (m *Manager) verifyToken(ctx context.Context, tok *oauth2.Token, nonce string) (Claims, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Claims{}, fmt.Errorf("%w: the IdP returned no id_token", ErrBadToken)
	}
	p, err := m.discover(ctx)
	if err != nil {
		return Claims{}, err
	}
	idt, err := m.verifier(p).Verify(m.clientCtx(ctx), raw)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if nonce != "" && subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return Claims{}, fmt.Errorf("%w: nonce does not match this login", ErrBadToken)
	}
	var all map[string]any
	if err := idt.Claims(&all); err != nil {
		return Claims{}, fmt.Errorf("%w: decode claims: %v", ErrBadToken, err)
	}
	c := Claims{Subject: idt.Subject}
	c.Username, _ = all[m.cfg.UsernameClaim].(string)
	if c.Username == "" {
		return Claims{}, fmt.Errorf("%w: claim %q is missing or not a string", ErrBadToken, m.cfg.UsernameClaim)
	}
	if v, ok := all["email_verified"].(bool); ok && !v && m.cfg.UsernameClaim == "email" {
		return Claims{}, fmt.Errorf("%w: email is not verified", ErrBadToken)
	}
	switch g := all[m.cfg.GroupsClaim].(type) {
	case nil:
	case []any:
		for _, x := range g {
			if s, ok := x.(string); ok {
				c.Groups = append(c.Groups, s)
			}
		}
	case string:
		c.Groups = []string{g}
	default:
		return Claims{}, fmt.Errorf("%w: claim %q is not a list of strings", ErrBadToken, m.cfg.GroupsClaim)
	}
	return c, nil
}

// finish records the outcome; exactly one of cert and err is set.
func (m *Manager) finish(ctx context.Context, l *Login, cert string, err error, hint string) {
	m.mu.Lock()
	if l.status != api.StatusPending {
		m.mu.Unlock()
		return
	}
	if err != nil {
		l.status, l.errMsg, l.hint = api.StatusFailed, err.Error(), hint
	} else {
		l.status, l.cert = api.StatusDone, cert
	}
	m.mu.Unlock()
	if err != nil && m.fail != nil {
		m.fail(ctx, l, err)
	}
}

// Poll returns the login's state to the client that started it. A done or
// failed login is returned once and then forgotten.
func (m *Manager) Poll(ctx context.Context, id, token string) (api.LoginPollResponse, error) {
	m.mu.Lock()
	l := m.byID[id]
	m.mu.Unlock()
	if l == nil {
		if m.fail != nil {
			m.fail(ctx, nil, fmt.Errorf("%w: %q", ErrUnknownLogin, truncate(id, 64)))
		}
		return api.LoginPollResponse{}, ErrUnknownLogin
	}
	h := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(h[:], l.pollHash[:]) != 1 {
		if m.fail != nil {
			m.fail(ctx, l, ErrBadPollToken)
		}
		return api.LoginPollResponse{}, ErrBadPollToken
	}
	if m.expired(l) {
		m.finish(ctx, l, "", fmt.Errorf("%w: the login was not completed in time", ErrUnknownLogin), "start a new login")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	resp := api.LoginPollResponse{Status: l.status, Certificate: l.cert, Error: l.errMsg, Hint: l.hint}
	if l.status != api.StatusPending {
		m.forget(l)
	}
	return resp, nil
}

func (m *Manager) expired(l *Login) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.Now().After(l.expires)
}

func (m *Manager) newLogin(mode string, pub ssh.PublicKey, ttl time.Duration, clientAddr string) (*Login, string, error) {
	token := randString(32)
	l := &Login{
		ID: randHex(16), Mode: mode, PublicKey: pub, TTL: ttl, ClientAddr: clientAddr,
		pollHash: sha256.Sum256([]byte(token)), expires: m.Now().Add(m.cfg.Timeout),
		status: api.StatusPending,
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.purgeLocked()
	if len(m.byID) >= MaxPending {
		return nil, "", ErrTooMany
	}
	m.byID[l.ID] = l
	return l, token, nil
}

func (m *Manager) drop(l *Login) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forget(l)
}

func (m *Manager) forget(l *Login) {
	delete(m.byID, l.ID)
	if l.state != "" {
		delete(m.byState, l.state)
	}
}

// purgeLocked forgets logins that ended or expired a while ago and were
// never collected.
func (m *Manager) purgeLocked() {
	cutoff := m.Now().Add(-time.Minute)
	for _, l := range m.byID {
		if l.expires.Before(cutoff) {
			m.forget(l)
		}
	}
}

// CheckRedirect accepts only http URLs on a loopback address with a port:
// the signer must never become an open redirector.
func CheckRedirect(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" || u.User != nil || u.Port() == "" {
		return nil, ErrBadRedirect
	}
	host := u.Hostname()
	if host != "localhost" {
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return nil, ErrBadRedirect
		}
	}
	return u, nil
}

func randString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
