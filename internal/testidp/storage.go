package testidp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// authRequestTTL bounds a login (form to code exchange) and how long an
// expired device code is remembered.
const authRequestTTL = 10 * time.Minute

var (
	errNotFound    = errors.New("not found")
	errUnknownUser = errors.New("unknown user")
)

// storage is the in-memory op.Storage and op.DeviceAuthorizationStorage.
type storage struct {
	key       *rsa.PrivateKey
	keyID     string
	tokenTTL  time.Duration
	pollEvery time.Duration
	requirePK bool
	now       func() time.Time

	mu        sync.Mutex
	users     []User
	clients   map[string]*client
	authReqs  map[string]*authRequest
	codes     map[string]string // authorization code -> auth request id
	tokens    map[string]*grant // access token id -> grant
	devices   map[string]*deviceAuth
	userCodes map[string]string // normalized user code -> device code
}

// grant is what an access token stands for.
type grant struct {
	Subject, ClientID string
	Scopes            []string
	Expires           time.Time
}

type deviceAuth struct {
	state    op.DeviceAuthorizationState
	userCode string
	lastPoll time.Time
	consumed bool
}

func newStorage(cfg Config, key *rsa.PrivateKey) *storage {
	s := &storage{
		key:       key,
		keyID:     randomID(),
		tokenTTL:  cfg.IDTokenTTL,
		pollEvery: devicePollInterval,
		requirePK: cfg.RequirePKCE,
		now:       time.Now,
		users:     cfg.Users,
		clients:   map[string]*client{},
		authReqs:  map[string]*authRequest{},
		codes:     map[string]string{},
		tokens:    map[string]*grant{},
		devices:   map[string]*deviceAuth{},
		userCodes: map[string]string{},
	}
	for _, c := range cfg.Clients {
		s.clients[c.ID] = &client{Client: c, idTokenTTL: cfg.IDTokenTTL}
	}
	return s
}

func randomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *storage) setUsers(users []User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users = users
}

// checkPassword returns the user with that username and password.
func (s *storage) checkPassword(username, password string) (User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.users {
		if u.Username == username {
			ok := subtle.ConstantTimeCompare([]byte(u.Password), []byte(password)) == 1
			return u, ok
		}
	}
	return User{}, false
}

// userLocked returns the user with that subject; s.mu must be held.
func (s *storage) userLocked(subject string) (User, error) {
	for _, u := range s.users {
		if u.Subject == subject {
			return u, nil
		}
	}
	return User{}, fmt.Errorf("look up subject %q: %w", subject, errUnknownUser)
}

func (s *storage) user(subject string) (User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.userLocked(subject)
}

// fillUserinfo sets the claims the scopes allow.
func fillUserinfo(info *oidc.UserInfo, u User, scopes []string) {
	info.Subject = u.Subject
	for _, scope := range scopes {
		switch scope {
		case oidc.ScopeProfile:
			info.Name = u.Username
			info.PreferredUsername = u.Username
		case oidc.ScopeEmail:
			info.Email = u.Email
			info.EmailVerified = oidc.Bool(u.Email != "")
		case scopeGroups:
			info.AppendClaims("groups", append([]string{}, u.Groups...))
		}
	}
}

// --- authorization requests and codes ---

func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	if slices.Contains(req.Prompt, oidc.PromptNone) {
		return nil, oidc.ErrLoginRequired().WithDescription("the test idp has no login session")
	}
	if s.requirePK && (req.CodeChallenge == "" || req.CodeChallengeMethod != oidc.CodeChallengeMethodS256) {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE with S256 is required")
	}
	a := &authRequest{
		ID:           randomID(),
		Created:      s.now(),
		ClientID:     req.ClientID,
		RedirectURI:  req.RedirectURI,
		Scopes:       filterScopes(req.Scopes),
		State:        req.State,
		Nonce:        req.Nonce,
		ResponseType: req.ResponseType,
		ResponseMode: req.ResponseMode,
	}
	if req.CodeChallenge != "" {
		a.CodeChallenge = &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: req.CodeChallengeMethod}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purgeLocked()
	s.authReqs[a.ID] = a
	return a, nil
}

