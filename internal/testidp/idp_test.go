package testidp

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
)

const (
	clientID     = "postern"
	clientSecret = "s3cret"
	redirectURI  = "http://127.0.0.1:1/callback" // never requested: BrowserLogin stops there
)

var testUsers = []User{
	{Username: "alice", Password: "alice-pw", Email: "alice@example.com", Groups: []string{"infra", "dev"}},
	{Username: "bob", Password: "bob-pw", Email: "bob@example.com"},
}

func startIdP(t *testing.T, cfg Config) *IdP {
	t.Helper()
	cfg.Users = append(cfg.Users, testUsers...)
	cfg.Clients = []Client{{ID: clientID, Secret: clientSecret, RedirectURIs: []string{redirectURI}}}
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	p, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("start idp: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close idp: %v", err)
		}
	})
	return p
}

// relyingParty is what the signer does: discovery, oauth2 config, verifier.
type relyingParty struct {
	provider *oidc.Provider
	oauth    *oauth2.Config
	verifier *oidc.IDTokenVerifier
}

func newRP(t *testing.T, p *IdP, style oauth2.AuthStyle) *relyingParty {
	t.Helper()
	provider, err := oidc.NewProvider(t.Context(), p.Issuer())
	if err != nil {
		t.Fatalf("discover %s: %v", p.Issuer(), err)
	}
	ep := provider.Endpoint()
	ep.AuthStyle = style
	return &relyingParty{
		provider: provider,
		verifier: provider.Verifier(&oidc.Config{ClientID: clientID}),
		oauth: &oauth2.Config{
			ClientID: clientID, ClientSecret: clientSecret, Endpoint: ep, RedirectURL: redirectURI,
			Scopes: []string{oidc.ScopeOpenID, "profile", "email", "groups"},
		},
	}
}

type idClaims struct {
	Email             string   `json:"email"`
	EmailVerified     bool     `json:"email_verified"`
	PreferredUsername string   `json:"preferred_username"`
	Name              string   `json:"name"`
	Groups            []string `json:"groups"`
}

var aliceClaims = idClaims{Email: "alice@example.com", EmailVerified: true, PreferredUsername: "alice", Name: "alice", Groups: []string{"infra", "dev"}}

func (rp *relyingParty) verify(t *testing.T, tok *oauth2.Token) (*oidc.IDToken, idClaims) {
	t.Helper()
	raw, _ := tok.Extra("id_token").(string)
	idt, err := rp.verifier.Verify(t.Context(), raw)
	if err != nil {
		t.Fatalf("verify id token: %v", err)
	}
	var c idClaims
	if err := idt.Claims(&c); err != nil {
		t.Fatalf("decode id token claims: %v", err)
	}
	return idt, c
}

func atRedirect(u *url.URL) bool { return strings.HasPrefix(u.String(), redirectURI) }

// login runs the browser part of the code flow and returns the code.
func (rp *relyingParty) login(t *testing.T, user, password string, opts ...oauth2.AuthCodeOption) string {
	t.Helper()
	res, err := BrowserLogin(t.Context(), rp.oauth.AuthCodeURL("state-1", opts...), user, password, atRedirect)
	if err != nil {
		t.Fatalf("browser login: %v", err)
	}
	q := res.FinalURL.Query()
	if !atRedirect(res.FinalURL) || q.Get("state") != "state-1" || q.Get("code") == "" {
		t.Fatalf("browser login ended at %s (status %d), want the redirect uri with state and code", res.FinalURL, res.Status)
	}
	return q.Get("code")
}

func TestCodeFlowPKCE(t *testing.T) {
	p := startIdP(t, Config{RequirePKCE: true})
	for _, tt := range []struct {
		name  string
		style oauth2.AuthStyle
	}{
		{"client_secret_basic", oauth2.AuthStyleInHeader},
		{"client_secret_post", oauth2.AuthStyleInParams},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rp := newRP(t, p, tt.style)
			verifier := oauth2.GenerateVerifier()
			code := rp.login(t, "alice", "alice-pw", oidc.Nonce("nonce-1"), oauth2.S256ChallengeOption(verifier))
			tok, err := rp.oauth.Exchange(t.Context(), code, oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("exchange code: %v", err)
			}
			idt, claims := rp.verify(t, tok)
			if idt.Nonce != "nonce-1" || idt.Subject != "alice" {
				t.Errorf("id token nonce %q subject %q, want nonce-1 alice", idt.Nonce, idt.Subject)
			}
			if diff := cmp.Diff(aliceClaims, claims); diff != "" {
				t.Errorf("id token claims (-want +got):\n%s", diff)
			}
			info, err := rp.provider.UserInfo(t.Context(), oauth2.StaticTokenSource(tok))
			if err != nil {
				t.Fatalf("userinfo: %v", err)
			}
			var infoClaims idClaims
			if err := info.Claims(&infoClaims); err != nil {
				t.Fatalf("decode userinfo: %v", err)
			}
			if diff := cmp.Diff(aliceClaims, infoClaims); diff != "" {
				t.Errorf("userinfo claims (-want +got):\n%s", diff)
			}
			if _, err := rp.oauth.Exchange(t.Context(), code, oauth2.VerifierOption(verifier)); err == nil {
				t.Error("second exchange of the same code succeeded, want refused")
			}
		})
	}
}

