package server

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// HostKey is the bastion's host key and, when there is one, its
// certificate from the signer's host CA.
type HostKey struct {
	Signer    ssh.Signer
	Cert      *ssh.Certificate // nil without a certificate
	Generated bool             // the key was created just now
	Warnings  []string
}

// Signers returns what the server presents: the certificate (preferred by
// clients that trust the host CA) and the plain key.
func (h *HostKey) Signers() []ssh.Signer {
	if h.Cert == nil {
		return []ssh.Signer{h.Signer}
	}
	cs, err := ssh.NewCertSigner(h.Cert, h.Signer)
	if err != nil { // checked in LoadHostKey
		return []ssh.Signer{h.Signer}
	}
	return []ssh.Signer{cs, h.Signer}
}

// LoadHostKey reads the private host key at keyPath, generating an Ed25519
// key (0600, with keyPath.pub) when the file does not exist, and the host
// certificate at certPath if present. A missing or expired certificate is
// a warning; a certificate for another key, or that is not a host
// certificate, is an error.
func LoadHostKey(keyPath, certPath string, now time.Time) (*HostKey, error) {
	hk := &HostKey{}
	data, err := os.ReadFile(keyPath)
	if errors.Is(err, os.ErrNotExist) {
		if data, err = generateHostKey(keyPath); err != nil {
			return nil, err
		}
		hk.Generated = true
	} else if err != nil {
		return nil, fmt.Errorf("read host key: %w", err)
	}
	if fi, err := os.Stat(keyPath); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("host key %s is accessible by others (mode %04o): run chmod 600 %s", keyPath, fi.Mode().Perm(), keyPath)
	}
	hk.Signer, err = ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("parse host key %s: %w", keyPath, err)
	}
	hint := fmt.Sprintf("postern-signer host-cert --config FILE --host NAME,IP --pubkey %s.pub", keyPath)
	cdata, err := os.ReadFile(certPath)
	if errors.Is(err, os.ErrNotExist) {
		hk.Warnings = append(hk.Warnings, fmt.Sprintf("no host certificate at %s: clients trusting the host CA will refuse the bastion; create one with: %s", certPath, hint))
		return hk, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read host certificate: %w", err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(cdata)
	if err != nil {
		return nil, fmt.Errorf("parse host certificate %s: %w", certPath, err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok || cert.CertType != ssh.HostCert {
		return nil, fmt.Errorf("host certificate %s: not a host certificate", certPath)
	}
	if !bytes.Equal(cert.Key.Marshal(), hk.Signer.PublicKey().Marshal()) {
		return nil, fmt.Errorf("host certificate %s certifies another key than %s; create a new one with: %s", certPath, keyPath, hint)
	}
	if _, err := ssh.NewCertSigner(cert, hk.Signer); err != nil {
		return nil, fmt.Errorf("host certificate %s: %w", certPath, err)
	}
	if cert.ValidBefore != ssh.CertTimeInfinity && now.Unix() >= int64(cert.ValidBefore) {
		hk.Warnings = append(hk.Warnings, fmt.Sprintf("host certificate %s expired at %s; renew it with: %s",
			certPath, time.Unix(int64(cert.ValidBefore), 0).UTC().Format(time.RFC3339), hint))
	}
	hk.Cert = cert
	return hk, nil
}

// generateHostKey writes a new Ed25519 key to path (0600, never replacing
// a file) and its public key to path.pub, and returns the private key file.
func generateHostKey(path string) ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create host key directory: %w", err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate host key: %w", err)
	}
	host, _ := os.Hostname()
	comment := strings.TrimSpace("postern-bastion " + host)
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, fmt.Errorf("encode host key: %w", err)
	}
	data := pem.EncodeToMemory(block)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create host key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("write host key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write host key: %w", err)
	}
	spub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode host public key: %w", err)
	}
	line := bytes.TrimSpace(ssh.MarshalAuthorizedKey(spub))
	line = append(append(line, ' '), comment+"\n"...)
	if err := os.WriteFile(path+".pub", line, 0o644); err != nil {
		return nil, fmt.Errorf("write host public key: %w", err)
	}
	return data, nil
}
