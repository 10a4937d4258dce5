// Package audit writes postern's security events as JSON lines, one schema
// for every part (signer, bastion, forwarder).
//
// # Invariants
//
//   - Event names are the constants in this package and nowhere else.
//   - An event never carries a secret: no tokens, codes, private keys or
//     whole certificates. Keys appear as fingerprints, certificates as
//     serial + KeyId.
//   - Emit returns only after the line was handed to the operating system
//     (one write per event, never interleaved); a write error is returned
//     so the caller can refuse the action it was auditing.
package audit
