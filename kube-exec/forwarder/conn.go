package forwarder

import (
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/kubeproto"
)

// channelConn is an SSH channel as a net.Conn, carrying the identity the
// bastion sent with it. Deadlines are not supported (no-ops).
type channelConn struct {
	ssh.Channel
	id      kubeproto.Identity
	bastion string
}

type channelAddr string

func (a channelAddr) Network() string { return "ssh" }
func (a channelAddr) String() string  { return string(a) }

func (c *channelConn) identity() kubeproto.Identity { return c.id }

func (c *channelConn) LocalAddr() net.Addr              { return channelAddr("forwarder") }
func (c *channelConn) RemoteAddr() net.Addr             { return channelAddr(c.bastion + "/" + c.id.SessionID) }
func (c *channelConn) SetDeadline(time.Time) error      { return nil }
func (c *channelConn) SetReadDeadline(time.Time) error  { return nil }
func (c *channelConn) SetWriteDeadline(time.Time) error { return nil }

// chanListener hands channels from all tunnels to one http.Server.
type chanListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return channelAddr("forwarder") }
