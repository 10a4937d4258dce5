// Package testidp is a real OpenID Provider for tests and the demo, built on
// github.com/zitadel/oidc/v3/pkg/op with an in-memory storage.
//
// It serves discovery, JWKS (one RS256 key generated at Start), the
// authorization code flow (PKCE S256 supported, and required when
// Config.RequirePKCE is set), the token endpoint (authorization_code and
// urn:ietf:params:oauth:grant-type:device_code), userinfo, revocation and
// the OAuth 2.0 device authorization grant (RFC 8628). The
// scopes openid, profile, email, groups and offline_access are accepted,
// others are dropped; no refresh tokens are issued. Users log in through a
// plain HTML form; [BrowserLogin] and [ApproveDevice] drive those forms the
// way a person with a browser would.
//
// # Claims
//
// ID tokens carry iss, sub, aud (the client id), exp, iat, auth_time, amr,
// nonce (when the authorization request had one) and, by scope:
//
//	profile  name, preferred_username (both the username)
//	email    email, email_verified (true when the user has an email)
//	groups   groups (a JSON array, empty when the user has none)
//
// The same claims are put into the ID token itself (not only the userinfo
// response), for the code flow and the device flow alike. A relying
// party that wants groups must ask for the "groups" scope, as with Dex.
//
// # Security invariants
//
//   - It listens on loopback addresses only; Start refuses any other address.
//     It speaks plain HTTP and MUST NOT be used as a production IdP.
//   - Clients are confidential: the token endpoint refuses a wrong or missing
//     client secret (client_secret_basic and client_secret_post both work).
//   - Redirect URIs match exactly; an unregistered one gets an error page,
//     never a redirect.
//   - There is no login session: every authorization asks for the password
//     again, so a user removed with [IdP.SetUsers] cannot log in again, and
//     their outstanding codes, device approvals and access tokens stop
//     working, because every use looks the user up again.
//   - Authorization codes and device codes are single use.
//   - Passwords and tokens are never logged.
//
// The zitadel library logs through slog.Default; Config.Logger receives this
// package's own events (logins, device decisions).
package testidp
