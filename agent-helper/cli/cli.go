package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/agent-helper/agentkeys"
	"github.com/postern-dev/postern/agent-helper/signerclient"
	"github.com/postern-dev/postern/agent-helper/sshconfig"
	"github.com/postern-dev/postern/internal/api"
	"github.com/postern-dev/postern/internal/sshcert"
	"github.com/postern-dev/postern/internal/version"
)

// Env is what the CLI takes from its process.
type Env struct {
	Stdout, Stderr io.Writer
	// Home is postern's state directory (default ~/.postern).
	Home string
	// Getenv reads the environment (DISPLAY, SSH_AUTH_SOCK).
	Getenv func(string) string
	Now    func() time.Time
}

// Error carries a hint for the person.
type Error struct {
	Err  error
	Hint string
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func hinted(err error, hint string) error { return &Error{Err: err, Hint: hint} }

const usage = `postern signs you in through your company's SSO and puts a short-lived
SSH certificate into your ssh-agent.

Usage:
  postern login [--signer URL] [--signer-ca FILE] [--device] [--no-browser] [--ttl D] [--write-files]
  postern status                    who you are, your logins and roles, time left
  postern logout                    remove postern's keys from ssh-agent
  postern config [--install FILE]   print (or install) the ssh_config block and known_hosts
  postern recordings                recent recorded sessions you may see
  postern play SESSION_ID [--speed N] replay a recorded session in this terminal
  postern kube config --cluster NAME  add a kubectl context that goes through kube-exec proxy
  postern --version

Run "postern COMMAND --help" for a command's flags.
`

// Run executes the command line and returns the process exit status.
func Run(ctx context.Context, args []string, env Env) int {
	err := dispatch(ctx, args, env)
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(env.Stderr, "postern: error: %v\n", err)
	var he *Error
	if errors.As(err, &he) && he.Hint != "" {
		fmt.Fprintf(env.Stderr, "postern: hint: %s\n", he.Hint)
	}
	var ae *signerclient.APIError
	if errors.As(err, &ae) && ae.Hint != "" {
		fmt.Fprintf(env.Stderr, "postern: hint: %s\n", ae.Hint)
	}
	return 1
}

func dispatch(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return hinted(errors.New("no command given"), "run postern login to sign in")
	}
	switch args[0] {
	case "login":
		return cmdLogin(ctx, args[1:], env)
	case "status":
		return cmdStatus(args[1:], env)
	case "logout":
		return cmdLogout(args[1:], env)
	case "config":
		return cmdConfig(ctx, args[1:], env)
	case "kube":
		return cmdKube(ctx, args[1:], env)
	case "play":
		return cmdPlay(ctx, args[1:], env)
	case "recordings":
		return cmdRecordings(ctx, args[1:], env)
	case "--version", "-version", "version":
		fmt.Fprintln(env.Stdout, "postern", version.Version)
		return nil
	case "--help", "-help", "-h", "help":
		fmt.Fprint(env.Stdout, usage)
		return nil
	default:
		return hinted(fmt.Errorf("unknown command %q", args[0]), "run postern --help")
	}
}

func newFlags(name string, env Env, help string) *flag.FlagSet {
	fs := flag.NewFlagSet("postern "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "%s\n\nFlags:\n", help)
		fs.PrintDefaults()
	}
	return fs
}

func (env Env) statePath() string { return filepath.Join(env.Home, "state.json") }

// signer returns a client for the signer named by flags or remembered.
func (env Env) signer(url, caFile string) (*signerclient.Client, signerclient.State, error) {
	st, err := signerclient.LoadState(env.statePath())
	if err != nil {
		return nil, st, err
	}
	if url != "" && url != st.Signer {
		st = signerclient.State{Signer: url}
	}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, st, fmt.Errorf("read --signer-ca: %w", err)
		}
		st.SignerCA = string(b)
	}
	if st.Signer == "" {
		return nil, st, hinted(errors.New("no signer known"), "pass --signer https://signer.example.com (it is remembered afterwards)")
	}
	c, err := signerclient.New(st.Signer, []byte(st.SignerCA))
	return c, st, err
}

