// Package testenv is the end-to-end test harness of postern. It drives the
// real OpenSSH binaries (sshd, ssh, ssh-agent) and the real postern binaries
// built from this module, so that e2e tests prove behaviour against the
// programs operators actually run rather than against a Go re-implementation.
//
// # What it provides
//
//   - [RequireBinary] and [GoBuild] locate external programs and build this
//     module's mains (once per test process).
//   - [StartAgent] runs ssh-agent; [StartNode] runs a stock sshd that trusts
//     only a given user CA, on loopback or inside a network namespace
//     ([NewNetns]); [ClientConfig] and [KnownHostsCA] write the client side.
//   - [Logs] keeps a process's output and shows it only when a test fails.
//
// # CI policy: skips become failures
//
// On a developer machine a missing prerequisite (an OpenSSH binary, root
// for network namespaces, useradd) skips the test with a hint. When the
// environment variable CI is "true" or POSTERN_REQUIRE_E2E is "1" ([Strict])
// every such skip is a failure instead, so a CI image that silently lost
// openssh-server cannot turn the e2e suite green by skipping it. This package
// is a test helper and is the one place allowed to read those variables.
//
// # Invariants
//
//   - Keys are generated at test time and written with mode 0600; no key is
//     ever committed (sshd refuses group-readable keys and git keeps no
//     modes).
//   - Clients are configured only with -F files: ssh -J does not pass -o
//     options to the inner hop. The config pins the known_hosts file,
//     StrictHostKeyChecking yes and BatchMode yes, and reads no default
//     identity files, so a test passes only on the keys it provides.
//   - Nodes log in as a dedicated unix user ([LoginUser]) with /bin/sh and a
//     plain environment, never as root.
//   - Everything a test starts (processes, namespaces, veth pairs, address
//     leases) is removed at cleanup; leases are flock(2)ed files, so a crashed
//     test process never leaks a lease.
package testenv
