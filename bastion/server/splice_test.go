package server

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/audit"
)

// sizedReader returns the sizes in order (bytes of 'x'), then EOF, and
// records the buffer length of every call.
type sizedReader struct {
	sizes []int
	asked []int
}

func (r *sizedReader) Read(p []byte) (int, error) {
	r.asked = append(r.asked, len(p))
	if len(r.sizes) == 0 {
		return 0, io.EOF
	}
	n := min(r.sizes[0], len(p))
	r.sizes = r.sizes[1:]
	for i := range n {
		p[i] = 'x'
	}
	return n, nil
}

// copyBuffered waits on a small buffer, moves to a pooled 32 KiB one when
// a read fills the small one, keeps it through one small read, and gives
// it back after two in a row.
func TestCopyBufferedBufferSizes(t *testing.T) {
	big := 32 << 10
	sizes := []int{10, smallBuf, 20000, 100, big, 100, 5, 7}
	r := &sizedReader{sizes: sizes}
	var out bytes.Buffer
	n, err := copyBuffered(&out, r)
	total := 0
	for _, s := range sizes {
		total += s
	}
	if err != nil || n != int64(total) || int64(out.Len()) != n {
		t.Fatalf("copied %d (%d written), %v", n, out.Len(), err)
	}
	// 10 and 512 on the small buffer; 20000, 100 (one small read: kept),
	// big, 100, 5 (two in a row: given back) on the big one; 7 and the
	// EOF on the small one.
	want := []int{smallBuf, smallBuf, big, big, big, big, big, smallBuf, smallBuf}
	if len(r.asked) != len(want) {
		t.Fatalf("buffer sizes %v, want %v", r.asked, want)
	}
	for i := range want {
		if r.asked[i] != want[i] {
			t.Fatalf("buffer sizes %v, want %v", r.asked, want)
		}
	}
}

// spliceFixture is a bastion allowing one node whose connections the test
// drives.
func spliceFixture(t *testing.T) (*fixture, string, chan net.Conn, *ssh.Client) {
	t.Helper()
	f := &fixture{userCA: newSigner(t), audit: &memAudit{}}
	conns := make(chan net.Conn, 4)
	node := loopbackSink(t, func(c net.Conn) {
		done := make(chan struct{})
		conns <- &notifyConn{Conn: c, done: done}
		<-done
	})
	_, port, _ := net.SplitHostPort(node)
	startServer(t, f, `shutdown_grace = "1s"
[[role]]
name = "ops"
groups = ["ops"]
nodes = ["127.0.0.1:`+port+`"]
recording = "off"
`, Options{})
	s, _ := mint(t, f.userCA, certOpts{keyID: "alice@example.com", roles: "ops"})
	c, err := f.dial(t, ssh.PublicKeys(s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return f, node, conns, c
}

// notifyConn tells the sink's handler when the test is done with it.
type notifyConn struct {
	net.Conn
	done chan struct{}
}

func (c *notifyConn) Close() error {
	err := c.Conn.Close()
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	return err
}

func nodeConn(t *testing.T, conns chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-conns:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no connection reached the node")
		return nil
	}
}

func readAll(t *testing.T, c net.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func TestSpliceEndReasons(t *testing.T) {
	t.Run("client closed", func(t *testing.T) {
		f, node, conns, c := spliceFixture(t)
		ch, err := c.Dial("tcp", node)
		if err != nil {
			t.Fatal(err)
		}
		n := nodeConn(t, conns)
		ch.Write([]byte("ping"))
		ch.(interface{ CloseWrite() error }).CloseWrite()
		if got := readAll(t, n); got != "ping" {
			t.Fatalf("node got %q", got)
		}
		n.Write([]byte("pong!"))
		n.Close()
		if got := readAll(t, ch); got != "pong!" {
			t.Fatalf("client got %q", got)
		}
		end := f.audit.wait(t, audit.SessionEnd, nil)
		if end.Reason != ReasonClientClosed || end.BytesIn != 4 || end.BytesOut != 5 {
			t.Fatalf("session.end %+v", end)
		}
	})
	t.Run("node closed", func(t *testing.T) {
		f, node, conns, c := spliceFixture(t)
		ch, err := c.Dial("tcp", node)
		if err != nil {
			t.Fatal(err)
		}
		n := nodeConn(t, conns)
		n.Write([]byte("bye"))
		n.Close()
		if got := readAll(t, ch); got != "bye" {
			t.Fatalf("client got %q", got)
		}
		ch.Close()
		end := f.audit.wait(t, audit.SessionEnd, nil)
		if end.Reason != ReasonNodeClosed || end.BytesIn != 0 || end.BytesOut != 3 {
			t.Fatalf("session.end %+v", end)
		}
	})
	t.Run("client disconnected", func(t *testing.T) {
		f, node, conns, c := spliceFixture(t)
		ch, err := c.Dial("tcp", node)
		if err != nil {
			t.Fatal(err)
		}
		n := nodeConn(t, conns)
		ch.Write([]byte("hi"))
		buf := make([]byte, 2)
		_ = n.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(n, buf); err != nil {
			t.Fatal(err)
		}
		c.Close() // the whole SSH connection, the node stays quiet
		if got := readAll(t, n); got != "" {
			t.Fatalf("node got %q after the client left", got)
		}
		end := f.audit.wait(t, audit.SessionEnd, nil)
		if end.Reason != ReasonDisconnected || end.BytesIn != 2 {
			t.Fatalf("session.end %+v", end)
		}
	})
	t.Run("mixed sizes", func(t *testing.T) {
		f, node, conns, c := spliceFixture(t)
		ch, err := c.Dial("tcp", node)
		if err != nil {
			t.Fatal(err)
		}
		n := nodeConn(t, conns)
		go func() { io.Copy(n, n); n.Close() }() // echo
		var sent bytes.Buffer
		got := make(chan []byte, 1)
		go func() { b, _ := io.ReadAll(ch); got <- b }()
		for i, size := range []int{1, 700, 100 << 10, 3, smallBuf, 64 << 10, 10, 1} {
			p := bytes.Repeat([]byte{byte('a' + i)}, size)
			sent.Write(p)
			if _, err := ch.Write(p); err != nil {
				t.Fatal(err)
			}
		}
		ch.(interface{ CloseWrite() error }).CloseWrite()
		select {
		case b := <-got:
			if !bytes.Equal(b, sent.Bytes()) {
				t.Fatalf("echo returned %d bytes, sent %d (or different)", len(b), sent.Len())
			}
		case <-time.After(20 * time.Second):
			t.Fatal("echo did not finish")
		}
		end := f.audit.wait(t, audit.SessionEnd, nil)
		if end.BytesIn != int64(sent.Len()) || end.BytesOut != int64(sent.Len()) {
			t.Fatalf("session.end %+v, want %d bytes each way", end, sent.Len())
		}
	})
}
