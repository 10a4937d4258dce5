package signerapi

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
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/api"
	"github.com/postern-dev/postern/internal/bastionauth"
)

// Client talks to the signer on behalf of a bastion.
type Client struct {
	base     string
	http     *http.Client
	hostKey  ssh.Signer
	hostCert *ssh.Certificate
	now      func() time.Time

	mu     sync.Mutex
	info   *api.CAInfo
	infoAt time.Time
}

// New returns a client. caFile may be empty (system roots).
func New(base, caFile string, hostKey ssh.Signer, hostCert *ssh.Certificate, now func() time.Time) (*Client, error) {
	if hostCert == nil {
		return nil, errors.New("the bastion has no host certificate: recording mode needs one to prove itself to the signer")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read signer CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("signer CA %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if now == nil {
		now = time.Now
	}
	return &Client{base: strings.TrimRight(base, "/"), http: &http.Client{Transport: tr, Timeout: 15 * time.Second},
		hostKey: hostKey, hostCert: hostCert, now: now}, nil
}

// CA returns the signer's CA keys, cached for a minute.
func (c *Client) CA(ctx context.Context) (api.CAInfo, error) {
	c.mu.Lock()
	if c.info != nil && c.now().Sub(c.infoAt) < time.Minute {
		defer c.mu.Unlock()
		return *c.info, nil
	}
	c.mu.Unlock()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+api.PathCA, nil)
	var info api.CAInfo
	if err := c.do(req, &info); err != nil {
		return info, err
	}
	c.mu.Lock()
	c.info, c.infoAt = &info, c.now()
	c.mu.Unlock()
	return info, nil
}

// HostCAs returns the host CA keys.
func (c *Client) HostCAs(ctx context.Context) ([]ssh.PublicKey, error) {
	info, err := c.CA(ctx)
	if err != nil {
		return nil, err
	}
	return parseKeys(info.HostCA)
}

// UserCAs returns the user CA keys.
func (c *Client) UserCAs(ctx context.Context) ([]ssh.PublicKey, error) {
	info, err := c.CA(ctx)
	if err != nil {
		return nil, err
	}
	return parseKeys(info.UserCA)
}

// Delegate asks for a certificate for key to log in to node as login, on
// the strength of the person's certificate.
func (c *Client) Delegate(ctx context.Context, person *ssh.Certificate, login, node, sessionID string, key ssh.PublicKey) (*ssh.Certificate, error) {
	env := bastionauth.NewEnvelope(c.hostCert, c.now())
	body, _ := json.Marshal(api.DelegateRequest{
		BastionCert: env.BastionCert, Timestamp: env.Timestamp, Nonce: env.Nonce,
		PersonCert: line(person), Login: login, Node: node, PublicKey: line(key), SessionID: sessionID,
	})
	cert, err := c.signedCert(ctx, api.PathDelegate, body, key, ssh.UserCert)
	if err != nil {
		return nil, fmt.Errorf("get delegated certificate: %w", err)
	}
	cas, err := c.UserCAs(ctx)
	if err != nil {
		return nil, err
	}
	if !signedBy(cert, cas) {
		return nil, errors.New("get delegated certificate: not signed by the user CA")
	}
	return cert, nil
}

// NodeHostCert asks for a host certificate for key naming hosts.
func (c *Client) NodeHostCert(ctx context.Context, key ssh.PublicKey, hosts []string) (*ssh.Certificate, error) {
	env := bastionauth.NewEnvelope(c.hostCert, c.now())
	body, _ := json.Marshal(api.NodeHostCertRequest{
		BastionCert: env.BastionCert, Timestamp: env.Timestamp, Nonce: env.Nonce, PublicKey: line(key), Hosts: hosts,
	})
	cert, err := c.signedCert(ctx, api.PathNodeHostCert, body, key, ssh.HostCert)
	if err != nil {
		return nil, fmt.Errorf("get host certificate for %s: %w", strings.Join(hosts, ","), err)
	}
	cas, err := c.HostCAs(ctx)
	if err != nil {
		return nil, err
	}
	if !signedBy(cert, cas) {
		return nil, errors.New("host certificate not signed by the host CA")
	}
	return cert, nil
}

func (c *Client) signedCert(ctx context.Context, path string, body []byte, key ssh.PublicKey, typ uint32) (*ssh.Certificate, error) {
	sig, err := bastionauth.Sign(c.hostKey, body)
	if err != nil {
		return nil, err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(bastionauth.Header, sig)
	var out api.CertResponse
	if err := c.do(req, &out); err != nil {
		return nil, err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(out.Certificate))
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok || cert.CertType != typ || !bytes.Equal(cert.Key.Marshal(), key.Marshal()) {
		return nil, errors.New("the signer returned a certificate of the wrong kind or for another key")
	}
	return cert, nil
}

func (c *Client) do(req *http.Request, out any) error {
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("reach signer: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read signer response: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e api.Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = resp.Status
		}
		return fmt.Errorf("signer refused: %s", e.Error)
	}
	return json.Unmarshal(data, out)
}

func line(k ssh.PublicKey) string { return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) }

func parseKeys(lines []string) ([]ssh.PublicKey, error) {
	var out []ssh.PublicKey
	for _, l := range lines {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l))
		if err != nil {
			return nil, fmt.Errorf("parse CA key from signer: %w", err)
		}
		out = append(out, k)
	}
	return out, nil
}

func signedBy(c *ssh.Certificate, cas []ssh.PublicKey) bool {
	for _, ca := range cas {
		if bytes.Equal(ca.Marshal(), c.SignatureKey.Marshal()) {
			return true
		}
	}
	return false
}
