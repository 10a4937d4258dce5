// Package spool keeps recordings and audit batches on local disk until the
// object store has confirmed them.
//
// A [Spool] is a directory owned by one process (flock). [Spool.Create]
// returns an append-only [Writer] for one object key; while it is open its
// file is NAME.part, and [Writer.Close] fsyncs it and seals it as
// NAME.sealed, where NAME is the key escaped by [FileName]. An [Uploader]
// uploads sealed files to a storage.Store with exponential backoff and
// jitter, and deletes a file only after the store confirmed the object.
// After a crash, [Spool.Recover] seals the .part files the dead process
// left (letting the caller append a closing marker first) so they are
// uploaded too.
//
// # Invariants
//
//   - No file is deleted before storage.Store.Put returned nil for its key,
//     which means the object is confirmed stored with the same size and
//     SHA-256. Every other outcome (error, timeout, crash mid-upload) keeps
//     the file and retries; retries are safe because Put is idempotent for
//     identical bytes.
//   - Writes go straight to the file (no buffering in the process): bytes
//     Write accepted survive a kill -9. They are fsynced at most
//     Options.SyncInterval after being written, on [Writer.Sync] and on
//     Close, so an operating-system crash loses at most that interval.
//   - Sealing never replaces a file (link, then unlink), and a key can be
//     open or sealed only once at a time in a spool.
//   - Files are 0600, the directory 0700. File names are a bijection of
//     keys ([FileName], [ParseFileName]), so a name found on disk always
//     maps back to the key it was written for.
package spool
