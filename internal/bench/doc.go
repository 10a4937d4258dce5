// Package bench measures postern against stock OpenSSH, side by side, on
// one machine: a stock sshd node in a network namespace, a stock sshd jump
// host on loopback, postern-bastion (forward and recording mode) and the
// signer, all driven by the real ssh client with -F configs, or by a Go
// SSH client where a thousand ssh processes would measure the client
// instead of the jump host. It is run by `make bench` through
// cmd/postern-bench and writes docs/benchmarks.md.
//
// # Method
//
//   - Paths are interleaved (A B A B …, order reversed every other round)
//     so that noise from other work on the machine hits every path alike;
//     figures are medians with p10/p90 (or p99) and min/max.
//   - The login user has /bin/sh and no rc files: the measured path is
//     SSH, not a login shell.
//   - CPU is read from /proc/PID/stat: the bastion's utime+stime, and for
//     sshd the listener's own plus its reaped children's (cutime+cstime),
//     which covers every per-connection process once it has exited.
//
// # Invariants
//
//   - Nothing here is a pass/fail test; targets are reported as met or
//     missed with the measured ratio.
//   - Everything started (processes, the network namespace, the veth pair)
//     is removed when Run returns, also on error. Every load is bounded
//     in count and time.
//   - Keys are generated at run time into the work directory (0600).
package bench
