package client

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ProxyState is what a running `kube-exec proxy` publishes in the postern
// directory so that `kube-exec -- CMD` for the same cluster can send the
// command's requests through it instead of making an SSH connection of
// its own.
type ProxyState struct {
	Cluster string `json:"cluster"`
	Bastion string `json:"bastion"`
	Person  string `json:"person"` // the key ID of the certificate it logged in with
	Addr    string `json:"addr"`   // the proxy's loopback address
	PID     int    `json:"pid"`
}

// proxyStatePath is the state file of the proxy for cluster (a valid
// cluster name: kubeproto.ValidCluster) under dir.
func proxyStatePath(dir, cluster string) string {
	return filepath.Join(dir, "kube-proxy-"+cluster+".json")
}

// PublishProxy writes st (0600, atomically) and returns a function that
// removes it again, unless another proxy has replaced it meanwhile.
func PublishProxy(dir string, st ProxyState) (unpublish func(), err error) {
	b, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	p := proxyStatePath(dir, st.Cluster)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	return func() {
		if cur, ok := readProxyState(p); ok && cur.PID == st.PID && cur.Addr == st.Addr {
			os.Remove(p)
		}
	}, nil
}

func readProxyState(p string) (ProxyState, bool) {
	var st ProxyState
	b, err := os.ReadFile(p)
	if err != nil || json.Unmarshal(b, &st) != nil || st.Addr == "" || st.PID <= 0 {
		return ProxyState{}, false
	}
	return st, true
}

// RunningProxy returns the proxy for cluster published under dir when it
// is still there: its process exists and its address accepts connections.
// With bastion non-empty, the proxy must be connected to that bastion.
// A proxy that died without removing its file (killed, a crash) is
// ignored. Whoever answers on the address must still prove to be the
// proxy: the command checks its TLS certificate (kube-proxy.crt) before
// it sends the token.
func RunningProxy(dir, cluster, bastion string) (ProxyState, bool) {
	st, ok := readProxyState(proxyStatePath(dir, cluster))
	if !ok || st.Cluster != cluster || (bastion != "" && st.Bastion != bastion) {
		return ProxyState{}, false
	}
	if err := syscall.Kill(st.PID, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return ProxyState{}, false
	}
	c, err := net.DialTimeout("tcp", st.Addr, time.Second)
	if err != nil {
		return ProxyState{}, false
	}
	c.Close()
	return st, true
}

// ProxyCredentials returns the token and certificate (PEM) of the proxies
// under dir, as kube-exec proxy keeps them.
func ProxyCredentials(dir string) (token string, certPEM []byte, err error) {
	tok, err := os.ReadFile(filepath.Join(dir, ProxyTokenFile))
	if err != nil {
		return "", nil, err
	}
	certPEM, err = os.ReadFile(filepath.Join(dir, ProxyCertFile))
	if err != nil {
		return "", nil, err
	}
	if t := trimSpace(tok); len(t) >= 32 {
		return string(t), certPEM, nil
	}
	return "", nil, errors.New("the proxy's token file is damaged")
}
