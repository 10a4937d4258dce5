// Package server is the signer's HTTPS API: CA public keys, logins (with
// the login package), user certificates (policy + ca) and host
// certificates against join tokens.
//
// # Invariants
//
//   - Every issuance and every refusal writes an audit event; an issuance
//     whose audit event cannot be written is withheld.
//   - Audit events and logs never carry tokens, codes or private keys.
//   - Join tokens are compared in constant time and the file is re-read on
//     each request, so a removed token stops working at once.
//   - The API issues host certificates only for names covered by
//     host_patterns (empty: none).
package server
