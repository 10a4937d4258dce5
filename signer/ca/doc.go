// Package ca holds a certificate authority's private key and signs OpenSSH
// user and host certificates with it.
//
// # Invariants
//
//   - Generate never overwrites an existing key file; keys are written 0600.
//   - Every certificate gets a fresh random, non-zero 64-bit serial.
//   - ValidAfter is backdated by Backdate (a minute) to absorb clock skew;
//     ValidBefore is never infinite.
//   - RSA CAs sign with rsa-sha2-512, never ssh-rsa (SHA-1).
package ca
