// Package sshcert defines, once, the names postern writes into OpenSSH
// certificates and reads back out of them: the KeyId format, postern's own
// extensions, the agent comment, and the critical options it understands.
//
// # Invariants
//
//   - A certificate carrying a critical option not in KnownCriticalOptions
//     must be refused by every verifier (CheckCriticalOptions).
//   - Identity is read from a certificate that already authenticated;
//     nothing here verifies signatures or validity on its own.
package sshcert
