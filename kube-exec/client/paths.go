package client

import (
	"os"
	"path/filepath"

	"github.com/postern-dev/postern/internal/kubeproto"
)

func filepathList(s string) []string { return filepath.SplitList(s) }

// ProxyTokenFile is where `kube-exec proxy` keeps its token, under the
// postern directory.
const ProxyTokenFile = kubeproto.ProxyTokenFile

// ProxyToken returns the proxy's token from dir, creating it (0600) when
// missing.
func ProxyToken(dir string) (string, error) {
	p := filepath.Join(dir, ProxyTokenFile)
	b, err := os.ReadFile(p)
	if err == nil && len(b) >= 32 {
		return string(trimSpace(b)), nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	t := NewToken()
	if err := os.WriteFile(p, []byte(t+"\n"), 0o600); err != nil {
		return "", err
	}
	return t, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
