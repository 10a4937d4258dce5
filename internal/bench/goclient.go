package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// Jump hosts the Go client measures.
const (
	JumpBastion = "bastion"
	JumpSSHD    = "sshd-jump"
)

// dialJump connects and authenticates to a jump host with the person's
// certificate. kex may be empty (x/crypto's default order).
func (s *Stack) dialJump(ctx context.Context, jump, kex string) (*ssh.Client, error) {
	addr := s.BastionAddr
	if jump == JumpSSHD {
		addr = s.JumpAddr
	}
	checker := &ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool {
		return bytes.Equal(k.Marshal(), s.HostCA.Marshal())
	}}
	cc := &ssh.ClientConfig{
		User:              LoginUser,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(s.UserSigner)},
		HostKeyCallback:   checker.CheckHostKey,
		HostKeyAlgorithms: []string{ssh.CertAlgoED25519v01},
		Timeout:           60 * time.Second,
	}
	if kex != "" {
		cc.KeyExchanges = []string{kex}
	}
	d := net.Dialer{Timeout: 60 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// Bound the handshake: a dropped connection may also just hang.
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	_ = nc.SetDeadline(time.Now().Add(60 * time.Second))
	c, chans, reqs, err := ssh.NewClientConn(nc, addr, cc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// holdTarget is the sink in the node's namespace, as each jump host is
// asked for it.
func holdTarget(jump string) string {
	if jump == JumpBastion {
		return net.JoinHostPort(NodeFwd, strconv.Itoa(HoldPort))
	}
	return net.JoinHostPort(NodeIP, strconv.Itoa(HoldPort))
}

// session is one idle hop: an SSH connection to the jump host with one
// forwarded channel to the sink.
type session struct {
	c  *ssh.Client
	ch net.Conn
}

func (x *session) Close() {
	if x.ch != nil {
		x.ch.Close()
	}
	x.c.Close()
}

func (s *Stack) openSession(ctx context.Context, jump, kex string) (*session, error) {
	c, err := s.dialJump(ctx, jump, kex)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	ch, err := c.DialContext(ctx, "tcp", holdTarget(jump))
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("open channel: %w", err)
	}
	return &session{c: c, ch: ch}, nil
}

// HandshakeResult is connection setup measured with the Go client: TCP,
// key exchange, authentication and one forwarded channel.
type HandshakeResult struct {
	Jump string
	Kex  string
	Ms   Sample
}

// runHandshake times Go-client connections with each KEX the jump host
// supports (OpenSSH 9.2 has no mlkem768x25519-sha256; x/crypto has).
func (s *Stack) runHandshake(ctx context.Context, cfg Config) ([]HandshakeResult, error) {
	type cell struct{ jump, kex string }
	cells := []cell{
		{JumpSSHD, ssh.KeyExchangeCurve25519},
		{JumpBastion, ssh.KeyExchangeCurve25519},
		{JumpBastion, ssh.KeyExchangeMLKEM768X25519},
	}
	ms := map[cell][]float64{}
	errs := failures[cell]{}
	for i := range cfg.ConnectRuns*2 + 2 {
		for j := range cells {
			c := cells[j]
			if i%2 == 1 {
				c = cells[len(cells)-1-j]
			}
			start := time.Now()
			x, err := s.openSession(ctx, c.jump, c.kex)
			d := time.Since(start)
			if err != nil {
				errs.add(c, err)
				continue
			}
			x.Close()
			if i >= 2 {
				ms[c] = append(ms[c], float64(d.Microseconds())/1000)
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	var out []HandshakeResult
	for _, c := range cells {
		r := HandshakeResult{Jump: c.jump, Kex: c.kex, Ms: Summarise(ms[c])}
		errs.into(c, &r.Ms)
		cfg.Logf("handshake (Go client) %-9s %-22s median %.2f ms p99 %.2f ms", c.jump, c.kex, r.Ms.Median, r.Ms.P99)
		out = append(out, r)
	}
	return out, nil
}

// IdleResult is N idle sessions held through one jump host.
type IdleResult struct {
	Jump     string
	N        int
	Opened   int
	Errors   int
	First    string `json:",omitempty"`
	OpenSecs float64
	// Memory of the jump host's process tree before and with the
	// sessions held, KiB.
	RSSBefore, RSSHeld float64
	PSSBefore, PSSHeld float64
	Procs              int
	// CPUIdle is the jump host's CPU use while the sessions sit idle, in
	// percent of one core.
	CPUIdle float64
	// SettleSecs is how long after opening the memory was read (settledMem).
	SettleSecs float64 `json:",omitempty"`
	// NoFile is the jump host's soft open-file limit.
	NoFile  uint64 `json:",omitempty"`
	Skipped string `json:",omitempty"`
}

// RSSPerSession and PSSPerSession are the growth per open session, KiB.
func (r IdleResult) RSSPerSession() float64 {
	return (r.RSSHeld - r.RSSBefore) / float64(max(1, r.Opened))
}
func (r IdleResult) PSSPerSession() float64 {
	return (r.PSSHeld - r.PSSBefore) / float64(max(1, r.Opened))
}

// runIdle holds N idle sessions open through each jump host, opening
// them 8 at a time (under sshd's MaxStartups start of 10).
func (s *Stack) runIdle(ctx context.Context, cfg Config) ([]IdleResult, error) {
	var out []IdleResult
	for _, n := range cfg.IdleN {
		for _, jump := range []string{JumpSSHD, JumpBastion} {
			if jump == JumpSSHD && n > cfg.SSHDIdleMax {
				out = append(out, IdleResult{Jump: jump, N: n, Skipped: fmt.Sprintf("not tried: %d sessions are %d sshd processes (limit -sshd-idle-max %d)", n, 2*n, cfg.SSHDIdleMax)})
				continue
			}
			r, err := s.idle(ctx, jump, n)
			if err != nil {
				return out, err
			}
			cfg.Logf("idle %-9s N=%-5d opened %d errors %d  RSS/session %.1f KiB  PSS/session %.1f KiB  idle CPU %.2f%%  (%.1fs to open)",
				jump, n, r.Opened, r.Errors, r.RSSPerSession(), r.PSSPerSession(), r.CPUIdle, r.OpenSecs)
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *Stack) jumpPid(jump string) int {
	if jump == JumpSSHD {
		return s.Jump.Pid()
	}
	return s.Bastion.Pid()
}

func (s *Stack) idle(ctx context.Context, jump string, n int) (IdleResult, error) {
	r := IdleResult{Jump: jump, N: n}
	if jump == JumpBastion {
		// A Go heap grown by earlier phases is not given back at once.
		if err := s.RestartBastion(ctx, ""); err != nil {
			return r, err
		}
		x, err := s.openSession(ctx, jump, "") // first-use work (revocation list, pools)
		if err != nil {
			return r, err
		}
		x.Close()
	}
	pid := s.jumpPid(jump)
	if jump == JumpSSHD {
		waitNoChildren(pid, 30*time.Second)
	}
	time.Sleep(500 * time.Millisecond)
	r.RSSBefore, r.PSSBefore, _ = treeMem(pid)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var (
		mu       sync.Mutex
		sessions []*session
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				x, err := s.openSession(ctx, jump, "")
				mu.Lock()
				if err != nil {
					r.Errors++
					if r.First == "" {
						r.First = err.Error()
					}
				} else {
					sessions = append(sessions, x)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r.OpenSecs = time.Since(start).Seconds()
	r.Opened = len(sessions)
	defer func() {
		for _, x := range sessions {
			x.Close()
		}
		if jump == JumpSSHD {
			waitNoChildren(pid, 60*time.Second)
		}
	}()
	var settle time.Duration
	r.RSSHeld, r.PSSHeld, r.Procs, settle = settledMem(pid)
	r.SettleSecs = settle.Seconds()
	r.NoFile = noFileOf(pid)
	c0 := treeCPU(pid)
	time.Sleep(5 * time.Second)
	r.CPUIdle = (treeCPU(pid) - c0) / 5 * 100
	return r, nil
}

// BurstResult is N simultaneous connections to one jump host.
type BurstResult struct {
	Jump    string
	N       int
	OK      int
	Dropped int
	First   string `json:",omitempty"`
	Secs    float64
}

// runBurst starts N connections at once against each jump host (each
// authenticates and opens a channel to the sink, and holds it until the
// whole burst is done) and counts those that fail.
func (s *Stack) runBurst(ctx context.Context, cfg Config) ([]BurstResult, error) {
	var out []BurstResult
	for _, n := range cfg.BurstN {
		for _, jump := range []string{JumpSSHD, JumpBastion} {
			if jump == JumpSSHD {
				waitNoChildren(s.Jump.Pid(), 60*time.Second)
			}
			r := s.burst(ctx, jump, n)
			cfg.Logf("burst %-9s N=%-5d ok %d dropped %d in %.1fs  %s", jump, n, r.OK, r.Dropped, r.Secs, r.First)
			out = append(out, r)
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			time.Sleep(time.Second)
		}
	}
	return out, nil
}

func (s *Stack) burst(ctx context.Context, jump string, n int) BurstResult {
	r := BurstResult{Jump: jump, N: n}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	gate := make(chan struct{})
	var (
		wg, done sync.WaitGroup
		mu       sync.Mutex
		held     []*session
	)
	release := make(chan struct{})
	for range n {
		wg.Add(1)
		done.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			x, err := s.openSession(ctx, jump, "")
			mu.Lock()
			if err != nil {
				r.Dropped++
				if r.First == "" {
					r.First = err.Error()
				}
			} else {
				r.OK++
				held = append(held, x)
			}
			mu.Unlock()
			done.Done()
			<-release
		}()
	}
	start := time.Now()
	close(gate)
	done.Wait()
	r.Secs = time.Since(start).Seconds()
	close(release)
	wg.Wait()
	for _, x := range held {
		x.Close()
	}
	return r
}
