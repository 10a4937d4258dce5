// Package login is the signer's OpenID Connect relying party. It runs two
// flows against the company IdP as a confidential client: the browser flow
// (authorization code + PKCE + state + nonce) and the device authorization
// grant (RFC 8628), and hands verified claims to the issuer.
//
// # Invariants
//
//   - A login is bound, from its start, to one SSH public key; nothing the
//     browser or IdP sends can change it. A stolen code or ID token cannot
//     be turned into a certificate for another key: the code is useless
//     without this login's PKCE verifier, the ID token must carry this
//     login's nonce, and each state is accepted once.
//   - ID tokens are verified by go-oidc: signature against the IdP's JWKS,
//     issuer, audience = our client id, expiry.
//   - Only the client that started a login (holder of its poll token) can
//     collect the result, and only once.
//   - The browser is only ever redirected to a loopback http URL.
//   - Tokens, codes and poll tokens are never logged.
package login
