// Package pkgtest tests postern's .deb and .rpm packages as operators get
// them: it builds them with packaging/mkpkg (amd64 only; make package also
// builds arm64), then inspects and half-installs them with the real tools.
//
// # What is checked
//
//   - Metadata with dpkg-deb --info/--field and rpm -qip; the file list,
//     owners and modes as recorded in both packages (dpkg-deb -c, rpm
//     --queryformat); the conffile and its noreplace flag.
//   - The maintainer scripts: sh -n, then run for real on this machine. The
//     preinstall creates the postern system user and group (twice, to prove
//     it is idempotent); the other scripts run in a private mount namespace
//     with /run replaced, once looking like a systemd host and once not,
//     with a fake systemctl that records what it was asked, so the test
//     proves nothing is ever enabled, started or restarted by installing.
//   - The payload is unpacked into a throwaway root with the owners the
//     package records (tar --same-owner, after the user exists, as dpkg
//     does), the binaries are run from there (--version, check-config on
//     the shipped configuration), and systemd-analyze verify and security
//     --offline check the units inside that root, with and without the
//     port-22 drop-in.
//
// # Side effects on the test machine
//
// It needs root and leaves the postern system user and group behind, as a
// real install would. Nothing is written outside temporary directories.
package pkgtest
