// Package signerapi is the bastion's client for the signer: the CA keys,
// delegated certificates and host certificates for node names, each
// request signed with the bastion's host key (internal/bastionauth).
//
// # Invariants
//
//   - TLS is verified against the pinned CA file or the system roots.
//   - A certificate returned is checked before use: the right type, the
//     key that was sent, signed by the CA the signer publishes.
package signerapi
