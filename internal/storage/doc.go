// Package storage keeps postern's recordings and audit batches as objects:
// in an S3 bucket ([NewS3], aws-sdk-go-v2) or in a local directory
// ([NewLocal]). Both implement [Store]; the spool (internal/spool) uploads
// through it.
//
// # Invariants
//
//   - A successful Put means the object is confirmed stored: the backend
//     accepted it with a SHA-256 checksum of the bytes that were read, and
//     a read-back of its size and checksum matched. Only then may a caller
//     delete its own copy. Any doubt is an error.
//   - Objects are written once. Put never replaces an object with different
//     content: it fails with [ErrExists]. Putting the same bytes again
//     succeeds, so an upload that is retried after a crash is harmless.
//     Nothing in this package deletes objects.
//   - Keys are validated by [ValidateKey] before any I/O: relative,
//     slash-separated, no empty, "." or ".." segments, no segment starting
//     with ".", no control characters. A key can never name a file outside
//     the local directory or an object outside the configured S3 prefix.
//   - The local backend writes through a temporary file, fsync and an
//     atomic link into place; files are 0600, directories 0700.
//
// # Credentials
//
// The S3 backend takes static keys when given ([S3Config].AccessKeyID,
// meant for tests) and otherwise the AWS SDK's standard chain (environment,
// shared files, web identity, ECS/EC2 roles). That chain reads environment
// variables and files itself; this package reads none directly.
package storage
