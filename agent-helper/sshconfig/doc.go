// Package sshconfig renders the ssh_config block and known_hosts file that
// `postern config` gives users, and installs the block idempotently into an
// existing ssh_config between marker lines.
//
// # Invariants
//
//   - Install only ever replaces text between its own BEGIN/END markers;
//     everything else in the user's file is kept byte for byte.
//   - The host CA is trusted through a known_hosts file that only the
//     postern Host blocks use, so the "@cert-authority *" line there cannot
//     vouch for hosts outside them.
package sshconfig
