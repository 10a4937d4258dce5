package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// Limits of what Read accepts.
const (
	// MaxV1 is the longest v1 header, CRLF included (the specification's
	// bound).
	MaxV1 = 107
	// MaxV2Payload bounds the bytes after a v2 header's 16-byte prefix:
	// addresses plus TLVs. The specification allows 65535; load balancers
	// send far less (HAProxy and AWS NLB stay under a few hundred).
	MaxV2Payload = 1024
)

// v2Sig starts every v2 header.
var v2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// ErrNoHeader is a connection that does not start with a PROXY header;
// ErrBadHeader one whose header is malformed or unsupported.
var (
	ErrNoHeader  = errors.New("no PROXY protocol header")
	ErrBadHeader = errors.New("bad PROXY protocol header")
)

// Header is a parsed PROXY header.
type Header struct {
	// Version is 1 or 2.
	Version int
	// Local is set for v2 LOCAL, v2 UNSPEC and v1 UNKNOWN: the balancer's
	// own connection (a health check) or an unknown source; Source and
	// Dest are then zero and the connection's addresses stand.
	Local bool
	// Source is the client, Dest the address it connected to.
	Source, Dest netip.AddrPort
}

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadHeader, fmt.Sprintf(format, args...))
}

// Read reads one header from r, consuming exactly its bytes. r should be
// a bufio.Reader of at least 16 bytes around the connection; the caller
// bounds the time it may take.
func Read(r *bufio.Reader) (*Header, error) {
	// "PROXY UNKNOWN\r\n", the shortest header, is 15 bytes; a v2 prefix
	// is 16: peeking 12 never waits for bytes a valid header lacks.
	p, err := r.Peek(12)
	if err != nil {
		if errors.Is(err, io.EOF) && len(p) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read PROXY header: %w", err)
	}
	switch {
	case bytes.Equal(p, v2Sig):
		return readV2(r)
	case bytes.HasPrefix(p, []byte("PROXY ")):
		return readV1(r)
	}
	return nil, ErrNoHeader
}

func readV1(r *bufio.Reader) (*Header, error) {
	line := make([]byte, 0, MaxV1)
	for {
		b, err := r.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("read PROXY v1 header: %w", eof(err))
		}
		line = append(line, b)
		if b == '\n' {
			break
		}
		if len(line) == MaxV1 {
			return nil, bad("v1 header longer than %d bytes", MaxV1)
		}
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, bad("v1 header not ended by CRLF")
	}
	f := strings.Split(string(line[:len(line)-2]), " ")
	if f[0] != "PROXY" || len(f) < 2 {
		return nil, bad("v1 header without protocol")
	}
	h := &Header{Version: 1}
	switch f[1] {
	case "UNKNOWN":
		// The rest of the line, if any, is to be ignored.
		h.Local = true
		return h, nil
	case "TCP4", "TCP6":
	default:
		return nil, bad("v1 protocol %.8q", f[1])
	}
	if len(f) != 6 {
		return nil, bad("v1 header has %d fields, want 6", len(f))
	}
	src, err1 := v1Addr(f[2], f[4], f[1] == "TCP4")
	dst, err2 := v1Addr(f[3], f[5], f[1] == "TCP4")
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	h.Source, h.Dest = src, dst
	return h, nil
}

func v1Addr(addr, port string, v4 bool) (netip.AddrPort, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" || a.Is4() != v4 {
		return netip.AddrPort{}, bad("v1 address %.46q", addr)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || (len(port) > 1 && port[0] == '0') {
		return netip.AddrPort{}, bad("v1 port %.8q", port)
	}
	return netip.AddrPortFrom(a, uint16(n)), nil
}

func readV2(r *bufio.Reader) (*Header, error) {
	var pre [16]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, fmt.Errorf("read PROXY v2 header: %w", eof(err))
	}
	verCmd, fam := pre[12], pre[13]
	n := int(binary.BigEndian.Uint16(pre[14:]))
	if verCmd>>4 != 2 {
		return nil, bad("v2 version %d", verCmd>>4)
	}
	cmd := verCmd & 0xf
	if cmd > 1 {
		return nil, bad("v2 command %d", cmd)
	}
	if n > MaxV2Payload {
		return nil, bad("v2 payload of %d bytes (limit %d)", n, MaxV2Payload)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, fmt.Errorf("read PROXY v2 header: %w", eof(err))
	}
	h := &Header{Version: 2}
	if cmd == 0 { // LOCAL: addresses, if any, are to be ignored
		h.Local = true
		return h, nil
	}
	switch fam {
	case 0x00: // UNSPEC
		h.Local = true
	case 0x11: // TCP over IPv4
		if n < 12 {
			return nil, bad("v2 TCP4 payload of %d bytes", n)
		}
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(payload[0:4])), binary.BigEndian.Uint16(payload[8:]))
		h.Dest = netip.AddrPortFrom(netip.AddrFrom4([4]byte(payload[4:8])), binary.BigEndian.Uint16(payload[10:]))
	case 0x21: // TCP over IPv6
		if n < 36 {
			return nil, bad("v2 TCP6 payload of %d bytes", n)
		}
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(payload[0:16])), binary.BigEndian.Uint16(payload[32:]))
		h.Dest = netip.AddrPortFrom(netip.AddrFrom16([16]byte(payload[16:32])), binary.BigEndian.Uint16(payload[34:]))
	default:
		return nil, bad("v2 family 0x%02x (only TCP over IPv4 or IPv6)", fam)
	}
	// TLVs (the rest of the payload) carry nothing postern uses.
	return h, nil
}

func eof(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Format encodes h as a header of its Version (load balancers and tests).
func (h *Header) Format() []byte {
	if h.Version == 1 {
		if h.Local {
			return []byte("PROXY UNKNOWN\r\n")
		}
		proto := "TCP6"
		if h.Source.Addr().Is4() {
			proto = "TCP4"
		}
		return fmt.Appendf(nil, "PROXY %s %s %s %d %d\r\n", proto, h.Source.Addr(), h.Dest.Addr(), h.Source.Port(), h.Dest.Port())
	}
	b := append([]byte(nil), v2Sig...)
	if h.Local {
		return append(b, 0x20, 0x00, 0, 0)
	}
	var payload []byte
	fam := byte(0x21)
	if h.Source.Addr().Is4() {
		fam = 0x11
		s, d := h.Source.Addr().As4(), h.Dest.Addr().As4()
		payload = append(append(payload, s[:]...), d[:]...)
	} else {
		s, d := h.Source.Addr().As16(), h.Dest.Addr().As16()
		payload = append(append(payload, s[:]...), d[:]...)
	}
	payload = binary.BigEndian.AppendUint16(payload, h.Source.Port())
	payload = binary.BigEndian.AppendUint16(payload, h.Dest.Port())
	b = append(b, 0x21, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	return append(b, payload...)
}
