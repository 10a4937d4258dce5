package testidp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// User is a person who can log in.
type User struct {
	Subject  string   // stable id, the "sub" claim; default Username; must not contain ':'
	Username string   // login name typed into the form, e.g. "alice"
	Password string   // compared in constant time
	Email    string   // "alice@example.com"; email_verified is true when set
	Groups   []string // emitted in the "groups" claim of the ID token and userinfo
}

// Client is a confidential OAuth client. Both client_secret_basic and
// client_secret_post are accepted at the token endpoint.
type Client struct {
	ID, Secret   string
	RedirectURIs []string // exact match; may be empty for a device-flow-only client
}

// Config configures an IdP. The zero value plus users and clients works.
type Config struct {
	// Addr is the listen address, default "127.0.0.1:0". Its host must be a
	// loopback IP or "localhost"; Start refuses any other.
	Addr    string
	Users   []User
	Clients []Client
	// IDTokenTTL is the lifetime of ID and access tokens, default 5m.
	IDTokenTTL time.Duration
	// RequirePKCE refuses authorization requests without an S256
	// code_challenge. Without it, PKCE is used when the client sends it.
	RequirePKCE bool
	// Logger receives login and device approval events; nil discards them.
	Logger *slog.Logger
}

const (
	// Paths of the pages this package serves next to the zitadel endpoints.
	loginPath  = "/login"
	devicePath = "/device"

	// devicePollInterval is announced to device flow clients; one polling
	// again within half of it gets slow_down.
	devicePollInterval = time.Second
	deviceCodeTTL      = 5 * time.Minute
)

// supportedScopes are the scopes the IdP grants; others are dropped.
var supportedScopes = []string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail, scopeGroups, oidc.ScopeOfflineAccess}

const scopeGroups = "groups"

// IdP is a running OpenID Provider.
type IdP struct {
	issuer   string
	store    *storage
	srv      *http.Server
	log      *slog.Logger
	serveErr chan error
	stop     chan struct{}
	once     sync.Once
	closeErr error
}

// Start listens on cfg.Addr and serves the provider until Close is called or
// ctx is done.
func Start(ctx context.Context, cfg Config) (*IdP, error) {
	cfg = withDefaults(cfg)
	if err := validate(cfg); err != nil {
		return nil, err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	issuer := "http://" + ln.Addr().String()
	store := newStorage(cfg, key)
	opCfg := &op.Config{
		CodeMethodS256:  true,
		AuthMethodPost:  true,
		SupportedScopes: supportedScopes,
		SupportedClaims: append(slices.Clone(op.DefaultSupportedClaims), scopeGroups),
		DeviceAuthorization: op.DeviceAuthorizationConfig{
			Lifetime:     deviceCodeTTL,
			PollInterval: devicePollInterval,
			UserFormPath: devicePath,
			UserCode:     op.UserCodeBase20,
		},
	}
	rand.Read(opCfg.CryptoKey[:]) // encrypts opaque access tokens; never fails
	provider, err := op.NewProvider(opCfg, store, op.StaticIssuer(issuer), op.WithAllowInsecure())
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("create provider: %w", err)
	}

	p := &IdP{
		issuer:   issuer,
		store:    store,
		log:      cfg.Logger,
		serveErr: make(chan error, 1),
		stop:     make(chan struct{}),
	}
	pages := &pages{store: store, log: cfg.Logger, callbackURL: provider.AuthorizationEndpoint().Absolute(issuer) + "/callback?id="}
	mux := http.NewServeMux()
	mux.HandleFunc(loginPath, pages.login)
	mux.HandleFunc(devicePath, pages.device)
	mux.Handle("/", secretToBasicAuth(provider, provider.TokenEndpoint().Relative(), provider.DeviceAuthorizationEndpoint().Relative()))
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	go func() { p.serveErr <- p.srv.Serve(ln) }()
	go func() {
		select {
		case <-ctx.Done():
			p.Close()
		case <-p.stop:
		}
	}()
	cfg.Logger.Info("test idp started", "issuer", issuer)
	return p, nil
}

// Issuer returns the issuer URL, "http://127.0.0.1:PORT".
func (p *IdP) Issuer() string { return p.issuer }

