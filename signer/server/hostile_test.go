package server

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/postern-dev/postern/internal/api"
	"github.com/postern-dev/postern/internal/audit"
)

// hostileIdP is a minimal OpenID provider that answers the code exchange
// with an ID token broken in one chosen way. The real provider
// (internal/testidp) never misbehaves, so these refusals need a liar.
type hostileIdP struct {
	srv      *httptest.Server
	good     *rsa.PrivateKey
	evil     *rsa.PrivateKey
	clientID string
}

func newHostileIdP(t *testing.T) *hostileIdP {
	t.Helper()
	h := &hostileIdP{clientID: "postern"}
	var err error
	if h.good, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if h.evil, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.srv = httptest.NewServer(mux)
	t.Cleanup(h.srv.Close)
	iss := h.srv.URL
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": iss, "authorization_endpoint": iss + "/authorize", "token_endpoint": iss + "/token",
			"jwks_uri": iss + "/jwks", "id_token_signing_alg_values_supported": []string{"RS256"},
			"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &h.good.PublicKey, KeyID: "good", Algorithm: "RS256", Use: "sig"}}})
	})
	// The "code" carries the misbehaviour and the nonce to the token endpoint.
	mux.HandleFunc("/authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		code := url.Values{"mode": {q.Get("login_hint")}, "nonce": {q.Get("nonce")}}.Encode()
		u, _ := url.Parse(q.Get("redirect_uri"))
		u.RawQuery = url.Values{"code": {code}, "state": {q.Get("state")}}.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		code, _ := url.ParseQuery(r.PostForm.Get("code"))
		idt := h.token(t, code.Get("mode"), code.Get("nonce"))
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 60, "id_token": idt})
	})
	return h
}

func (h *hostileIdP) token(t *testing.T, mode, nonce string) string {
	now := time.Now()
	claims := map[string]any{
		"iss": h.srv.URL, "sub": "alice", "aud": h.clientID, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"nonce": nonce, "email": "alice@example.com", "email_verified": true, "groups": []string{"infra"},
	}
	key := h.good
	switch mode {
	case "audience":
		claims["aud"] = "some-other-client"
	case "expired":
		claims["iat"], claims["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
	case "signature":
		key = h.evil
	case "nonce":
		claims["nonce"] = "a-nonce-from-another-login"
	case "issuer":
		claims["iss"] = "https://idp.evil.example"
	case "unverified":
		claims["email_verified"] = false
	case "nousername":
		delete(claims, "email")
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "good"}}, nil)
	if err != nil {
		t.Error(err)
		return ""
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Error(err)
		return ""
	}
	s, _ := jws.CompactSerialize()
	return s
}

func TestHostileTokensRefused(t *testing.T) {
	h := newHostileIdP(t)
	e, _ := startSigner(t, h.srv.URL, nil)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct{ mode, want string }{
		{"ok", ""},
		{"audience", "audience"},
		{"expired", "expired"},
		{"signature", "signature"},
		{"nonce", "nonce"},
		{"issuer", "different provider"},
		{"unverified", "not verified"},
		{"nousername", "\"email\" is missing"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			key := newKey(t)
			r, err := e.client.StartLogin(context.Background(), api.LoginStartRequest{PublicKey: pubLine(key), Mode: api.ModeBrowser, RedirectURL: loopback})
			if err != nil {
				t.Fatal(err)
			}
			authURL, _ := url.Parse(r.AuthURL)
			q := authURL.Query()
			q.Set("login_hint", tc.mode)
			authURL.RawQuery = q.Encode()
			resp, err := noFollow.Get(authURL.String())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			cb, _ := url.Parse(resp.Header.Get("Location"))
			e.callback(t, cb)
			res := e.poll(t, r)
			if tc.want == "" {
				if res.Status != api.StatusDone {
					t.Fatalf("well-formed token refused: %+v", res)
				}
				return
			}
			if res.Status != api.StatusFailed || res.Certificate != "" || !strings.Contains(res.Error, tc.want) {
				t.Fatalf("poll = %+v, want failure mentioning %q", res, tc.want)
			}
			found := false
			for _, ev := range e.audit.named(audit.LoginFailed) {
				if ev.LoginID == r.LoginID && strings.Contains(ev.Reason, tc.want) {
					found = true
				}
			}
			if !found {
				t.Fatalf("no login.failed event for login %s naming %q", r.LoginID, tc.want)
			}
		})
	}
	issued := e.audit.named(audit.CertIssued)
	if len(issued) != 1 {
		t.Fatalf("%d certificates issued, want only the well-formed one", len(issued))
	}
}