func TestLoginRefused(t *testing.T) {
	tests := []struct {
		name, redirect, user, password string
		cfg                            Config
		before                         func(*IdP)
		wantStatus                     int
		wantError                      string // the error query parameter, when refused by redirect
	}{
		{name: "wrong password", user: "alice", password: "nope", wantStatus: http.StatusUnauthorized},
		{name: "unknown user", user: "mallory", password: "alice-pw", wantStatus: http.StatusUnauthorized},
		{name: "unregistered redirect uri", redirect: "http://127.0.0.1:1/evil", user: "alice", password: "alice-pw", wantStatus: http.StatusBadRequest},
		{name: "removed user", user: "alice", password: "alice-pw", before: func(p *IdP) { p.SetUsers(testUsers[1:]) }, wantStatus: http.StatusUnauthorized},
		{name: "pkce required", cfg: Config{RequirePKCE: true}, user: "alice", password: "alice-pw", wantStatus: http.StatusFound, wantError: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startIdP(t, tt.cfg)
			if tt.before != nil {
				tt.before(p)
			}
			rp := newRP(t, p, oauth2.AuthStyleInHeader)
			if tt.redirect != "" {
				rp.oauth.RedirectURL = tt.redirect
			}
			reached := func(u *url.URL) bool { return strings.HasPrefix(u.String(), "http://127.0.0.1:1/") }
			res, err := BrowserLogin(t.Context(), rp.oauth.AuthCodeURL("s"), tt.user, tt.password, reached)
			if err != nil {
				t.Fatalf("browser login: %v", err)
			}
			q := res.FinalURL.Query()
			if res.Status != tt.wantStatus || q.Get("code") != "" || q.Get("error") != tt.wantError {
				t.Errorf("ended at %s with status %d, want status %d, error %q and no code", res.FinalURL, res.Status, tt.wantStatus, tt.wantError)
			}
			if reached(res.FinalURL) && tt.wantError == "" {
				t.Errorf("redirected to the relying party: %s", res.FinalURL)
			}
		})
	}
}

func TestTokenRefused(t *testing.T) {
	tests := []struct {
		name     string
		secret   string
		verifier func(v string) string
		before   func(*IdP)
		wantCode string
	}{
		{name: "wrong client secret", secret: "wrong", wantCode: "invalid_client"},
		{name: "wrong pkce verifier", verifier: func(string) string { return oauth2.GenerateVerifier() }, wantCode: "invalid_grant"},
		{name: "user removed after login", before: func(p *IdP) { p.SetUsers(nil) }, wantCode: "invalid_grant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startIdP(t, Config{})
			rp := newRP(t, p, oauth2.AuthStyleInHeader)
			verifier := oauth2.GenerateVerifier()
			code := rp.login(t, "alice", "alice-pw", oauth2.S256ChallengeOption(verifier))
			if tt.secret != "" {
				rp.oauth.ClientSecret = tt.secret
			}
			if tt.verifier != nil {
				verifier = tt.verifier(verifier)
			}
			if tt.before != nil {
				tt.before(p)
			}
			_, err := rp.oauth.Exchange(t.Context(), code, oauth2.VerifierOption(verifier))
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.ErrorCode != tt.wantCode {
				t.Errorf("exchange error = %v, want %s", err, tt.wantCode)
			}
		})
	}
}

