package sshrelay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"

	"golang.org/x/crypto/ssh"
)

// Policy decides what a person may do beyond sessions.
type Policy struct {
	// LocalForward allows a direct-tcpip channel (ssh -L, -W) to host:port
	// as seen from the node.
	LocalForward func(host string, port uint32) bool
	// RemoteForward allows a tcpip-forward request (ssh -R).
	RemoteForward func(host string, port uint32) bool
}

// Observer receives what happens on the relayed connection. Any method may
// be left nil.
type Observer struct {
	// Session is called when a session channel opens; the returned
	// SessionObserver (may be nil) sees that session.
	Session func(id int) SessionObserver
	// Forward is called when a forwarded connection opens (local or
	// remote); the returned func is called once with the byte counts when
	// it ends. Refused is true when the policy or the node refused it.
	Forward func(f Forward) func(toNode, toClient int64, err error)
}

// Forward describes one forwarded connection.
type Forward struct {
	Kind       string // "direct-tcpip" or "forwarded-tcpip"
	Host       string
	Port       uint32
	OriginHost string
	OriginPort uint32
	Refused    string // why it was refused, if it was
}

// SessionObserver sees one session channel.
type SessionObserver interface {
	// Request is called for each request the client makes on the session
	// (pty-req, env, shell, exec, subsystem, window-change, signal, break)
	// with the node's answer.
	Request(name string, payload []byte, ok bool)
	// ClientData is what the person typed or sent (stdin).
	ClientData(p []byte)
	// NodeData is output from the node; stderr says which stream.
	NodeData(p []byte, stderr bool)
	// Exit reports the exit status (or the signal) the node sent.
	Exit(status int, signal string)
	// Closed is called once when the session channel is gone.
	Closed()
}

// Relay connects a client connection to a node connection.
type Relay struct {
	Client      ssh.Conn
	ClientChans <-chan ssh.NewChannel
	ClientReqs  <-chan *ssh.Request
	Node        ssh.Conn
	NodeChans   <-chan ssh.NewChannel
	NodeReqs    <-chan *ssh.Request
	Policy      Policy
	Observer    Observer
	Logger      *slog.Logger
	// OnClientSession, if set, is called with each session channel the
	// client opened, once accepted; the function it returns is called when
	// the session ends. The bastion uses it to tell the person why a
	// revoked connection is about to close.
	OnClientSession func(ch ssh.Channel) (done func())

	// EndedBy says, after Run, which side ended the relay first:
	// "client", "node" or "context".
	EndedBy string

	mu       sync.Mutex
	sessions int
	remote   map[string]bool // "host:port" of granted remote forwards
	wg       sync.WaitGroup
}

// Run relays until one side closes, then closes the other and waits for
// every channel to finish.
func (r *Relay) Run(ctx context.Context) error {
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	r.remote = map[string]bool{}
	done := make(chan struct{})
	var once sync.Once
	stop := func(by string) {
		once.Do(func() {
			r.EndedBy = by
			close(done)
			r.Client.Close()
			r.Node.Close()
		})
	}
	go func() {
		select {
		case <-ctx.Done():
			stop("context")
		case <-done:
		}
	}()
	go func() { _ = r.Client.Wait(); stop("client") }()
	go func() { _ = r.Node.Wait(); stop("node") }()

	r.wg.Add(4)
	go func() { defer r.wg.Done(); r.clientRequests() }()
	go func() { defer r.wg.Done(); r.nodeRequests() }()
	go func() { defer r.wg.Done(); r.clientChannels() }()
	go func() { defer r.wg.Done(); r.nodeChannels() }()
	<-done
	r.wg.Wait()
	return nil
}

func (r *Relay) clientRequests() {
	for req := range r.ClientReqs {
		switch req.Type {
		case "tcpip-forward", "cancel-tcpip-forward":
			host, port, ok := parseHostPort(req.Payload)
			if !ok {
				reply(req, false, nil)
				continue
			}
			if req.Type == "tcpip-forward" && (r.Policy.RemoteForward == nil || !r.Policy.RemoteForward(host, port)) {
				r.Logger.Info("remote forward refused", "addr", net.JoinHostPort(host, strconv.Itoa(int(port))))
				if r.Observer.Forward != nil {
					r.Observer.Forward(Forward{Kind: "tcpip-forward", Host: host, Port: port, Refused: "not allowed by policy"})
				}
				reply(req, false, nil)
				continue
			}
			key := net.JoinHostPort(host, strconv.Itoa(int(port)))
			if req.Type == "tcpip-forward" && port != 0 {
				// Granted before the node is asked: the node may hand us a
				// connection before its reply arrives.
				r.grant(key, true)
			}
			ok, payload, err := r.Node.SendRequest(req.Type, true, req.Payload)
			ok = ok && err == nil
			switch {
			case req.Type == "tcpip-forward" && !ok:
				r.grant(key, false)
			case req.Type == "tcpip-forward" && port == 0 && len(payload) >= 4:
				// A port the node chose; connections to it may race this.
				r.grant(net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint32(payload)))), true)
			case req.Type == "cancel-tcpip-forward" && ok:
				r.grant(key, false)
			}
			reply(req, ok, payload)
		case "keepalive@openssh.com":
			// Ask the node too, so a dead node is noticed by the client.
			ok, _, err := r.Node.SendRequest(req.Type, true, nil)
			reply(req, ok && err == nil, nil)
		case "no-more-sessions@openssh.com":
			reply(req, true, nil)
		default:
			reply(req, false, nil)
		}
	}
}

