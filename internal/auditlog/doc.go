// Package auditlog opens a part's audit log the way [audit] configures it
// (one [Open] for the signer, the bastion and the kube forwarder), and
// ships the log to S3 ([Shipper]) and reads it back from there
// ([ListLogs], [RemoteLog]) for postern-bastion audit verify and search.
//
// # Sinks
//
// The local JSON-lines file is the log (internal/audit writes it). Stdout,
// when asked for, gets a copy of every line as written. S3 gets the file
// itself, in batches: the shipper reads the file, never the events, so what
// is in the bucket is byte for byte what is in the file and verifies the
// same way.
//
// # Invariants of the S3 sink
//
//   - The file is the spool. A line is shipped only when it is complete
//     (ends with a newline); the shipper never writes to the log.
//   - A batch is one object, PREFIX WRITER/WRITER_ID/LOG_ID/OFFSET.jsonl,
//     OFFSET being where its first line starts in the file (20 digits):
//     keys sort in log order and two batches never share a key. LOG_ID is
//     made when the shipper first sees a file (time first, so later logs
//     sort after earlier ones) and changes when the file is replaced (other
//     inode), truncated below what was shipped, or rewritten (its first
//     bytes changed), so a new file never reuses an old file's keys.
//   - The state file LOG.s3state holds the log id and the offset up to
//     which the file is confirmed stored (storage.Store.Put confirms size
//     and SHA-256). It moves forward only after a confirmed Put, and is
//     replaced atomically and fsynced. After an outage, a crash or a
//     restart, everything after that offset is sent again; a batch that was
//     stored but not yet recorded is recognised (same bytes at that key)
//     and skipped. Nothing is deleted from the file or the bucket.
//   - An unreadable state, or a key holding other bytes, never loses lines:
//     the whole file is shipped again under a new log id.
//   - One process ships a log: LOG.s3state.lock is flocked for the
//     shipper's life. A one-shot command that finds it taken leaves its
//     lines to the running server.
package auditlog