func TestDeviceFlow(t *testing.T) {
	p := startIdP(t, Config{})
	for _, tt := range []struct {
		name  string
		style oauth2.AuthStyle
	}{
		{"client_secret_basic", oauth2.AuthStyleInHeader},
		{"client_secret_post", oauth2.AuthStyleInParams},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rp := newRP(t, p, tt.style)
			da, err := rp.oauth.DeviceAuth(t.Context())
			if err != nil {
				t.Fatalf("device auth: %v", err)
			}
			approved := make(chan error, 1)
			go func() { approved <- ApproveDevice(t.Context(), da.VerificationURI, da.UserCode, "alice", "alice-pw") }()
			tok, err := rp.oauth.DeviceAccessToken(t.Context(), da)
			if err != nil {
				t.Fatalf("device access token: %v", err)
			}
			if err := <-approved; err != nil {
				t.Fatalf("approve device: %v", err)
			}
			idt, claims := rp.verify(t, tok)
			if idt.Subject != "alice" {
				t.Errorf("id token subject %q, want alice", idt.Subject)
			}
			if diff := cmp.Diff(aliceClaims, claims); diff != "" {
				t.Errorf("id token claims (-want +got):\n%s", diff)
			}
			if got := poll(t, p, da.DeviceCode, clientSecret); got != "access_denied" {
				t.Errorf("poll after tokens were issued = %q, want access_denied (device codes are single use)", got)
			}
		})
	}
}

func TestDevicePolling(t *testing.T) {
	tests := []struct {
		name   string
		secret string
		setup  func(t *testing.T, p *IdP, da *oauth2.DeviceAuthResponse)
		want   []string // error codes of consecutive immediate polls
	}{
		{name: "pending then slow_down", want: []string{"authorization_pending", "slow_down"}},
		// zitadel answers a wrong Basic secret here with unauthorized_client,
		// not RFC 6749's invalid_client; refused either way.
		{name: "wrong client secret", secret: "wrong", want: []string{"unauthorized_client"}},
		{name: "denied", want: []string{"access_denied"}, setup: func(t *testing.T, _ *IdP, da *oauth2.DeviceAuthResponse) {
			if err := decideDevice(t.Context(), da.VerificationURIComplete, "", "alice", "alice-pw", false); err != nil {
				t.Fatalf("deny device: %v", err)
			}
		}},
		{name: "expired", want: []string{"expired_token"}, setup: func(t *testing.T, p *IdP, da *oauth2.DeviceAuthResponse) {
			p.store.mu.Lock()
			p.store.devices[da.DeviceCode].state.Expires = time.Now().Add(-time.Second)
			p.store.mu.Unlock()
			if err := ApproveDevice(t.Context(), da.VerificationURI, da.UserCode, "alice", "alice-pw"); err == nil {
				t.Error("approving an expired code succeeded")
			}
		}},
		{name: "wrong password stays pending", want: []string{"authorization_pending"}, setup: func(t *testing.T, _ *IdP, da *oauth2.DeviceAuthResponse) {
			if err := ApproveDevice(t.Context(), da.VerificationURI, da.UserCode, "alice", "nope"); err == nil {
				t.Error("approving with a wrong password succeeded")
			}
		}},
		{name: "user removed after approval", want: []string{"access_denied"}, setup: func(t *testing.T, p *IdP, da *oauth2.DeviceAuthResponse) {
			if err := ApproveDevice(t.Context(), da.VerificationURI, da.UserCode, "alice", "alice-pw"); err != nil {
				t.Fatalf("approve device: %v", err)
			}
			p.SetUsers(testUsers[1:])
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startIdP(t, Config{})
			da, err := newRP(t, p, oauth2.AuthStyleInHeader).oauth.DeviceAuth(t.Context())
			if err != nil {
				t.Fatalf("device auth: %v", err)
			}
			if tt.setup != nil {
				tt.setup(t, p, da)
			}
			secret := clientSecret
			if tt.secret != "" {
				secret = tt.secret
			}
			var got []string
			for range tt.want {
				got = append(got, poll(t, p, da.DeviceCode, secret))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("poll results (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("unknown user code", func(t *testing.T) {
		p := startIdP(t, Config{})
		if err := ApproveDevice(t.Context(), p.Issuer()+devicePath, "BCDF-GHJK", "alice", "alice-pw"); err == nil {
			t.Error("approving an unknown code succeeded")
		}
	})
}

// poll makes one device token request and returns its error code, or "" on
// success.
func poll(t *testing.T, p *IdP, deviceCode, secret string) string {
	t.Helper()
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {deviceCode}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, p.Issuer()+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("poll: %v", err)
	}
	defer resp.Body.Close()
	var body struct{ Error string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode poll response: %v", err)
	}
	return body.Error
}

func TestStartRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0", "example.com:0"} {
		t.Run(addr, func(t *testing.T) {
			if p, err := Start(context.Background(), Config{Addr: addr}); err == nil {
				p.Close()
				t.Errorf("Start(%q) succeeded, want refused", addr)
			}
		})
	}
}
