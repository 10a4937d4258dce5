package server

import (
	"net"
	"syscall"
)

// quickAckBelow: a read shorter than this is a message of a conversation
// (a key exchange, a login, a channel request, a command's short output),
// not part of a bulk stream.
const quickAckBelow = 2048

// quickAckConn acknowledges small messages at once (TCP_QUICKACK) instead
// of delaying the ACK.
//
// OpenSSH leaves Nagle's algorithm on for all but interactive sessions, so
// an ssh client (and a node's sshd) that writes two small packets in a row
// holds the second until the first is acknowledged; Linux delays that ACK
// by up to 40 ms when it expects to piggyback it on a reply. A connection
// setup through a jump host hits this several times: `ssh -J bastion node
// true` took ~220 ms on loopback, of which most was such waits, and ~145 ms
// with quick ACKs (docs/benchmarks.md). The kernel leaves quick-ACK mode on
// its own once it sees a reply follow a request, so it is re-armed after
// every small read; bulk transfers (large reads) keep the kernel's
// delayed ACKs and pay no extra system call.
type quickAckConn struct {
	net.Conn
	raw syscall.RawConn
}

// withQuickAck wraps c (a TCP connection, possibly behind wrappers that
// have NetConn) with quickAckConn; anything else is returned as it is.
func withQuickAck(c net.Conn) net.Conn {
	base := c
	for {
		u, ok := base.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		base = u.NetConn()
	}
	sc, ok := base.(syscall.Conn)
	if !ok {
		return c
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	q := &quickAckConn{Conn: c, raw: raw}
	q.arm()
	return q
}

func (q *quickAckConn) arm() {
	_ = q.raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}

func (q *quickAckConn) Read(p []byte) (int, error) {
	n, err := q.Conn.Read(p)
	if err == nil && n < quickAckBelow {
		q.arm()
	}
	return n, err
}

// NetConn returns the wrapped connection.
func (q *quickAckConn) NetConn() net.Conn { return q.Conn }
