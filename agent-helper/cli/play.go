package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/postern-dev/postern/agent-helper/agentkeys"
)

// postern play and postern recordings run the bastion's menu commands of
// the same names over SSH, as `ssh -t BASTION play ID` would: with the
// postern certificate in ssh-agent, and the bastion's host certificate
// checked against the host CA in postern's known_hosts. The bastion
// decides what may be seen and audits it.

const recordingsHelp = `postern recordings lists recent recorded sessions you may view (your own;
everyone's if one of your roles has view_recordings). It runs
"ssh BASTION recordings" with your postern certificate.`

const playHelp = `postern play SESSION_ID replays a recorded session in this terminal with its
original timing. Ctrl-C or q stops it. It runs "ssh -t BASTION play SESSION_ID".`

// sessionIDRe is what the bastion accepts (it checks again).
var sessionIDRe = regexp.MustCompile(`^[0-9A-Fa-f]{8,64}(-[1-9][0-9]{0,5})?$`)

// bastionFlags locate the bastion and what vouches for it.
type bastionFlags struct {
	addr, knownHosts, signerURL, signerCA *string
}

func addBastionFlags(fs *flag.FlagSet) bastionFlags {
	return bastionFlags{
		addr:       fs.String("bastion", "", "bastion `HOST:PORT` (default: the one the signer publishes)"),
		knownHosts: fs.String("known-hosts", "", "known_hosts `FILE` with the host CA (default ~/.postern/known_hosts, written by postern config)"),
		signerURL:  fs.String("signer", "", "signer `URL` (default: the one you logged in with)"),
		signerCA:   fs.String("signer-ca", "", "PEM `FILE` pinning the signer's TLS CA"),
	}
}

func cmdRecordings(ctx context.Context, args []string, env Env) error {
	fs := newFlags("recordings", env, recordingsHelp)
	bf := addBastionFlags(fs)
	days := fs.Int("days", 0, "look back `N` days (bastion default 7, at most 90)")
	limit := fs.Int("limit", 0, "show at most `N` sessions (bastion default 20, at most 200)")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return hinted(fmt.Errorf("unexpected argument %q", rest[0]), "postern recordings [--days N] [--limit N]")
	}
	remote := []string{"recordings"}
	if *days > 0 {
		remote = append(remote, "--days", strconv.Itoa(*days))
	}
	if *limit > 0 {
		remote = append(remote, "--limit", strconv.Itoa(*limit))
	}
	return bastionCommand(ctx, env, bf, strings.Join(remote, " "), false)
}

func cmdPlay(ctx context.Context, args []string, env Env) error {
	fs := newFlags("play", env, playHelp)
	bf := addBastionFlags(fs)
	speed := fs.Float64("speed", 1, "playback speed `factor`, e.g. 2 or 0.5")
	idle := fs.Duration("idle-limit", 0, "shorten pauses longer than `D` (e.g. 2s) to D")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return hinted(errors.New("play wants one session ID"), "postern recordings lists them; then postern play SESSION_ID")
	}
	if !sessionIDRe.MatchString(rest[0]) {
		return hinted(fmt.Errorf("%q is not a session ID", rest[0]), "postern recordings lists them")
	}
	if *speed <= 0 || *idle < 0 {
		return errors.New("--speed must be positive and --idle-limit not negative")
	}
	remote := []string{"play", rest[0]}
	if *speed != 1 {
		remote = append(remote, "--speed", strconv.FormatFloat(*speed, 'g', -1, 64))
	}
	if *idle > 0 {
		remote = append(remote, "--idle-limit", idle.String())
	}
	return bastionCommand(ctx, env, bf, strings.Join(remote, " "), true)
}

// parseInterspersed parses flags before and after positional arguments
// (postern play ID --speed 2) and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