func cmdLogin(ctx context.Context, args []string, env Env) error {
	fs := newFlags("login", env, "postern login signs you in and loads a certificate into ssh-agent.")
	signerURL := fs.String("signer", "", "signer `URL` (remembered after the first login)")
	signerCA := fs.String("signer-ca", "", "PEM `FILE` of the CA that signed the signer's TLS certificate (pinned and remembered)")
	device := fs.Bool("device", false, "sign in on another device with a code (no local browser needed)")
	noBrowser := fs.Bool("no-browser", false, "print the sign-in URL instead of opening a browser")
	ttlFlag := fs.Duration("ttl", 0, "requested certificate lifetime, e.g. 2h (capped by your roles; default: the roles' maximum)")
	writeFiles := fs.Bool("write-files", false, "also write the key and certificate under ~/.postern/keys for tools without an agent")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up if the sign-in is not finished by then")
	if err := fs.Parse(args); err != nil {
		return err
	}
	client, st, err := env.signer(*signerURL, *signerCA)
	if err != nil {
		return err
	}
	var ag interface{ Close() error }
	agentClient, conn, agentErr := agentkeys.Dial()
	if agentErr != nil && !*writeFiles {
		return hinted(agentErr, "start one with: eval \"$(ssh-agent)\"; or use --write-files")
	}
	if conn != nil {
		ag = conn
		defer ag.Close()
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	info, err := client.CA(ctx)
	if err != nil {
		return err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	sshPub, _ := ssh.NewPublicKey(pub)
	req := api.LoginStartRequest{
		PublicKey:  strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))),
		TTLSeconds: int64(ttlFlag.Seconds()),
	}
	var resp api.LoginStartResponse
	if *device {
		if !info.DeviceFlow {
			return hinted(errors.New("this signer does not offer device logins"), "run postern login without --device")
		}
		req.Mode = api.ModeDevice
		if resp, err = client.StartLogin(ctx, req); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "To sign in, open %s and enter the code:\n\n    %s\n\n", resp.VerificationURI, resp.UserCode)
		if resp.VerificationURIComplete != "" {
			fmt.Fprintf(env.Stdout, "Or open this URL, which carries the code:\n%s\n\n", resp.VerificationURIComplete)
		}
		fmt.Fprintln(env.Stdout, "Waiting for you to approve the login...")
	} else {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("open the loopback listener for the browser: %w", err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(loopbackPage), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		req.Mode = api.ModeBrowser
		req.RedirectURL = fmt.Sprintf("http://%s/callback", ln.Addr())
		if resp, err = client.StartLogin(ctx, req); err != nil {
			return err
		}
		opened := false
		if !*noBrowser && hasDisplay(env) {
			opened = openBrowser(resp.AuthURL) == nil
		}
		if opened {
			fmt.Fprintln(env.Stdout, "Your browser was opened to sign in. If it did not open, visit:")
		} else {
			fmt.Fprintln(env.Stdout, "Open this URL in a browser on this machine to sign in:")
		}
		fmt.Fprintln(env.Stdout, resp.AuthURL)
	}
	interval := time.Duration(resp.IntervalSeconds) * time.Second
	result, err := client.WaitLogin(ctx, resp.LoginID, resp.PollToken, interval)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return hinted(errors.New("the sign-in was not finished in time"), "run postern login again")
		}
		return err
	}
	if result.Status == api.StatusFailed {
		hint := result.Hint
		if hint == "" {
			hint = "run postern login again; if it keeps failing, tell your postern administrator"
		}
		return hinted(fmt.Errorf("login refused: %s", result.Error), hint)
	}
	cert, err := checkCert(result.Certificate, sshPub, info.UserCA)
	if err != nil {
		return err
	}
	if agentClient != nil {
		if err := agentkeys.Add(agentClient, priv, cert, env.Now()); err != nil {
			return err
		}
	}
	if *writeFiles {
		if err := writeKeyFiles(filepath.Join(env.Home, "keys"), priv, cert); err != nil {
			return err
		}
	}
	if err := signerclient.SaveState(env.statePath(), st); err != nil {
		return err
	}
	id := sshcert.IdentityOf(cert)
	fmt.Fprintf(env.Stdout, "Logged in as %s\n", id.KeyID)
	fmt.Fprintf(env.Stdout, "  logins:  %s\n  roles:   %s\n  expires: %s (in %s)\n",
		strings.Join(id.Principals, ", "), strings.Join(id.Roles, ", "),
		id.ValidBefore.Local().Format(time.RFC1123), humanDuration(id.ValidBefore.Sub(env.Now())))
	if agentClient != nil {
		fmt.Fprintf(env.Stdout, "  agent:   %s\n", env.Getenv("SSH_AUTH_SOCK"))
	}
	if *writeFiles {
		fmt.Fprintf(env.Stdout, "  files:   %s\n", filepath.Join(env.Home, "keys", "id_ed25519")+"{,-cert.pub}")
	}
	return nil
}

