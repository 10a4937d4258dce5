// Package server is the signer's HTTPS API: CA public keys, logins (with
// the login package), user certificates (policy + ca), host certificates
// against join tokens, and the revocation list (POST /v1/revoke for admins,
// GET /v1/krl and GET /v1/revocations for nodes and bastions).
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
//   - No certificate is issued for a revoked key ID or key, and none when
//     the revocation list cannot be read (fail closed).
//   - The revocation list is re-read whenever its file changed (checked on
//     every request), so `postern-signer revoke` takes effect at once.
//   - Admin tokens (admin_token_file) are compared like join tokens; the
//     public revocation views leave out reasons and who revoked.
//   - The signer refuses to revoke its own CA keys.
package server
