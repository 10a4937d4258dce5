package forwarder

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/internal/kubeproto"
)

// pipeChannel is an in-memory ssh.Channel: what the test writes to in
// comes out of Read, what Write gets goes to out.
type pipeChannel struct {
	inR  *io.PipeReader
	in   *io.PipeWriter
	out  *io.PipeWriter
	outR *io.PipeReader
}

func newPipeChannel() *pipeChannel {
	c := &pipeChannel{}
	c.inR, c.in = io.Pipe()
	c.outR, c.out = io.Pipe()
	return c
}

func (c *pipeChannel) Read(p []byte) (int, error)  { return c.inR.Read(p) }
func (c *pipeChannel) Write(p []byte) (int, error) { return c.out.Write(p) }
func (c *pipeChannel) Close() error {
	c.inR.Close()
	c.out.Close()
	return nil
}
func (c *pipeChannel) CloseWrite() error { return c.out.Close() }
func (c *pipeChannel) SendRequest(string, bool, []byte) (bool, error) {
	return false, errors.New("not supported")
}
func (c *pipeChannel) Stderr() io.ReadWriter { return nil }

func readAsync(c net.Conn, p []byte) chan error {
	done := make(chan error, 1)
	go func() {
		n, err := c.Read(p)
		if err == nil && n == 0 {
			err = errors.New("read 0 bytes")
		}
		done <- err
	}()
	return done
}

// A deadline moved into the past ends a pending Read with a timeout, and
// what arrives later is read by the next Read: nothing is lost.
func TestChannelConnReadDeadline(t *testing.T) {
	ch := newPipeChannel()
	c := newChannelConn(ch, kubeproto.Identity{}, "b")
	defer c.Close()

	buf := make([]byte, 16)
	done := readAsync(c, buf[:1])
	time.Sleep(20 * time.Millisecond) // let the Read block
	_ = c.SetReadDeadline(time.Unix(1, 0))
	select {
	case err := <-done:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("read after a past deadline: %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a deadline in the past did not end the pending Read")
	}
	if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read while the deadline is past: %v", err)
	}

	_ = c.SetReadDeadline(time.Time{})
	go func() { _, _ = ch.in.Write([]byte("hello")) }()
	n, err := io.ReadFull(c, buf[:5])
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read after clearing the deadline: %q %v", buf[:n], err)
	}

	// A deadline in the future fires by itself.
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	select {
	case err := <-readAsync(c, buf):
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read past a future deadline: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the deadline's timer did not end the Read")
	}

	// Data that arrived while nobody read waits for the next Read.
	_ = c.SetReadDeadline(time.Time{})
	go func() { _, _ = ch.in.Write([]byte("later")) }()
	n, err = io.ReadFull(c, buf[:5])
	if err != nil || string(buf[:n]) != "later" {
		t.Fatalf("read: %q %v", buf[:n], err)
	}

	ch.in.Close()
	if _, err := c.Read(buf); err != io.EOF {
		t.Fatalf("read at the channel's end: %v, want EOF", err)
	}
}

// A handler that hijacks the connection (as ReverseProxy does for a 101
// Switching Protocols) answers while the client waits: the server's
// pending background read must end when it hijacks.
func TestChannelConnHijackWhileClientWaits(t *testing.T) {
	ln := newChanListener()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		// then echo one line, the upgraded protocol
		line, _ := brw.ReadString('\n')
		_, _ = brw.WriteString(line)
		_ = brw.Flush()
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	ch := newPipeChannel()
	go ln.deliver(newChannelConn(ch, kubeproto.Identity{}, "b"))
	go func() {
		_, _ = io.WriteString(ch.in, "POST /upgrade HTTP/1.1\r\nHost: x\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
	}()
	out := bufio.NewReader(ch.outR)
	status := make(chan string, 1)
	go func() { s, _ := out.ReadString('\n'); status <- s }()
	select {
	case s := <-status:
		if !strings.HasPrefix(s, "HTTP/1.1 101 ") {
			t.Fatalf("status line %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no 101 within 5 s: the hijack waits for the client's next byte")
	}
	for {
		l, err := out.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l == "\r\n" {
			break
		}
	}
	go func() { _, _ = io.WriteString(ch.in, "ping\n") }()
	if l, err := out.ReadString('\n'); err != nil || l != "ping\n" {
		t.Fatalf("upgraded stream: %q %v", l, err)
	}
}
