package client

import (
	"net"
	"os"
	"os/exec"
	"testing"
)

// A published proxy is found while its process lives and its address
// accepts connections, for its cluster and bastion only; a dead one is
// ignored; unpublishing removes only the proxy's own file.
func TestRunningProxy(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	st := ProxyState{Cluster: "prod", Bastion: "bastion:2222", Addr: ln.Addr().String(), PID: os.Getpid()}
	unpublish, err := PublishProxy(dir, st)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(proxyStatePath(dir, "prod")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", fi, err)
	}
	if got, ok := RunningProxy(dir, "prod", ""); !ok || got != st {
		t.Errorf("RunningProxy(prod) = %+v, %v", got, ok)
	}
	if _, ok := RunningProxy(dir, "prod", "bastion:2222"); !ok {
		t.Error("not found with its own bastion")
	}
	if _, ok := RunningProxy(dir, "prod", "other:2222"); ok {
		t.Error("found for another bastion")
	}
	if _, ok := RunningProxy(dir, "staging", ""); ok {
		t.Error("found for another cluster")
	}

	// A process that has exited.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := st
	stale.PID = dead.Process.Pid
	unpublishStale, err := PublishProxy(dir, stale)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := RunningProxy(dir, "prod", ""); ok {
		t.Error("a proxy whose process is gone was found")
	}
	// The first proxy's unpublish leaves the newer file alone.
	unpublish()
	if _, err := os.Stat(proxyStatePath(dir, "prod")); err != nil {
		t.Errorf("another proxy's state file was removed: %v", err)
	}
	unpublishStale()
	if _, err := os.Stat(proxyStatePath(dir, "prod")); !os.IsNotExist(err) {
		t.Errorf("state file not removed: %v", err)
	}

	// Alive, but nothing listens any more.
	if _, err := PublishProxy(dir, st); err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if _, ok := RunningProxy(dir, "prod", ""); ok {
		t.Error("a proxy whose address refuses connections was found")
	}

	// Credentials: the proxy's token and certificate, as it keeps them.
	if _, _, err := ProxyCredentials(dir); err == nil {
		t.Error("credentials without files")
	}
	tok, err := ProxyToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, certPEM, err := LoopbackTLS(dir)
	if err != nil {
		t.Fatal(err)
	}
	gotTok, gotPEM, err := ProxyCredentials(dir)
	if err != nil || gotTok != tok || string(gotPEM) != string(certPEM) {
		t.Errorf("ProxyCredentials = %q, %v", gotTok, err)
	}
}
