// Package policy turns a person's IdP groups into what their certificate
// grants, using the [[role]] entries of the configuration.
//
// # Invariants
//
//   - Deny by default: no matching role, or roles granting no login, give
//     ErrNoRole and no certificate.
//   - The lifetime is the smallest max_ttl among the matched roles, so a
//     person never holds a role's logins for longer than that role allows.
//   - If any matched role pins source addresses, the certificate is pinned
//     to the union of the pins; pinning is never dropped by another role.
//   - permit-pty is granted only when a role lists it; other permit-*
//     extensions likewise.
package policy
