// Package proxyproto reads the PROXY protocol header (versions 1 and 2)
// that a TCP load balancer such as HAProxy or an AWS NLB puts in front of
// a connection, so that a server behind it learns the client's address.
//
// # Security invariants
//
//   - A header is only read from connections whose peer is in the
//     listener's allow list. A connection from a peer in the direct list
//     (and not in the allow list) is passed on untouched, with its own
//     address: its bytes are SSH, a header there would fail the SSH
//     handshake. A connection from anywhere else is closed at accept,
//     before any byte is read. A header from an unlisted peer is never
//     trusted.
//   - A connection from an allowed peer MUST start with a valid header;
//     without one it is refused (no fallback to the peer's address), since
//     a load balancer that stopped sending headers would otherwise make
//     every client look like the load balancer.
//   - Reading the header is bounded in bytes (107 for v1, 16+MaxV2Payload
//     for v2) and in time (a read deadline); nothing past the header is
//     consumed, and the bytes after it reach the reader unchanged.
//   - Only TCP over IPv4 and IPv6 is accepted as a source; v2 LOCAL, v2
//     UNSPEC and v1 UNKNOWN (health checks from the balancer itself) keep
//     the connection's own addresses. UNIX and datagram families are
//     refused.
//
// The protocol: https://www.haproxy.org/download/3.0/doc/proxy-protocol.txt
package proxyproto
