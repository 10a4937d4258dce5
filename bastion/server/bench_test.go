package server

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Benchmarks of the bastion's own work, in process: the certificate check
// every connection pays, and forwarding bulk data through a direct-tcpip
// hop (run with -cpuprofile for a pprof profile of the data path; the
// client's encryption is in the same process, so read the server's share
// under handleDirectTCPIP/splice and x/crypto's server transport).
// internal/bench measures the real binaries against OpenSSH.

func BenchmarkAuthCheck(b *testing.B) {
	ca := newSigner(b)
	_, cert := mint(b, ca, certOpts{keyID: "alice@example.com", roles: "ops"})
	a := &authenticator{cas: []ssh.PublicKey{ca.PublicKey()}, skew: 30 * time.Second, now: time.Now}
	remote := netip.MustParseAddr("127.0.0.1")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := a.check(cert, remote); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// benchServer starts a bastion allowing 127.0.0.1:sinkPort, and a sink
// that reads and discards.
func benchServer(b *testing.B) (addr, sink string, ca ssh.Signer) {
	b.Helper()
	f := &fixture{userCA: newSigner(b), audit: &memAudit{}}
	sink = loopbackSink(b, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	_, port, _ := net.SplitHostPort(sink)
	startServer(b, f, `shutdown_grace = "1s"
[[role]]
name = "ops"
groups = ["ops"]
nodes = ["127.0.0.1:`+port+`"]
recording = "off"
`, Options{})
	return f.addr, sink, f.userCA
}

func BenchmarkForward(b *testing.B) {
	addr, sink, ca := benchServer(b)
	for _, cipher := range []string{ssh.CipherAES128GCM, ssh.CipherChaCha20Poly1305} {
		b.Run(cipher, func(b *testing.B) {
			s, _ := mint(b, ca, certOpts{keyID: "alice@example.com", roles: "ops"})
			c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
				User: "alice", Auth: []ssh.AuthMethod{ssh.PublicKeys(s)},
				HostKeyCallback: ssh.InsecureIgnoreHostKey(),
				Config:          ssh.Config{Ciphers: []string{cipher}},
			})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			conn, err := c.Dial("tcp", sink)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			buf := make([]byte, 32<<10)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := conn.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkConnect(b *testing.B) {
	addr, sink, ca := benchServer(b)
	for _, kex := range []string{ssh.KeyExchangeCurve25519, ssh.KeyExchangeMLKEM768X25519} {
		b.Run(kex, func(b *testing.B) {
			s, _ := mint(b, ca, certOpts{keyID: "alice@example.com", roles: "ops"})
			cfg := &ssh.ClientConfig{
				User: "alice", Auth: []ssh.AuthMethod{ssh.PublicKeys(s)},
				HostKeyCallback: ssh.InsecureIgnoreHostKey(),
				Config:          ssh.Config{KeyExchanges: []string{kex}},
			}
			b.ReportAllocs()
			for b.Loop() {
				c, err := ssh.Dial("tcp", addr, cfg)
				if err != nil {
					b.Fatal(err)
				}
				conn, err := c.Dial("tcp", sink)
				if err != nil {
					b.Fatal(err)
				}
				conn.Close()
				c.Close()
			}
		})
	}
}