func (r *Relay) grant(key string, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if on {
		r.remote[key] = true
	} else {
		delete(r.remote, key)
	}
}

func (r *Relay) nodeRequests() {
	for req := range r.NodeReqs {
		switch req.Type {
		case "keepalive@openssh.com":
			ok, _, err := r.Client.SendRequest(req.Type, true, nil)
			reply(req, ok && err == nil, nil)
		default:
			// hostkeys-00@openssh.com and the like are about the node's
			// keys, which the client never sees: the bastion is its host.
			reply(req, false, nil)
		}
	}
}

func (r *Relay) clientChannels() {
	for nc := range r.ClientChans {
		switch nc.ChannelType() {
		case "session":
			r.wg.Add(1)
			go func() { defer r.wg.Done(); r.session(nc) }()
		case "direct-tcpip":
			r.wg.Add(1)
			go func() { defer r.wg.Done(); r.directTCPIP(nc) }()
		default:
			_ = nc.Reject(ssh.UnknownChannelType, "channel type not allowed through the bastion")
		}
	}
}

func (r *Relay) nodeChannels() {
	for nc := range r.NodeChans {
		switch nc.ChannelType() {
		case "forwarded-tcpip":
			r.wg.Add(1)
			go func() { defer r.wg.Done(); r.forwardedTCPIP(nc) }()
		default:
			// auth-agent@openssh.com, x11: never opened towards the client.
			_ = nc.Reject(ssh.Prohibited, "not allowed through the bastion")
		}
	}
}

// session relays one session channel.
func (r *Relay) session(nc ssh.NewChannel) {
	nodeCh, nodeReqs, err := r.Node.OpenChannel("session", nc.ExtraData())
	if err != nil {
		rejectLike(nc, err)
		return
	}
	clientCh, clientReqs, err := nc.Accept()
	if err != nil {
		nodeCh.Close()
		return
	}
	if r.OnClientSession != nil {
		defer r.OnClientSession(clientCh)()
	}
	r.mu.Lock()
	r.sessions++
	id := r.sessions
	r.mu.Unlock()
	var obs SessionObserver
	if r.Observer.Session != nil {
		obs = r.Observer.Session(id)
	}
	if obs == nil {
		obs = nopSession{}
	}
	defer obs.Closed()

	outputDone := make(chan struct{})
	var wg sync.WaitGroup
	// node stdout and stderr to the client
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(clientCh, tap(nodeCh, func(p []byte) { obs.NodeData(p, false) }))
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(clientCh.Stderr(), tap(nodeCh.Stderr(), func(p []byte) { obs.NodeData(p, true) }))
	}()
	go func() {
		wg.Wait()
		_ = clientCh.CloseWrite()
		close(outputDone)
	}()
	// client stdin to the node
	go func() {
		_, _ = io.Copy(nodeCh, tap(clientCh, obs.ClientData))
		_ = nodeCh.CloseWrite()
	}()
	// requests from the client, in order
	go func() {
		for req := range clientReqs {
			switch req.Type {
			case "auth-agent-req@openssh.com", "x11-req":
				obs.Request(req.Type, req.Payload, false)
				reply(req, false, nil)
				continue
			}
			ok, err := nodeCh.SendRequest(req.Type, req.WantReply, req.Payload)
			if err != nil {
				ok = false
			}
			obs.Request(req.Type, req.Payload, ok)
			reply(req, ok, nil)
		}
		// The client closed its side of the channel.
		nodeCh.Close()
	}()
	// requests from the node: exit-status after all output
	for req := range nodeReqs {
		switch req.Type {
		case "exit-status", "exit-signal":
			<-outputDone
			if st, sig, ok := parseExit(req.Type, req.Payload); ok {
				obs.Exit(st, sig)
			}
			_, _ = clientCh.SendRequest(req.Type, false, req.Payload)
		case "eow@openssh.com":
			_, _ = clientCh.SendRequest(req.Type, false, req.Payload)
		default:
			ok, _ := clientCh.SendRequest(req.Type, req.WantReply, req.Payload)
			reply(req, ok, nil)
		}
	}
	<-outputDone
	clientCh.Close()
}