// checkCert parses the signer's answer and refuses anything that is not a
// user certificate for our key signed by a published user CA.
func checkCert(line string, ours ssh.PublicKey, userCAs []string) (*ssh.Certificate, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, fmt.Errorf("parse certificate from signer: %w", err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok || cert.CertType != ssh.UserCert {
		return nil, errors.New("the signer returned something that is not a user certificate")
	}
	if string(cert.Key.Marshal()) != string(ours.Marshal()) {
		return nil, errors.New("the signer certified a different key than ours")
	}
	for _, l := range userCAs {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l))
		if err == nil && string(k.Marshal()) == string(cert.SignatureKey.Marshal()) {
			return cert, nil
		}
	}
	return nil, errors.New("the certificate is not signed by the signer's published user CA")
}

func loopbackPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if r.URL.Query().Get("status") == api.StatusDone {
		fmt.Fprint(w, "<!doctype html><title>postern</title><h1>Signed in</h1><p>You can close this tab and return to the terminal.</p>")
		return
	}
	fmt.Fprint(w, "<!doctype html><title>postern</title><h1>Sign-in failed</h1><p>The terminal shows why.</p>")
}

func hasDisplay(env Env) bool {
	if runtime.GOOS == "darwin" || runtime.GOOS == "windows" {
		return true
	}
	return env.Getenv("DISPLAY") != "" || env.Getenv("WAYLAND_DISPLAY") != ""
}

func openBrowser(u string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", u)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", u)
	default:
		cmd = exec.Command("xdg-open", u)
	}
	return cmd.Start()
}

func writeKeyFiles(dir string, priv ed25519.PrivateKey, cert *ssh.Certificate) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	block, err := ssh.MarshalPrivateKey(priv, sshcert.AgentComment(cert.KeyId))
	if err != nil {
		return err
	}
	keyPath := filepath.Join(dir, "id_ed25519")
	_ = os.Remove(keyPath)
	if err := os.WriteFile(keyPath, pemEncode(block), 0o600); err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	if err := os.WriteFile(keyPath+"-cert.pub", ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
		return fmt.Errorf("write certificate: %w", err)
	}
	return nil
}

func cmdStatus(args []string, env Env) error {
	fs := newFlags("status", env, "postern status shows the certificates postern put into ssh-agent.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	a, conn, err := agentkeys.Dial()
	if err != nil {
		return hinted(err, "start one with: eval \"$(ssh-agent)\"; then postern login")
	}
	defer conn.Close()
	entries, err := agentkeys.List(a)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return hinted(errors.New("not logged in: no postern certificate in ssh-agent"), "run postern login")
	}
	for i, e := range entries {
		if i > 0 {
			fmt.Fprintln(env.Stdout)
		}
		id := sshcert.IdentityOf(e.Cert)
		left := id.ValidBefore.Sub(env.Now())
		state := "valid, " + humanDuration(left) + " left"
		if left <= 0 {
			state = "EXPIRED"
		}
		fmt.Fprintf(env.Stdout, "%s\n  logins:  %s\n  roles:   %s\n  groups:  %s\n  expires: %s (%s)\n  serial:  %d\n  agent:   %s\n",
			id.KeyID, strings.Join(id.Principals, ", "), strings.Join(id.Roles, ", "), strings.Join(id.Groups, ", "),
			id.ValidBefore.Local().Format(time.RFC1123), state, id.Serial, env.Getenv("SSH_AUTH_SOCK"))
	}
	return nil
}

