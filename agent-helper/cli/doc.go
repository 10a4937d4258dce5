// Package cli implements the postern command: login, status, logout and
// config. The main package only wires it to the process.
//
// # Invariants
//
//   - The private key is made in memory and goes only into ssh-agent,
//     unless the person asks for --write-files (then 0600, under ~/.postern).
//   - A certificate is accepted only if it certifies our key, is a user
//     certificate and is signed by the user CA the signer publishes.
//   - Messages follow "postern: error: …" then "postern: hint: …".
package cli
