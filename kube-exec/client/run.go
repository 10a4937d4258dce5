package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/postern-dev/postern/internal/api"
)

// Serve runs the loopback endpoint on ln with TLS certificate cert until
// ctx is done, then lets requests in flight finish for up to grace (0: it
// closes every connection at once).
func Serve(ctx context.Context, ln net.Listener, cert tls.Certificate, h http.Handler, grace time.Duration) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	if grace <= 0 {
		srv.Close()
		return nil
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	return nil
}

// Command describes a child command run against the endpoint.
type Command struct {
	Args   []string
	Env    []string // the child's environment, without KUBECONFIG
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// KillAfter is how long a command told to stop (interrupted) has before
// it is killed.
const KillAfter = 5 * time.Second

// RunCommand writes a kubeconfig for server/token into a private temporary
// directory, runs the command with KUBECONFIG pointing at it, and returns
// its exit status. When ctx is done the command is interrupted (killed
// KillAfter later). The kubeconfig is removed afterwards.
func RunCommand(ctx context.Context, c Command, cluster, server string, caPEM []byte, token, namespace string) (int, error) {
	dir, err := os.MkdirTemp("", "kube-exec-")
	if err != nil {
		return 1, fmt.Errorf("create a temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)
	kc, err := Kubeconfig(cluster, server, caPEM, token, namespace)
	if err != nil {
		return 1, err
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		return 1, fmt.Errorf("write kubeconfig: %w", err)
	}
	bin, err := exec.LookPath(c.Args[0])
	if err != nil {
		return 127, fmt.Errorf("%s: %w", c.Args[0], err)
	}
	cmd := exec.Command(bin, c.Args[1:]...)
	cmd.Env = append(withoutVar(c.Env, "KUBECONFIG"), "KUBECONFIG="+path)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Stdin, c.Stdout, c.Stderr
	if err := cmd.Start(); err != nil {
		return 1, fmt.Errorf("run %s: %w", c.Args[0], err)
	}
	// Signals reach the child from the terminal (same process group);
	// ctx only ends it when kube-exec itself is told to stop otherwise
	// (SIGTERM, a revocation) or cannot reach the cluster: an interrupt,
	// then a kill after KillAfter.
	exited := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(KillAfter):
			_ = cmd.Process.Kill()
		}
	})
	defer stop()
	err = cmd.Wait()
	close(exited)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if code := ee.ExitCode(); code >= 0 {
			return code, nil
		}
		return 128 + 15, nil // killed by a signal
	}
	if err != nil {
		return 1, err
	}
	return 0, nil
}

func withoutVar(env []string, name string) []string {
	out := make([]string, 0, len(env))
	for _, e := range env {
		if !strings.HasPrefix(e, name+"=") {
			out = append(out, e)
		}
	}
	return out
}

// state is the part of the postern CLI's state file (state.json) needed
// to find the bastion.
type state struct {
	Signer   string `json:"signer"`
	SignerCA string `json:"signer_ca,omitempty"`
}

// BastionFromSigner asks the signer the postern CLI logged in with (its
// state file statePath) for the bastion's address.
func BastionFromSigner(ctx context.Context, statePath string) (string, error) {
	b, err := os.ReadFile(statePath)
	if err != nil {
		return "", fmt.Errorf("no bastion known (read %s: %w)", statePath, err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil || st.Signer == "" {
		return "", fmt.Errorf("no signer in %s", statePath)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if st.SignerCA != "" {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(st.SignerCA))
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	hc := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(st.Signer, "/")+"/v1/ca", nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("ask the signer for the bastion: %w", err)
	}
	defer resp.Body.Close()
	var info api.CAInfo
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("ask the signer for the bastion: %s", resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&info); err != nil {
		return "", fmt.Errorf("decode the signer's answer: %w", err)
	}
	if info.Bastion == nil || info.Bastion.Addr == "" {
		return "", errors.New("the signer publishes no bastion")
	}
	return info.Bastion.Addr, nil
}