func cmdLogout(args []string, env Env) error {
	fs := newFlags("logout", env, "postern logout removes postern's keys from ssh-agent and deletes files written by --write-files.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	removedFiles := 0
	for _, f := range []string{"id_ed25519", "id_ed25519-cert.pub"} {
		if os.Remove(filepath.Join(env.Home, "keys", f)) == nil {
			removedFiles++
		}
	}
	a, conn, err := agentkeys.Dial()
	if err != nil {
		if removedFiles > 0 {
			fmt.Fprintln(env.Stdout, "Removed the key files; no ssh-agent to clean.")
			return nil
		}
		return hinted(err, "nothing to log out of")
	}
	defer conn.Close()
	n, err := agentkeys.RemoveAll(a)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "Removed %d key(s) from ssh-agent", n)
	if removedFiles > 0 {
		fmt.Fprint(env.Stdout, " and the key files")
	}
	fmt.Fprintln(env.Stdout, ".")
	return nil
}

func cmdConfig(ctx context.Context, args []string, env Env) error {
	fs := newFlags("config", env, "postern config prints the ssh_config block for the bastion and the host CA's known_hosts line;\n--install writes them (idempotently, between marker lines).")
	install := fs.String("install", "", "write the block into this ssh_config `FILE` (e.g. ~/.ssh/config)")
	knownHosts := fs.String("known-hosts", "", "known_hosts `FILE` to write (default ~/.postern/known_hosts)")
	signerURL := fs.String("signer", "", "signer `URL` (default: the one you logged in with)")
	signerCA := fs.String("signer-ca", "", "PEM `FILE` pinning the signer's TLS CA")
	if err := fs.Parse(args); err != nil {
		return err
	}
	client, st, err := env.signer(*signerURL, *signerCA)
	if err != nil {
		return err
	}
	info, err := client.CA(ctx)
	if err != nil {
		return err
	}
	if err := signerclient.SaveState(env.statePath(), st); err != nil {
		return err
	}
	if info.Bastion == nil || info.Bastion.Addr == "" {
		return hinted(errors.New("the signer publishes no bastion"), "set [bastion] public_addr in the deployment's config")
	}
	kh := *knownHosts
	if kh == "" {
		kh = filepath.Join(env.Home, "known_hosts")
	}
	if kh, err = filepath.Abs(kh); err != nil {
		return err
	}
	p := sshconfig.Params{
		BastionName: info.Bastion.Name, BastionAddr: info.Bastion.Addr, JumpHosts: info.Bastion.JumpHosts,
		KnownHosts: kh, HostCAs: info.HostCA, Signer: st.Signer,
	}
	block, err := sshconfig.Block(p)
	if err != nil {
		return err
	}
	if *install == "" {
		fmt.Fprint(env.Stdout, block)
		fmt.Fprintf(env.Stdout, "\n# known_hosts (%s):\n%s", kh, sshconfig.KnownHosts(p))
		return nil
	}
	changed, err := sshconfig.Install(*install, block, kh, sshconfig.KnownHosts(p))
	if err != nil {
		return err
	}
	verb := "updated"
	if !changed {
		verb = "already up to date:"
	}
	fmt.Fprintf(env.Stdout, "%s %s\nwrote %s\nnow: ssh -J %s NODE\n", verb, *install, kh, info.Bastion.Name)
	return nil
}

func humanDuration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	d = d.Round(time.Second)
	h := d / time.Hour
	m := (d % time.Hour) / time.Minute
	s := (d % time.Minute) / time.Second
	switch {
	case h > 0:
		return fmt.Sprintf("%dh%02dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm%02ds", m, s)
	default:
		return fmt.Sprintf("%ds", s)
	}
}
