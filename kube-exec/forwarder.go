package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/postern-dev/postern/internal/climsg"
)

// forwarderBinary is the forwarder's own binary (kube-exec/cmd/
// postern-kube-forwarder): kube-exec does not link the forwarder, so that
// the start of every kubectl command through postern stays light.
const forwarderBinary = "postern-kube-forwarder"

// cmdForwarder runs the forwarder binary in kube-exec's place, with the
// same arguments: `kube-exec forwarder --config FILE` is
// `postern-kube-forwarder --config FILE`.
func cmdForwarder(args []string) error {
	path, err := findForwarder()
	if err != nil {
		return climsg.WithHint(err, "install the postern-kube-forwarder package, or put "+forwarderBinary+" next to kube-exec or on PATH")
	}
	err = syscall.Exec(path, append([]string{forwarderBinary}, args...), os.Environ())
	return fmt.Errorf("run %s: %w", path, err)
}

// findForwarder looks next to kube-exec's own binary first (a release
// archive, bin/ of a build), then on PATH.
func findForwarder() (string, error) {
	if self, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(self); err == nil {
			self = real
		}
		p := filepath.Join(filepath.Dir(self), forwarderBinary)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath(forwarderBinary)
	if err != nil {
		return "", errors.New("the forwarder is the separate binary " + forwarderBinary + ", and it is neither next to kube-exec nor on PATH")
	}
	return p, nil
}
