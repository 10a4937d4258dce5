package proxyproto

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// DefaultTimeout bounds reading a header when Listener.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// ErrUntrustedSource is a connection from a peer not in Listener.Allow.
var ErrUntrustedSource = errors.New("connection not from a listed PROXY protocol source")

// Listener wraps a listener whose connections come through load
// balancers that send a PROXY header. Accept returns connections from
// peers in Allow as *Conn, whose header is read at the first Handshake,
// Read or RemoteAddr; connections from peers in Direct (and not in Allow)
// as they are, without a header; and closes every other one.
type Listener struct {
	net.Listener
	// Allow lists the load balancers whose headers are trusted. Empty
	// refuses every connection.
	Allow []netip.Prefix
	// Direct lists peers that connect without a load balancer (in-VPC
	// forwarders, administrators' hosts): they send no header and their
	// own address is used. A peer in both lists must send a header.
	Direct []netip.Prefix
	// Timeout bounds reading the header. Default DefaultTimeout.
	Timeout time.Duration
	// Refused, if set, is told of every refused connection: at accept
	// (ErrUntrustedSource) or at the header (ErrNoHeader, ErrBadHeader,
	// a read error). peer is the connection's own remote address.
	Refused func(peer net.Addr, err error)
}

// Accept returns the next connection from an allowed peer.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !contains(l.Allow, c.RemoteAddr()) {
			if contains(l.Direct, c.RemoteAddr()) {
				return c, nil
			}
			c.Close()
			l.refused(c.RemoteAddr(), ErrUntrustedSource)
			continue
		}
		t := l.Timeout
		if t <= 0 {
			t = DefaultTimeout
		}
		return &Conn{Conn: c, timeout: t, refused: l.refused}, nil
	}
}

// contains reports whether a is a TCP address inside one of list.
func contains(list []netip.Prefix, a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	for _, p := range list {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (l *Listener) refused(peer net.Addr, err error) {
	if l.Refused != nil {
		l.Refused(peer, err)
	}
}

// Conn is a connection from an allowed load balancer. Its header is read
// once, by Handshake or the first Read or RemoteAddr; until it has been
// read successfully, Read fails and nothing from the connection is used.
type Conn struct {
	net.Conn
	timeout time.Duration
	refused func(net.Addr, error)

	once sync.Once
	br   *bufio.Reader
	hdr  *Header
	err  error
}

// Handshake reads the PROXY header, within the listener's timeout. On
// failure the connection is closed and every later call returns the same
// error.
func (c *Conn) Handshake() error {
	c.once.Do(func() {
		c.br = bufio.NewReaderSize(c.Conn, 256)
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
		c.hdr, c.err = Read(c.br)
		if c.err == nil {
			c.err = c.Conn.SetReadDeadline(time.Time{})
		}
		if c.err != nil {
			c.err = fmt.Errorf("from %s: %w", c.Conn.RemoteAddr(), c.err)
			c.Conn.Close()
			if c.refused != nil {
				c.refused(c.Conn.RemoteAddr(), c.err)
			}
		}
	})
	return c.err
}

// NetConn returns the connection from the load balancer.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Header returns the header read, nil before a successful Handshake.
func (c *Conn) Header() *Header {
	if c.Handshake() != nil {
		return nil
	}
	return c.hdr
}

// Read reads what follows the header.
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	return c.br.Read(p)
}

// RemoteAddr is the client's address from the header; the connection's
// own for a LOCAL header or when the header could not be read. LocalAddr
// stays the connection's own.
func (c *Conn) RemoteAddr() net.Addr {
	if c.Handshake() != nil || c.hdr.Local {
		return c.Conn.RemoteAddr()
	}
	return net.TCPAddrFromAddrPort(c.hdr.Source)
}