func filterScopes(scopes []string) []string {
	return slices.DeleteFunc(slices.Clone(scopes), func(sc string) bool { return !slices.Contains(supportedScopes, sc) })
}

// purgeLocked drops expired requests and tokens; s.mu must be held.
func (s *storage) purgeLocked() {
	now := s.now()
	for id, a := range s.authReqs {
		if now.Sub(a.Created) > authRequestTTL {
			delete(s.authReqs, id)
			delete(s.codes, a.code)
		}
	}
	for id, g := range s.tokens {
		if now.After(g.Expires) {
			delete(s.tokens, id)
		}
	}
	for code, d := range s.devices {
		// Kept a while after expiry so polling still sees expired_token.
		if now.Sub(d.state.Expires) > authRequestTTL {
			delete(s.devices, code)
			delete(s.userCodes, d.userCode)
		}
	}
}

func (s *storage) authRequestLocked(id string) (*authRequest, error) {
	a, ok := s.authReqs[id]
	if !ok || s.now().Sub(a.Created) > authRequestTTL {
		return nil, fmt.Errorf("look up auth request: %w", errNotFound)
	}
	return a, nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.authRequestLocked(id)
	if err != nil {
		return nil, err
	}
	c := *a
	return &c, nil
}

// completeLogin marks the auth request as authenticated by u.
func (s *storage) completeLogin(id string, u User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.authRequestLocked(id)
	if err != nil {
		return err
	}
	if a.done {
		return errors.New("auth request already completed")
	}
	a.Subject, a.AuthTime, a.done = u.Subject, s.now(), true
	return nil
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.authRequestLocked(id)
	if err != nil {
		return err
	}
	if a.code != "" {
		return errors.New("auth request already has a code")
	}
	a.code = code
	s.codes[code] = id
	return nil
}

func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.authRequestLocked(s.codes[code])
	if err != nil || !a.done {
		return nil, fmt.Errorf("look up code: %w", errNotFound)
	}
	c := *a
	return &c, nil
}

func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.authReqs[id]; ok {
		delete(s.codes, a.code)
		delete(s.authReqs, id)
	}
	return nil
}

// --- tokens ---

// CreateAccessToken records an opaque access token for a user who still
// exists; zitadel encrypts "id:subject" into the token it hands out.
func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.userLocked(req.GetSubject()); err != nil {
		return "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("user no longer exists").WithParent(err)
	}
	g := &grant{Subject: req.GetSubject(), Scopes: slices.Clone(req.GetScopes()), Expires: s.now().Add(s.tokenTTL)}
	if r, ok := req.(interface{ GetClientID() string }); ok {
		g.ClientID = r.GetClientID()
	}
	id := randomID()
	s.tokens[id] = g
	return id, g.Expires, nil
}

// Refresh tokens are not issued: no client has the refresh_token grant, so
// zitadel never calls the next three with a real token.

func (s *storage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, errors.New("refresh tokens are not supported")
}

func (s *storage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, errors.New("refresh tokens are not supported")
}

func (s *storage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

func (s *storage) TerminateSession(context.Context, string, string) error { return nil }

func (s *storage) RevokeToken(_ context.Context, tokenID, _, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g, ok := s.tokens[tokenID]; ok && g.ClientID != clientID {
		return oidc.ErrInvalidClient().WithDescription("token was issued to another client")
	}
	delete(s.tokens, tokenID)
	return nil
}

// accessGrant returns the live grant of an access token and its user.
func (s *storage) accessGrant(tokenID, subject string) (*grant, User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.tokens[tokenID]
	if !ok || g.Subject != subject || s.now().After(g.Expires) {
		return nil, User{}, fmt.Errorf("look up access token: %w", errNotFound)
	}
	u, err := s.userLocked(subject)
	return g, u, err
}

// --- keys ---

type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k signingKey) Algorithm() jose.SignatureAlgorithm          { return jose.RS256 }
func (k signingKey) Key() any                                    { return k.key }
func (k signingKey) ID() string                                  { return k.id }

