package server

import (
	"errors"
	"net"

	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/proxyproto"
)

// proxyListener wraps ln to read PROXY protocol headers when [bastion]
// proxy_protocol is on: connections from proxy_from must start with a
// header, whose source becomes the connection's RemoteAddr (so every log
// line and audit event carries the client's address, not the load
// balancer's); connections from direct_from come without one; every other
// connection is refused.
func (s *Server) proxyListener(ln net.Listener) (net.Listener, error) {
	if !s.cfg.ProxyProtocol {
		return ln, nil
	}
	allow, err := config.ParsePrefixes(s.cfg.ProxyFrom)
	if err != nil {
		return nil, err
	}
	direct, err := config.ParsePrefixes(s.cfg.DirectFrom)
	if err != nil {
		return nil, err
	}
	return &proxyproto.Listener{
		Listener: ln,
		Allow:    allow,
		Direct:   direct,
		Timeout:  s.cfg.HandshakeTimeout.Duration,
		Refused: func(peer net.Addr, err error) {
			reason := refusedProxyHeader
			if errors.Is(err, proxyproto.ErrUntrustedSource) {
				reason = refusedProxySource
			}
			s.metrics.refused.Inc(reason)
			s.log.Warn("connection refused", "peer", peer.String(), "reason", reason, "err", err)
		},
	}, nil
}

// proxyHandshake reads the PROXY header of a connection from a proxy
// listener (a no-op for others); false means it was refused and closed.
func proxyHandshake(c net.Conn) bool {
	pc, ok := c.(*proxyproto.Conn)
	return !ok || pc.Handshake() == nil
}
