package forwarder

import (
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/kubeproto"
)

// channelConn is an SSH channel as a net.Conn, carrying the identity the
// bastion sent with it.
//
// Read deadlines work: net/http depends on them. While a handler runs, the
// server keeps a read pending on the connection to notice the client
// leaving, and hijacking the connection (what an upgrade — exec, attach,
// port-forward — does) ends that read by setting a deadline in the past;
// with no deadline it would wait for the client's next byte, which a
// client waiting for its 101 never sends. An ssh.Channel has no deadlines,
// so reads go through a goroutine and Read waits for its data or the
// deadline, whichever comes first; data that arrives after a deadline
// waits for the next Read. Write deadlines are ignored (the server sets
// none: it has no WriteTimeout).
type channelConn struct {
	ssh.Channel
	id      kubeproto.Identity
	bastion string

	startOnce sync.Once
	reads     chan readResult
	closeOnce sync.Once
	closed    chan struct{}
	deadline  deadline

	rmu     sync.Mutex // one Read at a time; guards pending and rerr
	pending []byte
	rerr    error
}

type readResult struct {
	data []byte
	err  error
}

func newChannelConn(ch ssh.Channel, id kubeproto.Identity, bastion string) *channelConn {
	return &channelConn{
		Channel: ch, id: id, bastion: bastion,
		reads:    make(chan readResult),
		closed:   make(chan struct{}),
		deadline: deadline{cancel: make(chan struct{})},
	}
}

type channelAddr string

func (a channelAddr) Network() string { return "ssh" }
func (a channelAddr) String() string  { return string(a) }

func (c *channelConn) identity() kubeproto.Identity { return c.id }

func (c *channelConn) LocalAddr() net.Addr  { return channelAddr("forwarder") }
func (c *channelConn) RemoteAddr() net.Addr { return channelAddr(c.bastion + "/" + c.id.SessionID) }

func (c *channelConn) SetDeadline(t time.Time) error     { return c.SetReadDeadline(t) }
func (c *channelConn) SetReadDeadline(t time.Time) error { c.deadline.set(t); return nil }
func (c *channelConn) SetWriteDeadline(time.Time) error  { return nil }

// readLoop reads the channel until it ends or the conn is closed.
func (c *channelConn) readLoop() {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Channel.Read(buf)
		r := readResult{data: append([]byte(nil), buf[:n]...), err: err}
		select {
		case c.reads <- r:
		case <-c.closed:
			return
		}
		if err != nil {
			return
		}
	}
}

func (c *channelConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	case <-c.deadline.wait():
		return 0, os.ErrDeadlineExceeded
	default:
	}
	if len(c.pending) == 0 && c.rerr == nil {
		c.startOnce.Do(func() { go c.readLoop() })
		select {
		case r := <-c.reads:
			c.pending, c.rerr = r.data, r.err
		case <-c.deadline.wait():
			return 0, os.ErrDeadlineExceeded
		case <-c.closed:
			return 0, net.ErrClosed
		}
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return 0, c.rerr
}

func (c *channelConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Channel.Close()
}

// deadline is a read deadline as a channel closed when it passes, after
// net.Pipe's: a Read waiting on the channel wakes when the deadline is
// moved into the past or its timer fires.
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{} // closed once the deadline has passed
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait for it to close cancel
	}
	d.timer = nil
	closed := isClosed(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		cancel := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(cancel) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

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
