// Package sshcert defines, once, the names postern writes into OpenSSH
// certificates and reads back out of them: the KeyId format, postern's own
// extensions, the agent comment, and the critical options it understands.
//
// # Invariants
//
//   - A certificate carrying a critical option not in KnownCriticalOptions
//     must be refused by every verifier (CheckCriticalOptions).
//   - Identity is read from a certificate that already authenticated;
//     nothing here verifies signatures or validity on its own, except
//     SigCache, which answers a CA signature check from memory only for
//     the exact bytes (key, signed data, signature) that verified before,
//     never remembers a failure, and leaves every other check (validity,
//     principals, critical options, CA, revocation) to run on every use.
package sshcert
