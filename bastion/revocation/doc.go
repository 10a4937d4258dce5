// Package revocation keeps postern-bastion's copy of the signer's key
// revocation list (KRL) current and ends what a revocation takes away.
//
// A [Watcher] refreshes the KRL from a [Source] — the signer's GET /v1/krl
// over TLS pinned to the signer's CA ([HTTPSource]), or a local file that
// configuration management replaces ([FileSource]) — every poll interval
// (jittered), parses it with internal/krl and swaps it in atomically. A
// [Registry] holds everything alive that some certificate authorised: the
// bastion registers every SSH connection, and what runs on one (hops,
// recording relays, kube channels) ends with it. After every new list the bastion sweeps the registry and ends each
// entry whose certificate the list revokes.
//
// # Security invariants
//
//   - The list only moves forward: a KRL with a lower generation than the
//     one held is refused (a stale signer or a replayed response), and a
//     list that cannot be fetched or parsed never replaces a good one.
//   - When no list can be had, the last good one stays in force (fail
//     open, logged as a warning every minute). With a maximum staleness
//     set, [Watcher.Check] refuses every certificate once the list is
//     older than that (fail closed for new connections; live ones are not
//     cut for staleness alone).
//   - Registration before checking: a holder registers itself and then
//     checks the current list, and the sweep runs after the swap, so a
//     certificate revoked while it authenticates is either refused or
//     swept — never missed.
//   - Nothing in this package trusts the list's content beyond parsing it:
//     the bastion still checks every certificate's CA, validity and
//     options itself.
package revocation
