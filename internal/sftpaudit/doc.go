// Package sftpaudit watches both directions of an SFTP (version 3) session
// and reports one Op per file operation: what was opened, read, written,
// removed, renamed or created, with paths and byte counts, and whether the
// server allowed it.
//
// It only observes copies of the bytes a relay forwards; it never changes,
// delays or blocks them. A relay must hand client bytes to ClientWriter
// before it forwards them to the server (io.MultiWriter(tracker, server)),
// so that no answer can be seen before its request.
//
// # Invariants
//
//   - Memory is bounded: one packet at a time per direction, at most
//     MaxPacket bytes, and at most MaxPending outstanding requests and
//     MaxHandles open handles; beyond that the tracker reports one
//     OpParseError and stops parsing rather than growing.
//   - Malformed or hostile input never panics (fuzzed).
package sftpaudit
