package main

import (
	"net"
	"testing"

	"github.com/postern-dev/postern/internal/kubeproto"
)

// kube-exec listens on the cluster's port, else on the next few fixed
// ones (kubectl keeps its discovery cache per address), else anywhere.
func TestListenLoopback(t *testing.T) {
	const cluster = "listen-test"
	base := kubeproto.ProxyPort(cluster)
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for i := range loopbackPorts + 1 {
		ln, err := listenLoopback(cluster)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, ln)
		port := ln.Addr().(*net.TCPAddr).Port
		want := kubeproto.ProxyPortBase + (base-kubeproto.ProxyPortBase+i)%kubeproto.ProxyPortRange
		if i < loopbackPorts && port != want {
			t.Skipf("port %d is in use by another process: cannot check the sequence", want)
		}
		if i == loopbackPorts && port >= base && port < base+loopbackPorts {
			t.Errorf("after %d fixed ports, got %d again", loopbackPorts, port)
		}
	}
}
