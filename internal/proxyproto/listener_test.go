package proxyproto

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

// serve accepts one connection on a Listener, runs Handshake and reports
// the result; client writes what the load balancer would.
func serve(t *testing.T, allow string, timeout time.Duration, client func(net.Conn)) (remote net.Addr, data string, refusedErr error) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := make(chan error, 1)
	l := &Listener{Listener: inner, Allow: []netip.Prefix{netip.MustParsePrefix(allow)}, Timeout: timeout,
		Refused: func(_ net.Addr, err error) { refused <- err }}
	defer l.Close()
	go func() {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		client(c)
		time.Sleep(500 * time.Millisecond)
	}()
	type result struct {
		addr net.Addr
		data string
	}
	got := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if err := c.(*Conn).Handshake(); err != nil {
			return
		}
		b := make([]byte, 5)
		_, _ = io.ReadFull(c, b)
		got <- result{c.RemoteAddr(), string(b)}
	}()
	select {
	case r := <-got:
		return r.addr, r.data, nil
	case err := <-refused:
		return nil, "", err
	case <-time.After(10 * time.Second):
		t.Fatal("neither accepted nor refused")
	}
	return nil, "", nil
}

func TestListener(t *testing.T) {
	src := netip.MustParseAddrPort("127.0.0.5:40000")
	dst := netip.MustParseAddrPort("127.0.0.1:2222")
	for _, v := range []int{1, 2} {
		addr, data, err := serve(t, "127.0.0.0/8", time.Second, func(c net.Conn) {
			c.Write((&Header{Version: v, Source: src, Dest: dst}).Format())
			c.Write([]byte("hello"))
		})
		if err != nil {
			t.Fatalf("v%d: refused: %v", v, err)
		}
		if addr.String() != src.String() || data != "hello" {
			t.Errorf("v%d: RemoteAddr %v, data %q; want %v, hello", v, addr, data, src)
		}
	}
	// LOCAL: the balancer's own address stands.
	addr, _, err := serve(t, "127.0.0.0/8", time.Second, func(c net.Conn) {
		c.Write((&Header{Version: 2, Local: true}).Format())
		c.Write([]byte("hello"))
	})
	if err != nil || addr.(*net.TCPAddr).IP.String() != "127.0.0.1" {
		t.Errorf("LOCAL: RemoteAddr %v, err %v; want 127.0.0.1", addr, err)
	}
}

func TestListenerRefuses(t *testing.T) {
	header := (&Header{Version: 2, Source: netip.MustParseAddrPort("192.0.2.1:1"), Dest: netip.MustParseAddrPort("127.0.0.1:22")}).Format()
	tests := []struct {
		name    string
		allow   string
		client  func(net.Conn)
		wantErr error
	}{
		{"untrusted source with a header", "10.0.0.0/8", func(c net.Conn) { c.Write(header) }, ErrUntrustedSource},
		{"listed source without a header", "127.0.0.1/32", func(c net.Conn) { c.Write([]byte("SSH-2.0-OpenSSH_9.9\r\n")) }, ErrNoHeader},
		{"malformed header", "127.0.0.1/32", func(c net.Conn) { c.Write([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 99999 22\r\n")) }, ErrBadHeader},
		{"silent client", "127.0.0.1/32", func(c net.Conn) {}, os.ErrDeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := serve(t, tt.allow, 200*time.Millisecond, tt.client)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("refused with %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestListenerDirect: a peer in Direct connects without a header and keeps
// its own address; one in both lists must still send a header.
func TestListenerDirect(t *testing.T) {
	for _, tt := range []struct {
		name, allow, direct string
		wantPlain           bool
	}{
		{"direct peer", "10.0.0.0/8", "127.0.0.0/8", true},
		{"peer in both lists", "127.0.0.1/32", "127.0.0.0/8", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			l := &Listener{Listener: inner, Allow: []netip.Prefix{netip.MustParsePrefix(tt.allow)},
				Direct: []netip.Prefix{netip.MustParsePrefix(tt.direct)}, Timeout: 200 * time.Millisecond}
			defer l.Close()
			c, err := net.Dial("tcp", inner.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte("SSH-2.0-OpenSSH_9.9\r\n"))
			a, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			_, isProxy := a.(*Conn)
			if isProxy == tt.wantPlain {
				t.Fatalf("accepted as *Conn = %v, want %v", isProxy, !tt.wantPlain)
			}
			if tt.wantPlain {
				b := make([]byte, 7)
				if _, err := io.ReadFull(a, b); err != nil || string(b) != "SSH-2.0" || a.RemoteAddr().String() != c.LocalAddr().String() {
					t.Fatalf("direct conn read %q (%v), RemoteAddr %v want %v", b, err, a.RemoteAddr(), c.LocalAddr())
				}
			} else if err := a.(*Conn).Handshake(); !errors.Is(err, ErrNoHeader) {
				t.Fatalf("listed peer without header: %v, want ErrNoHeader", err)
			}
		})
	}
}