// Close stops the server. It is safe to call more than once.
func (p *IdP) Close() error {
	p.once.Do(func() {
		close(p.stop)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.srv.Shutdown(ctx); err != nil {
			p.closeErr = fmt.Errorf("shut down test idp: %w", err)
		}
		if err := <-p.serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.closeErr = errors.Join(p.closeErr, fmt.Errorf("serve test idp: %w", err))
		}
	})
	return p.closeErr
}

// SetUsers replaces the users. A removed user can no longer log in, and
// anything issued to them stops working. Entries that Start would refuse
// (no username or password, ':' in the subject, a duplicate) are dropped
// and logged.
func (p *IdP) SetUsers(users []User) {
	kept := make([]User, 0, len(users))
	seen := map[string]bool{}
	for i, u := range withUserDefaults(users) {
		if err := validateUser(u, seen); err != nil {
			p.log.Error("drop user", "index", i, "err", err)
			continue
		}
		kept = append(kept, u)
	}
	p.store.setUsers(kept)
}

func withDefaults(cfg Config) Config {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.IDTokenTTL <= 0 {
		cfg.IDTokenTTL = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg.Users = withUserDefaults(cfg.Users)
	return cfg
}

func withUserDefaults(users []User) []User {
	out := make([]User, len(users))
	for i, u := range users {
		if u.Subject == "" {
			u.Subject = u.Username
		}
		u.Groups = slices.Clone(u.Groups)
		out[i] = u
	}
	return out
}

// validate returns every problem with cfg at once.
func validate(cfg Config) error {
	var errs []error
	if err := checkLoopback(cfg.Addr); err != nil {
		errs = append(errs, err)
	}
	seen := map[string]bool{}
	for i, u := range cfg.Users {
		if err := validateUser(u, seen); err != nil {
			errs = append(errs, fmt.Errorf("users[%d]: %w", i, err))
		}
	}
	ids := map[string]bool{}
	for i, c := range cfg.Clients {
		switch {
		case c.ID == "" || c.Secret == "":
			errs = append(errs, fmt.Errorf("clients[%d]: id and secret are required", i))
		case ids[c.ID]:
			errs = append(errs, fmt.Errorf("clients[%d]: duplicate id %q", i, c.ID))
		}
		ids[c.ID] = true
		for _, ru := range c.RedirectURIs {
			if u, err := url.Parse(ru); err != nil || u.Scheme == "" || u.Host == "" {
				errs = append(errs, fmt.Errorf("clients[%d]: invalid redirect uri %q", i, ru))
			}
		}
	}
	return errors.Join(errs...)
}

// validateUser checks one user (defaults applied) and records its username
// and subject in seen.
func validateUser(u User, seen map[string]bool) error {
	switch {
	case u.Username == "" || u.Password == "":
		return errors.New("username and password are required")
	case strings.Contains(u.Subject, ":"):
		return fmt.Errorf("subject %q contains ':'", u.Subject)
	case seen["u:"+u.Username]:
		return fmt.Errorf("duplicate username %q", u.Username)
	case seen["s:"+u.Subject]:
		return fmt.Errorf("duplicate subject %q", u.Subject)
	}
	seen["u:"+u.Username], seen["s:"+u.Subject] = true, true
	return nil
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("parse listen address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("refuse listen address %q: not loopback", addr)
	}
	return nil
}

// secretToBasicAuth moves a client_secret sent in the form body
// (client_secret_post) into an Authorization: Basic header before the
// request reaches zitadel on the given paths. zitadel accepts
// client_secret_post for the authorization_code grant, but the device_code
// grant only recognises Basic auth (and would ignore a posted secret), so
// doing it here makes both methods behave the same on every grant.
func secretToBasicAuth(next http.Handler, paths ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !slices.Contains(paths, r.URL.Path) || r.Header.Get("Authorization") != "" {
			next.ServeHTTP(w, r)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, "cannot parse form", http.StatusBadRequest)
			return
		}
		id, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		if id != "" && secret != "" {
			r.PostForm.Del("client_secret")
			r.Form.Del("client_secret")
			r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
		}
		next.ServeHTTP(w, r)
	})
}
