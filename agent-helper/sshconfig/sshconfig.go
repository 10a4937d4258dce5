package sshconfig

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// Markers around the managed block.
const (
	BeginMarker = "# BEGIN postern (managed by `postern config --install`; edits inside are replaced)"
	EndMarker   = "# END postern"
)

// Params describe what to render.
type Params struct {
	BastionName string   // ssh_config alias, e.g. "postern-bastion"
	BastionAddr string   // host:port
	JumpHosts   []string // Host patterns reached through the bastion
	KnownHosts  string   // absolute path of postern's known_hosts
	HostCAs     []string // authorized_keys-format host CA keys
	Signer      string   // for the comment only
}

// Block renders the ssh_config block, markers included.
func Block(p Params) (string, error) {
	host, port, err := net.SplitHostPort(p.BastionAddr)
	if err != nil {
		return "", fmt.Errorf("bastion address %q: %w", p.BastionAddr, err)
	}
	if p.BastionName == "" || strings.ContainsAny(p.BastionName, " \t*?!") {
		return "", fmt.Errorf("bad bastion name %q", p.BastionName)
	}
	var b strings.Builder
	fmt.Fprintln(&b, BeginMarker)
	if p.Signer != "" {
		fmt.Fprintf(&b, "# signer: %s\n", p.Signer)
	}
	fmt.Fprintf(&b, "Host %s\n", p.BastionName)
	fmt.Fprintf(&b, "    HostName %s\n", host)
	fmt.Fprintf(&b, "    Port %s\n", port)
	common(&b, p.KnownHosts)
	for _, h := range p.JumpHosts {
		if strings.ContainsAny(h, " \t") {
			return "", fmt.Errorf("bad jump host pattern %q", h)
		}
		fmt.Fprintf(&b, "\nHost %s\n", h)
		fmt.Fprintf(&b, "    ProxyJump %s\n", p.BastionName)
		common(&b, p.KnownHosts)
	}
	fmt.Fprintln(&b, EndMarker)
	return b.String(), nil
}

func common(b *strings.Builder, knownHosts string) {
	fmt.Fprintf(b, "    UserKnownHostsFile %s\n", quote(knownHosts))
	fmt.Fprintln(b, "    StrictHostKeyChecking yes")
	fmt.Fprintln(b, "    UpdateHostKeys no")
}

func quote(s string) string {
	if strings.ContainsAny(s, " \t") {
		return `"` + s + `"`
	}
	return s
}

// KnownHosts renders postern's known_hosts file: one @cert-authority line
// per host CA.
func KnownHosts(p Params) string {
	var b strings.Builder
	fmt.Fprintln(&b, "# postern host CA: written by `postern config`; used only by postern's Host blocks")
	for _, k := range p.HostCAs {
		fmt.Fprintf(&b, "@cert-authority * %s\n", strings.TrimSpace(k))
	}
	return b.String()
}

// Splice returns existing with block placed between the markers: replacing
// an earlier block, or appended at the end when there is none. An unmatched
// marker is an error rather than a guess.
func Splice(existing, block string) (string, error) {
	start := strings.Index(existing, BeginMarker)
	end := strings.Index(existing, EndMarker)
	switch {
	case start < 0 && end < 0:
		if existing != "" && !strings.HasSuffix(existing, "\n") {
			existing += "\n"
		}
		if existing != "" {
			existing += "\n"
		}
		return existing + block, nil
	case start < 0 || end < 0 || end < start:
		return "", errors.New("found only one of postern's BEGIN/END markers; fix the file by hand")
	}
	after := existing[end+len(EndMarker):]
	after = strings.TrimPrefix(after, "\n")
	return existing[:start] + block + after, nil
}

// Install writes block into the ssh_config at path (created 0600 when
// missing) and the known_hosts content to knownHostsPath. It reports
// whether the ssh_config changed.
func Install(path, block, knownHostsPath, knownHosts string) (bool, error) {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	updated, err := Splice(string(old), block)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	if err := writeFile(knownHostsPath, []byte(knownHosts)); err != nil {
		return false, err
	}
	if bytes.Equal(old, []byte(updated)) {
		return false, nil
	}
	return true, writeFile(path, []byte(updated))
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	mode := os.FileMode(0o600)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	tmp := path + ".postern-tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}
