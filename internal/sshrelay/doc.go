// Package sshrelay relays one SSH connection a person made (terminated by
// the bastion) onto a connection the bastion made to the node, channel by
// channel and request by request, so that everything OpenSSH does —
// sessions with and without a pty, exec, shell, subsystems such as sftp,
// window changes, signals, break, exit status and exit signal, keepalives,
// local (-L, -W) and remote (-R) forwards — works unchanged, while
// observers see what happens for recording and audit.
//
// # Invariants
//
//   - Deny by default: agent forwarding, X11, remote forwards and local
//     forwards are refused unless the Policy allows them.
//   - Observers see copies of the bytes after the relay decided to forward
//     them; an observer can never change or block the stream (its
//     callbacks must be quick: they run on the relay's goroutines).
//   - Exit status and exit signal reach the client only after all of the
//     node's output has, so nothing printed last is lost.
//   - When either connection ends, the other is closed.
package sshrelay