// bastionCommand runs one menu command on the bastion and copies its
// output here. With wantPTY and a terminal on both ends it asks for a
// terminal, puts this one in raw mode and forwards keys (play stops on
// them). A non-zero exit status on the bastion is an error (the bastion
// has already said why).
func bastionCommand(ctx context.Context, env Env, bf bastionFlags, cmd string, wantPTY bool) error {
	addr := *bf.addr
	if addr == "" {
		client, _, err := env.signer(*bf.signerURL, *bf.signerCA)
		if err != nil {
			return err
		}
		info, err := client.CA(ctx)
		if err != nil {
			return err
		}
		if info.Bastion == nil || info.Bastion.Addr == "" {
			return hinted(errors.New("the signer publishes no bastion"), "pass --bastion HOST:PORT")
		}
		addr = info.Bastion.Addr
	}
	kh := *bf.knownHosts
	if kh == "" {
		kh = filepath.Join(env.Home, "known_hosts")
	}
	hostKeys, err := hostCAChecker(kh, env.Now)
	if err != nil {
		return err
	}

	ag, conn, err := agentkeys.Dial()
	if err != nil {
		return hinted(err, "start one with: eval \"$(ssh-agent)\"; then postern login")
	}
	defer conn.Close()
	entries, err := agentkeys.List(ag)
	if err != nil {
		return err
	}
	var certs []*ssh.Certificate
	for _, e := range entries {
		if time.Unix(int64(e.Cert.ValidBefore), 0).After(env.Now()) {
			certs = append(certs, e.Cert)
		}
	}
	if len(certs) == 0 {
		return hinted(errors.New("not logged in: no valid postern certificate in ssh-agent"), "run postern login")
	}
	// Offer only postern's certificates: other keys would only use up
	// the bastion's authentication attempts.
	signers, err := ag.Signers()
	if err != nil {
		return fmt.Errorf("read keys from ssh-agent: %w", err)
	}
	var ours []ssh.Signer
	for _, s := range signers {
		for _, c := range certs {
			if bytes.Equal(s.PublicKey().Marshal(), c.Marshal()) {
				ours = append(ours, s)
			}
		}
	}
	if len(ours) == 0 {
		return hinted(errors.New("ssh-agent lists postern's certificate but offers no key for it"), "run postern login again")
	}
	user := "postern"
	if len(certs[0].ValidPrincipals) > 0 {
		user = certs[0].ValidPrincipals[0]
	}
	cfg := &ssh.ClientConfig{
		User:              user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(ours...)},
		HostKeyCallback:   hostKeys,
		HostKeyAlgorithms: certHostKeyAlgos,
		Timeout:           15 * time.Second,
	}
	d := net.Dialer{Timeout: cfg.Timeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("reach bastion %s: %w", addr, err)
	}
	cc, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if err != nil {
		nc.Close()
		return hinted(fmt.Errorf("log in to bastion %s: %w", addr, err), "postern status shows your certificate; postern config --install ~/.ssh/config refreshes the host CA")
	}
	client := ssh.NewClient(cc, chans, reqs)
	defer client.Close()
	stop := context.AfterFunc(ctx, func() { client.Close() })
	defer stop()

	sess, err := client.NewSession()
	if err != nil {
		return fmt.Errorf("open a session on the bastion: %w", err)
	}
	defer sess.Close()
	sess.Stdout, sess.Stderr = env.Stdout, env.Stderr
	out, outIsFile := env.Stdout.(*os.File)
	if wantPTY && outIsFile && term.IsTerminal(int(out.Fd())) && term.IsTerminal(int(os.Stdin.Fd())) {
		w, h, err := term.GetSize(int(out.Fd()))
		if err != nil {
			w, h = 80, 24
		}
		tt := env.Getenv("TERM")
		if tt == "" {
			tt = "xterm-256color"
		}
		if err := sess.RequestPty(tt, h, w, ssh.TerminalModes{ssh.ECHO: 0}); err != nil {
			return fmt.Errorf("ask the bastion for a terminal: %w", err)
		}
		old, err := term.MakeRaw(int(os.Stdin.Fd()))
		if err != nil {
			return fmt.Errorf("put the terminal in raw mode: %w", err)
		}
		defer term.Restore(int(os.Stdin.Fd()), old)
		in, err := sess.StdinPipe()
		if err != nil {
			return err
		}
		// Not waited for: the read of the terminal ends with the process.
		go func() { _, _ = io.Copy(in, os.Stdin) }()
	}
	err = sess.Run(cmd)
	var ee *ssh.ExitError
	switch {
	case errors.As(err, &ee):
		return fmt.Errorf("the bastion's %s command ended with exit status %d", strings.Fields(cmd)[0], ee.ExitStatus())
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return fmt.Errorf("run %s on the bastion: %w", strings.Fields(cmd)[0], err)
	}
	return nil
}

// certHostKeyAlgos: the bastion is trusted only through its host
// certificate.
var certHostKeyAlgos = []string{
	ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
	ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
}

// hostCAChecker trusts host certificates signed by an @cert-authority key
// of the known_hosts file at path whose host patterns match the address
// (OpenSSH's rules: "host" on port 22, else "[host]:port"; * and ?
// wildcards; a matching !pattern excludes). The certificate must name
// the host dialled, as OpenSSH requires.
func hostCAChecker(path string, now func() time.Time) (ssh.HostKeyCallback, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, hinted(fmt.Errorf("no known_hosts file at %s", path), "run postern config --install ~/.ssh/config (it writes it)")
	}
	if err != nil {
		return nil, fmt.Errorf("read known_hosts: %w", err)
	}
	type ca struct {
		hosts []string
		key   ssh.PublicKey
	}
	var cas []ca
	for rest := data; len(rest) > 0; {
		marker, hosts, key, _, r, err := ssh.ParseKnownHosts(rest)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", path, err)
		}
		rest = r
		if marker == "cert-authority" {
			cas = append(cas, ca{hosts, key})
		}
	}
	if len(cas) == 0 {
		return nil, hinted(fmt.Errorf("%s names no host CA", path), "run postern config --install ~/.ssh/config")
	}
	checker := &ssh.CertChecker{
		Clock: now,
		IsHostAuthority: func(auth ssh.PublicKey, address string) bool {
			for _, c := range cas {
				if bytes.Equal(c.key.Marshal(), auth.Marshal()) && hostsMatch(c.hosts, address) {
					return true
				}
			}
			return false
		},
		HostKeyFallback: func(string, net.Addr, ssh.PublicKey) error {
			return errors.New("the bastion presented a plain host key, not a host certificate")
		},
	}
	return checker.CheckHostKey, nil
}

// hostsMatch applies known_hosts host patterns to host:port.
func hostsMatch(patterns []string, address string) bool {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	name := "[" + host + "]:" + port
	if port == "22" {
		name = host
	}
	matched := false
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		if wildcard(p, name) {
			if neg {
				return false
			}
			matched = true
		}
	}
	return matched
}

// wildcard matches s against an OpenSSH pattern: * is any run of
// characters, ? any one; nothing else is special.
func wildcard(p, s string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for i := len(s); i >= 0; i-- {
				if wildcard(p[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
		default:
			if s == "" || p[0] != s[0] {
				return false
			}
		}
		p, s = p[1:], s[1:]
	}
	return s == ""
}