type publicKey struct{ signingKey }

func (k publicKey) Use() string { return "sig" }
func (k publicKey) Key() any    { return &k.key.PublicKey }

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	return signingKey{s.keyID, s.key}, nil
}

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{signingKey{s.keyID, s.key}}}, nil
}

// --- clients and claims (op.OPStorage) ---

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if c, ok := s.clients[id]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("look up client %q: %w", id, errNotFound)
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, ok := s.clients[id]
	if !ok || subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1 {
		return errors.New("wrong client id or secret")
	}
	return nil
}

// SetUserinfoFromScopes is deprecated in zitadel; SetUserinfoFromRequest
// does the work.
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the ID token claims (op.CanSetUserinfoFromRequest).
func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	u, err := s.user(req.GetSubject())
	if err != nil {
		return oidc.ErrInvalidGrant().WithDescription("user no longer exists").WithParent(err)
	}
	fillUserinfo(info, u, scopes)
	return nil
}

func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	g, u, err := s.accessGrant(tokenID, subject)
	if err != nil {
		return err
	}
	fillUserinfo(info, u, g.Scopes)
	return nil
}

// SetIntrospectionFromToken leaves every token inactive: nothing here needs
// introspection.
func (s *storage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return nil
}

// GetPrivateClaimsFromScopes is only used for JWT access tokens, which this
// IdP does not issue.
func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("jwt profile is not supported")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("jwt profile is not supported")
}

func (s *storage) Health(context.Context) error { return nil }

// --- device authorization (RFC 8628) ---

func normalizeUserCode(code string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == ' ' {
			return -1
		}
		return r
	}, strings.ToUpper(code))
}

func (s *storage) StoreDeviceAuthorization(_ context.Context, clientID, deviceCode, userCode string, expires time.Time, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purgeLocked()
	norm := normalizeUserCode(userCode)
	if _, dup := s.userCodes[norm]; dup {
		return op.ErrDuplicateUserCode
	}
	s.userCodes[norm] = deviceCode
	s.devices[deviceCode] = &deviceAuth{
		userCode: norm,
		state:    op.DeviceAuthorizationState{ClientID: clientID, Scopes: filterScopes(scopes), Expires: expires},
	}
	return nil
}

// GetDeviceAuthorizatonState answers a token poll. zitadel maps its errors
// to access_denied, except context.DeadlineExceeded which becomes slow_down;
// that is how a client polling too fast is told to slow down.
func (s *storage) GetDeviceAuthorizatonState(_ context.Context, clientID, deviceCode string) (*op.DeviceAuthorizationState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[deviceCode]
	if !ok || d.state.ClientID != clientID {
		return nil, fmt.Errorf("look up device code: %w", errNotFound)
	}
	if d.consumed {
		return nil, errors.New("device code already used")
	}
	now := s.now()
	last := d.lastPoll
	d.lastPoll = now
	if !last.IsZero() && now.Sub(last) < s.pollEvery/2 {
		return nil, fmt.Errorf("poll faster than every %s: %w", s.pollEvery, context.DeadlineExceeded)
	}
	if d.state.Done {
		if _, err := s.userLocked(d.state.Subject); err != nil {
			return nil, err
		}
		d.consumed = true
	}
	st := d.state
	st.Scopes = slices.Clone(d.state.Scopes)
	return &st, nil
}

// decideDevice records the user's approval or denial of a user code.
func (s *storage) decideDevice(userCode string, u User, approve bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[s.userCodes[normalizeUserCode(userCode)]]
	if !ok || s.now().After(d.state.Expires) {
		return fmt.Errorf("look up user code: %w", errNotFound)
	}
	if d.state.Done || d.state.Denied {
		return errors.New("user code already used")
	}
	if !approve {
		d.state.Denied = true
		return nil
	}
	d.state.Done, d.state.Subject, d.state.AuthTime, d.state.AMR = true, u.Subject, s.now(), []string{"pwd"}
	return nil
}
