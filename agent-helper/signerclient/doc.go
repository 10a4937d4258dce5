// Package signerclient is the CLI's client for the signer's HTTPS API,
// speaking the wire types of internal/api, and the small state file that
// remembers which signer to use.
//
// # Invariants
//
//   - TLS is always verified: against the system roots, or against the CA
//     certificate the user pinned (--signer-ca), never skipped.
//   - The poll token of a login never leaves this process except to the
//     signer that issued it.
package signerclient
