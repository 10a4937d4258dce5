// Package s3test runs a real S3-compatible server for tests: versitygw
// (github.com/versity/versitygw) with its posix backend, which checks
// SigV4 signatures and x-amz-checksum-* headers like AWS does.
//
// [Start] builds versitygw once per machine with `go install` (pinned to
// [Version], CGO off) into the user cache directory
// ($XDG_CACHE_HOME or ~/.cache)/postern/versitygw-VERSION/, so only the
// first run pays for the build; POSTERN_VERSITYGW may name a prebuilt
// binary instead. It then starts the server on a loopback port with a
// fresh data directory, creates a bucket and hands back the endpoint,
// credentials and bucket. [Server.Stop] and [Server.Start] stop and
// restart it on the same port and data, to simulate an outage.
//
// # CI policy
//
// When versitygw cannot be built (no Go toolchain, no module proxy) the
// test is skipped with a hint, or failed when testenv.Strict (CI=true or
// POSTERN_REQUIRE_E2E=1). Like internal/testenv, this is a test helper and
// may read those environment variables.
package s3test
