// Package audit writes postern's security events as JSON lines, one schema
// for every part (signer, bastion, forwarder), in a tamper-evident form, and
// verifies such logs.
//
// Every event a Writer writes carries its writer's name and id, a seq that
// counts that writer's events from 1 (continued across restarts by reading
// the end of the log), and prev, the SHA-256 of the exact bytes of the
// writer's previous line. Every CheckpointEvery events, every
// CheckpointInterval and at Close, the writer appends an audit.checkpoint
// event signed with its Ed25519 audit key and fsyncs the file. Verify checks
// every writer's chain in a log and names each change, removal, insertion,
// reordering and truncation. docs/audit.md is the auditor's guide.
//
// # Invariants
//
//   - Event names are the constants in this package and nowhere else.
//   - An event never carries a secret: no tokens, codes, private keys or
//     whole certificates. Keys appear as fingerprints, certificates as
//     serial + KeyId.
//   - Emit returns nil only after the whole line was handed to the operating
//     system in one write(2) (never interleaved; the file is flock'ed, so
//     several processes writing as one writer keep one chain). Such an event
//     is acknowledged: it survives a crash of the process; it survives a
//     power loss once the next checkpoint's fsync (or, with SyncEvery, its
//     own) returned. A write error is returned so the caller can refuse the
//     action it was auditing.
//   - Nothing is ever removed from a log. A line a crash cut short is ended
//     with a newline and accounted for by an audit.recovered event naming its
//     offset, length and hash.
//   - Lines are canonical JSON (decoding and re-encoding gives the same
//     bytes), so an edit that keeps the JSON meaning still shows.
//   - The verifier reads untrusted input: it never panics and its memory is
//     bounded by the number of writers and findings, not by the log's size.
package audit
