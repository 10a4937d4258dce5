package server

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/postern-dev/postern/internal/proxyproto"
	"github.com/postern-dev/postern/internal/testenv"
)

// tcpPair returns both ends of a loopback TCP connection; with
// viaProxy, the server end is accepted by a PROXY-protocol listener (the
// client sends a header first).
func tcpPair(t *testing.T, viaProxy bool) (client *net.TCPConn, server net.Conn) {
	t.Helper()
	var ln net.Listener
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if viaProxy {
		ln = &proxyproto.Listener{Listener: ln, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Timeout: 10 * time.Second}
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if viaProxy {
		if _, err := c.Write([]byte("PROXY TCP4 192.0.2.7 127.0.0.1 40000 22\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	if pc, ok := s.(*proxyproto.Conn); ok {
		if err := pc.Handshake(); err != nil {
			t.Fatal(err)
		}
	}
	return c.(*net.TCPConn), s
}

// socketOf is the TCP connection under s.
func socketOf(s net.Conn) *net.TCPConn {
	if pc, ok := s.(*proxyproto.Conn); ok {
		return pc.NetConn().(*net.TCPConn)
	}
	return s.(*net.TCPConn)
}

// quickAck reads TCP_QUICKACK back: 1 when the kernel ACKs at once, 0
// when it is in delayed-ACK (ping-pong) mode.
func quickAck(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK)
	}); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	return v
}

// enterPingPong puts s's socket in delayed-ACK mode: a reply that follows
// a request at once is what the kernel takes for a conversation whose
// ACKs can ride on replies.
func enterPingPong(t *testing.T, c *net.TCPConn, s net.Conn) bool {
	t.Helper()
	buf := make([]byte, 64)
	for range 20 {
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Read(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write([]byte("pong")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
		if quickAck(t, socketOf(s)) == 0 {
			return true
		}
	}
	return false
}

// unobservable ends a test whose kernel did not behave as the test needs
// to observe anything: a skip on a developer's machine, a failure in CI,
// where a skipped test would assert nothing unnoticed.
func unobservable(t *testing.T, why string) {
	t.Helper()
	if testenv.Strict() {
		t.Fatal(why)
	}
	t.Skip(why)
}

// A small read re-arms quick ACKs on the TCP socket under any wrapper
// that exposes NetConn (the PROXY protocol's); a bulk read leaves the
// kernel's delayed ACKs alone; a connection without a socket is left as
// it is.
func TestQuickAck(t *testing.T) {
	for _, viaProxy := range []bool{false, true} {
		t.Run(map[bool]string{false: "tcp", true: "proxy protocol"}[viaProxy], func(t *testing.T) {
			c, s := tcpPair(t, viaProxy)
			q := withQuickAck(s)
			if _, ok := q.(*quickAckConn); !ok {
				t.Fatalf("withQuickAck(%T) found no socket", s)
			}
			if !enterPingPong(t, c, s) {
				unobservable(t, "the kernel did not enter delayed-ACK mode: nothing to observe")
			}
			if _, err := c.Write([]byte("small")); err != nil {
				t.Fatal(err)
			}
			if _, err := q.Read(make([]byte, 64)); err != nil {
				t.Fatal(err)
			}
			if quickAck(t, socketOf(s)) != 1 {
				t.Error("quick ACKs not armed after a small read")
			}

			if !enterPingPong(t, c, s) {
				unobservable(t, "the kernel did not enter delayed-ACK mode again")
			}
			big := make([]byte, 3*quickAckBelow)
			if _, err := c.Write(big); err != nil {
				t.Fatal(err)
			}
			n := 0
			buf := make([]byte, len(big))
			for n < quickAckBelow {
				m, err := q.Read(buf[n:])
				if err != nil {
					t.Fatal(err)
				}
				if m < quickAckBelow {
					unobservable(t, fmt.Sprintf("the bulk write arrived in a small read (%d bytes)", m))
				}
				n += m
			}
			if quickAck(t, socketOf(s)) != 0 {
				t.Error("a bulk read armed quick ACKs")
			}
		})
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if q := withQuickAck(a); q != a {
		t.Errorf("withQuickAck(net.Pipe) = %T, want the pipe itself", q)
	}
}
