// Package e2e holds postern's end-to-end tests: real binaries of every part
// (built from this module), the test OpenID provider, and the real OpenSSH
// ssh, ssh-agent, ssh-keygen, scp, sftp and sshd. It has no non-test code.
//
// With CI=true or POSTERN_REQUIRE_E2E=1 a missing program fails the test
// instead of skipping it (see internal/testenv).
package e2e
