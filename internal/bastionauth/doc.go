// Package bastionauth authenticates a bastion to the signer without a
// shared secret: the bastion signs each request body with its host key and
// sends its host certificate (from the host CA) along; the signer checks
// the certificate, the signature, the time and a single-use nonce.
//
// # Invariants
//
//   - A request is accepted only with a host certificate signed by the
//     host CA, valid now, naming one of the configured bastion principals.
//   - The signature covers the whole body, which carries a timestamp and a
//     random nonce; a body is accepted once, within MaxSkew of now.
package bastionauth
