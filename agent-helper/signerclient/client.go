package signerclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/postern-dev/postern/internal/api"
)

// Client talks to one signer.
type Client struct {
	base string
	http *http.Client
}

// APIError is a refusal from the signer.
type APIError struct {
	Status  int
	Message string
	Hint    string
}

func (e *APIError) Error() string { return e.Message }

// New returns a client for the signer at base. caPEM, when not empty, is
// the only certificate authority trusted for its TLS certificate.
func New(base string, caPEM []byte) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("signer URL must look like https://signer.example.com, got %q", base)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if len(caPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, errors.New("the pinned signer CA file holds no PEM certificate")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &Client{base: strings.TrimRight(base, "/"), http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// CA fetches the CA keys and client parameters.
func (c *Client) CA(ctx context.Context) (api.CAInfo, error) {
	var out api.CAInfo
	err := c.do(ctx, http.MethodGet, api.PathCA, nil, &out)
	return out, err
}

// StartLogin begins a login.
func (c *Client) StartLogin(ctx context.Context, req api.LoginStartRequest) (api.LoginStartResponse, error) {
	var out api.LoginStartResponse
	err := c.do(ctx, http.MethodPost, api.PathLoginStart, req, &out)
	return out, err
}

// Poll asks once for a login's result.
func (c *Client) Poll(ctx context.Context, id, token string) (api.LoginPollResponse, error) {
	var out api.LoginPollResponse
	err := c.do(ctx, http.MethodPost, api.PathLoginPoll, api.LoginPollRequest{LoginID: id, PollToken: token}, &out)
	return out, err
}

// WaitLogin polls until the login is done or failed, or ctx ends.
func (c *Client) WaitLogin(ctx context.Context, id, token string, interval time.Duration) (api.LoginPollResponse, error) {
	if interval <= 0 {
		interval = time.Second
	}
	for {
		r, err := c.Poll(ctx, id, token)
		if err != nil {
			return r, err
		}
		if r.Status != api.StatusPending {
			return r, nil
		}
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("wait for login: %w", ctx.Err())
		case <-time.After(interval):
		}
	}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var uerr x509.UnknownAuthorityError
		if errors.As(err, &uerr) {
			return fmt.Errorf("the signer's TLS certificate is not trusted (pass --signer-ca FILE to pin it): %w", err)
		}
		return fmt.Errorf("reach signer %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read signer response: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var body api.Error
		if json.Unmarshal(data, &body) != nil || body.Error == "" {
			body.Error = fmt.Sprintf("signer answered %s", resp.Status)
		}
		return &APIError{Status: resp.StatusCode, Message: body.Error, Hint: body.Hint}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode signer response: %w", err)
	}
	return nil
}

// State is what the CLI remembers between runs (~/.postern/state.json).
type State struct {
	Signer string `json:"signer"`
	// SignerCA is the pinned TLS CA certificate (PEM), if any.
	SignerCA string `json:"signer_ca,omitempty"`
}

// LoadState reads the state file; a missing file gives a zero State.
func LoadState(path string) (State, error) {
	var s State
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("parse %s: %w", path, err)
	}
	return s, nil
}

// SaveState writes the state file (0600), creating its directory.
func SaveState(path string, s State) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	b, _ := json.MarshalIndent(s, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}
