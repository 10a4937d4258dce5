// Package server is postern-bastion's SSH server: the gliderlabs/ssh wiring,
// certificate authentication, direct-tcpip forwarding to nodes, the menu
// session, audit events and graceful shutdown.
//
// # Security invariants
//
//   - Only public-key authentication exists, and only for user certificates
//     signed by a key in [bastion] user_ca, valid now (within clock_skew),
//     carrying a KeyId and at least one principal and no critical option
//     other than source-address, which is enforced against the TCP peer.
//     Plain keys, host certificates, passwords, keyboard-interactive and
//     "none" are refused. (gliderlabs turns NoClientAuth on when no handler
//     of its own is set; NoClientAuthCallback refuses "none" regardless.)
//   - The identity of a connection comes only from the key that actually
//     authenticated: PublicKeyCallback returns fresh Permissions per key,
//     x/crypto hands the connection the Permissions of the key whose
//     signature it verified, and VerifiedPublicKeyCallback cross-checks that
//     key before marking the identity verified. Every handler refuses to
//     act without a verified identity in the connection's Permissions.
//   - A direct-tcpip hop is authorised by bastion/authz and dials only the
//     addresses authz checked, never the name again.
//   - Nothing else is offered: no shell, no exec of programs, no
//     subsystems, no agent or X11 forwarding, no remote forwarding, no
//     other channel types. Refusals are audited.
//   - Every refusal is audited as auth.failed (per refused certificate, or
//     once per connection for other credentials) or access.denied; every
//     hop as session.start and session.end, the latter also for sessions
//     ended by shutdown.
//   - What the client is told is short; the detail goes to the log and the
//     audit event.
package server