func (r *Relay) directTCPIP(nc ssh.NewChannel) {
	var p struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}
	f := Forward{Kind: "direct-tcpip"}
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	f.Host, f.Port, f.OriginHost, f.OriginPort = p.Host, p.Port, p.OriginHost, p.OriginPort
	if r.Policy.LocalForward == nil || !r.Policy.LocalForward(p.Host, p.Port) {
		f.Refused = "not allowed by policy"
		r.observeForward(f)
		_ = nc.Reject(ssh.Prohibited, "port forwarding is not allowed for your role")
		return
	}
	r.splice(nc, f, func() (ssh.Channel, <-chan *ssh.Request, error) {
		return r.Node.OpenChannel("direct-tcpip", nc.ExtraData())
	})
}

func (r *Relay) forwardedTCPIP(nc ssh.NewChannel) {
	var p struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "malformed forwarded-tcpip")
		return
	}
	f := Forward{Kind: "forwarded-tcpip", Host: p.Host, Port: p.Port, OriginHost: p.OriginHost, OriginPort: p.OriginPort}
	r.mu.Lock()
	granted := r.remote[net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port)))]
	r.mu.Unlock()
	if !granted {
		r.Logger.Warn("unexpected forwarded-tcpip", "host", p.Host, "port", p.Port)
		f.Refused = "no remote forward was granted for this address"
		r.observeForward(f)
		_ = nc.Reject(ssh.Prohibited, "unexpected forwarded connection")
		return
	}
	r.splice(nc, f, func() (ssh.Channel, <-chan *ssh.Request, error) {
		return r.Client.OpenChannel("forwarded-tcpip", nc.ExtraData())
	})
}

func (r *Relay) observeForward(f Forward) func(int64, int64, error) {
	if r.Observer.Forward == nil {
		return func(int64, int64, error) {}
	}
	if done := r.Observer.Forward(f); done != nil {
		return done
	}
	return func(int64, int64, error) {}
}

// splice opens the other end with open, accepts nc and copies both ways.
func (r *Relay) splice(nc ssh.NewChannel, f Forward, open func() (ssh.Channel, <-chan *ssh.Request, error)) {
	other, otherReqs, err := open()
	if err != nil {
		f.Refused = err.Error()
		r.observeForward(f)
		rejectLike(nc, err)
		return
	}
	go ssh.DiscardRequests(otherReqs)
	ch, reqs, err := nc.Accept()
	if err != nil {
		other.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	done := r.observeForward(f)
	in, out := pipe(ch, other)
	done(in, out, nil)
}

// pipe copies a->b and b->a with half-close, returning the byte counts.
func pipe(a, b ssh.Channel) (aToB, bToA int64) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		aToB, _ = io.Copy(b, a)
		_ = b.CloseWrite()
	}()
	bToA, _ = io.Copy(a, b)
	_ = a.CloseWrite()
	wg.Wait()
	a.Close()
	b.Close()
	return aToB, bToA
}

func rejectLike(nc ssh.NewChannel, err error) {
	var oce *ssh.OpenChannelError
	if errors.As(err, &oce) {
		_ = nc.Reject(oce.Reason, oce.Message)
		return
	}
	_ = nc.Reject(ssh.ConnectionFailed, "the node is unreachable")
}

func reply(req *ssh.Request, ok bool, payload []byte) {
	if req.WantReply {
		_ = req.Reply(ok, payload)
	}
}

func parseHostPort(payload []byte) (string, uint32, bool) {
	var p struct {
		Host string
		Port uint32
	}
	if err := ssh.Unmarshal(payload, &p); err != nil {
		return "", 0, false
	}
	return p.Host, p.Port, true
}

func parseExit(typ string, payload []byte) (int, string, bool) {
	if typ == "exit-status" {
		var p struct{ Status uint32 }
		if ssh.Unmarshal(payload, &p) != nil {
			return 0, "", false
		}
		return int(p.Status), "", true
	}
	var p struct {
		Signal     string
		CoreDumped bool
		Error      string
		Lang       string
	}
	if ssh.Unmarshal(payload, &p) != nil {
		return 0, "", false
	}
	return -1, p.Signal, true
}

// tap calls f with every chunk read from r.
func tap(r io.Reader, f func([]byte)) io.Reader { return &tapReader{r: r, f: f} }

type tapReader struct {
	r io.Reader
	f func([]byte)
}

func (t *tapReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.f(p[:n])
	}
	return n, err
}

type nopSession struct{}

func (nopSession) Request(string, []byte, bool) {}
func (nopSession) ClientData([]byte)            {}
func (nopSession) NodeData([]byte, bool)        {}
func (nopSession) Exit(int, string)             {}
func (nopSession) Closed()                      {}

// String names a forward for logs.
func (f Forward) String() string {
	return fmt.Sprintf("%s %s", f.Kind, net.JoinHostPort(f.Host, strconv.Itoa(int(f.Port))))
}
