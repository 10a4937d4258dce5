package proxyproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRead(t *testing.T) {
	v4 := &Header{Version: 2, Source: netip.MustParseAddrPort("192.0.2.7:51000"), Dest: netip.MustParseAddrPort("10.0.0.1:22")}
	v6 := &Header{Version: 2, Source: netip.MustParseAddrPort("[2001:db8::7]:51000"), Dest: netip.MustParseAddrPort("[2001:db8::1]:22")}
	tlv := append(v4.Format(), 0x04, 0, 1, 'x') // PP2_TYPE_NOOP TLV after the addresses
	tlv[15] += 4
	tests := []struct {
		name    string
		in      string
		want    *Header
		wantErr error
	}{
		{name: "v1 tcp4", in: "PROXY TCP4 192.0.2.7 10.0.0.1 51000 22\r\nSSH-2.0-x",
			want: &Header{Version: 1, Source: netip.MustParseAddrPort("192.0.2.7:51000"), Dest: netip.MustParseAddrPort("10.0.0.1:22")}},
		{name: "v1 tcp6", in: "PROXY TCP6 2001:db8::7 2001:db8::1 51000 22\r\nSSH-2.0-x",
			want: &Header{Version: 1, Source: netip.MustParseAddrPort("[2001:db8::7]:51000"), Dest: netip.MustParseAddrPort("[2001:db8::1]:22")}},
		{name: "v1 unknown", in: "PROXY UNKNOWN\r\nSSH-2.0-x", want: &Header{Version: 1, Local: true}},
		{name: "v1 unknown with addresses", in: "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\nSSH-2.0-x", want: &Header{Version: 1, Local: true}},
		{name: "v2 tcp4", in: string(v4.Format()) + "SSH-2.0-x", want: v4},
		{name: "v2 tcp6", in: string(v6.Format()) + "SSH-2.0-x", want: v6},
		{name: "v2 tcp4 with tlv", in: string(tlv) + "SSH-2.0-x", want: v4},
		{name: "v2 local", in: string((&Header{Version: 2, Local: true}).Format()) + "SSH-2.0-x", want: &Header{Version: 2, Local: true}},
		{name: "v2 proxy unspec", in: "\r\n\r\n\x00\r\nQUIT\n\x21\x00\x00\x00SSH-2.0-x", want: &Header{Version: 2, Local: true}},

		{name: "no header", in: "SSH-2.0-OpenSSH_9.9\r\n", wantErr: ErrNoHeader},
		{name: "v1 lowercase", in: "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", wantErr: ErrNoHeader},
		{name: "v1 no CR", in: "PROXY TCP4 192.0.2.7 10.0.0.1 51000 22\nSSH", wantErr: ErrBadHeader},
		{name: "v1 too long", in: "PROXY TCP4 " + strings.Repeat("1", 200) + "\r\n", wantErr: ErrBadHeader},
		{name: "v1 family mismatch", in: "PROXY TCP4 2001:db8::7 10.0.0.1 51000 22\r\n", wantErr: ErrBadHeader},
		{name: "v1 tcp6 with v4", in: "PROXY TCP6 192.0.2.7 10.0.0.1 51000 22\r\n", wantErr: ErrBadHeader},
		{name: "v1 port too big", in: "PROXY TCP4 192.0.2.7 10.0.0.1 65536 22\r\n", wantErr: ErrBadHeader},
		{name: "v1 port leading zero", in: "PROXY TCP4 192.0.2.7 10.0.0.1 022 22\r\n", wantErr: ErrBadHeader},
		{name: "v1 port sign", in: "PROXY TCP4 192.0.2.7 10.0.0.1 +22 22\r\n", wantErr: ErrBadHeader},
		{name: "v1 double space", in: "PROXY TCP4  192.0.2.7 10.0.0.1 1 22\r\n", wantErr: ErrBadHeader},
		{name: "v1 extra field", in: "PROXY TCP4 192.0.2.7 10.0.0.1 1 22 x\r\n", wantErr: ErrBadHeader},
		{name: "v1 udp", in: "PROXY UDP4 192.0.2.7 10.0.0.1 1 22\r\n", wantErr: ErrBadHeader},
		{name: "v1 zone", in: "PROXY TCP6 fe80::1%eth0 fe80::2 1 22\r\n", wantErr: ErrBadHeader},
		{name: "v2 version 3", in: "\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + strings.Repeat("\x00", 12), wantErr: ErrBadHeader},
		{name: "v2 command 2", in: "\r\n\r\n\x00\r\nQUIT\n\x22\x11\x00\x0c" + strings.Repeat("\x00", 12), wantErr: ErrBadHeader},
		{name: "v2 short tcp4", in: "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x08" + strings.Repeat("\x00", 8), wantErr: ErrBadHeader},
		{name: "v2 short tcp6", in: "\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x0c" + strings.Repeat("\x00", 12), wantErr: ErrBadHeader},
		{name: "v2 udp", in: "\r\n\r\n\x00\r\nQUIT\n\x21\x12\x00\x0c" + strings.Repeat("\x00", 12), wantErr: ErrBadHeader},
		{name: "v2 unix", in: "\r\n\r\n\x00\r\nQUIT\n\x21\x31\x00\xd8" + strings.Repeat("\x00", 216), wantErr: ErrBadHeader},
		{name: "v2 huge length", in: "\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff", wantErr: ErrBadHeader},
		{name: "v2 truncated", in: "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x01\x02", wantErr: io.ErrUnexpectedEOF},
		{name: "short", in: "PROX", wantErr: io.ErrUnexpectedEOF},
		{name: "empty", in: "", wantErr: io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReaderSize(strings.NewReader(tt.in), 16)
			h, err := Read(r)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Read: err %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if diff := cmp.Diff(tt.want, h, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("header (-want +got):\n%s", diff)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != "SSH-2.0-x" {
				t.Errorf("left %q after the header, want SSH-2.0-x", rest)
			}
		})
	}
}

func TestFormatRoundTrip(t *testing.T) {
	for _, h := range []*Header{
		{Version: 1, Source: netip.MustParseAddrPort("127.0.0.5:40000"), Dest: netip.MustParseAddrPort("127.0.0.1:2222")},
		{Version: 1, Source: netip.MustParseAddrPort("[::1]:40000"), Dest: netip.MustParseAddrPort("[::1]:2222")},
		{Version: 2, Source: netip.MustParseAddrPort("127.0.0.5:40000"), Dest: netip.MustParseAddrPort("127.0.0.1:2222")},
		{Version: 2, Source: netip.MustParseAddrPort("[::1]:40000"), Dest: netip.MustParseAddrPort("[::1]:2222")},
		{Version: 1, Local: true},
		{Version: 2, Local: true},
	} {
		got, err := Read(bufio.NewReader(bytes.NewReader(h.Format())))
		if err != nil {
			t.Fatalf("Read(%q): %v", h.Format(), err)
		}
		if *got != *h {
			t.Errorf("round trip of %+v gave %+v", h, got)
		}
	}
}

// FuzzRead checks that Read never panics, never consumes more than a
// header's bound, and that what it accepts re-encodes to an equal header.
func FuzzRead(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.7 10.0.0.1 51000 22\r\nSSH-2.0-x"))
	f.Add([]byte("PROXY TCP6 2001:db8::7 2001:db8::1 51000 22\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add((&Header{Version: 2, Source: netip.MustParseAddrPort("192.0.2.7:1"), Dest: netip.MustParseAddrPort("10.0.0.1:22")}).Format())
	f.Add((&Header{Version: 2, Source: netip.MustParseAddrPort("[2001:db8::7]:1"), Dest: netip.MustParseAddrPort("[::1]:22")}).Format())
	f.Add((&Header{Version: 2, Local: true}).Format())
	f.Add([]byte("SSH-2.0-OpenSSH_9.9\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		cr := &countReader{r: bytes.NewReader(in)}
		r := bufio.NewReaderSize(cr, 16)
		h, err := Read(r)
		consumed := cr.n - r.Buffered()
		if consumed > 16+MaxV2Payload {
			t.Fatalf("consumed %d bytes", consumed)
		}
		if err != nil {
			if h != nil {
				t.Fatal("header and error")
			}
			return
		}
		if h.Version == 1 && consumed > MaxV1 {
			t.Fatalf("v1 header of %d bytes", consumed)
		}
		if h.Local {
			return
		}
		if !h.Source.Addr().IsValid() || !h.Dest.Addr().IsValid() {
			t.Fatalf("invalid addresses in %+v", h)
		}
		again, err := Read(bufio.NewReader(bytes.NewReader(h.Format())))
		if err != nil || *again != *h {
			t.Fatalf("re-read of %+v: %+v, %v", h, again, err)
		}
	})
}

type countReader struct {
	r io.Reader
	n int
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
