// Package pkgtest tests postern's .deb and .rpm packages as operators get
// them: it builds them with packaging/mkpkg (amd64 only; make package also
// builds arm64), then inspects and half-installs them with the real tools.
//
// # What is checked
//
//   - The three packages: postern-server, postern (the client) and
//     postern-kube-forwarder, whose Depends/Requires name the client at
//     exactly its version.
//   - Metadata with dpkg-deb --info/--field and rpm -qip/--requires; the
//     file list, owners and modes as recorded in both formats (dpkg-deb -c,
//     rpm --queryformat); the conffiles and their noreplace flag.
//   - The maintainer scripts: sh -n, then run for real on this machine. The
//     preinstall, shared by both service packages, creates the postern
//     system user and group (three times, to prove it is idempotent); the
//     other scripts run in a private mount namespace with /run replaced,
//     once looking like a systemd host and once not, with a fake systemctl
//     that records what it was asked, so the test proves nothing is ever
//     enabled, started or restarted by installing.
//   - The payloads of all three are unpacked into one throwaway root with
//     the owners the packages record (tar --same-owner, after the user
//     exists, as dpkg does), the binaries are run from there (--version,
//     check-config on the shipped configuration, kube-exec forwarder on
//     its shipped configuration), and systemd-analyze verify and security
//     --offline check the three units inside that root, with and without
//     the port-22 drop-in.
//
// # Side effects on the test machine
//
// It needs root and leaves the postern system user and group behind, as a
// real install would. Nothing is written outside temporary directories.
package pkgtest
