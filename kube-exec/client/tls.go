package client

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/postern-dev/postern/internal/kubeproto"
)

// Files of the proxy's loopback TLS identity under the postern directory.
const (
	ProxyCertFile = kubeproto.ProxyCertFile
	proxyKeyFile  = "kube-proxy.key"
)

// LoopbackTLS returns a TLS certificate for 127.0.0.1 and ::1 and its PEM
// (what a kubeconfig pins as certificate-authority-data). kubectl sends
// bearer tokens only over TLS, so the loopback endpoint speaks it. With
// dir empty the certificate is made for this run only; otherwise it is
// kept in dir (key 0600) and reused until it is about to expire.
func LoopbackTLS(dir string) (tls.Certificate, []byte, error) {
	if dir != "" {
		certPEM, err1 := os.ReadFile(filepath.Join(dir, ProxyCertFile))
		keyPEM, err2 := os.ReadFile(filepath.Join(dir, proxyKeyFile))
		if err1 == nil && err2 == nil {
			if c, err := tls.X509KeyPair(certPEM, keyPEM); err == nil && c.Leaf != nil && time.Until(c.Leaf.NotAfter) > 24*time.Hour {
				return c, certPEM, nil
			}
		}
	}
	ttl := 24 * time.Hour
	if dir != "" {
		ttl = 365 * 24 * time.Hour
	}
	certPEM, keyPEM, err := selfSigned(ttl)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return tls.Certificate{}, nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, proxyKeyFile), keyPEM, 0o600); err != nil {
			return tls.Certificate{}, nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, ProxyCertFile), certPEM, 0o644); err != nil {
			return tls.Certificate{}, nil, err
		}
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	return c, certPEM, err
}

// ExecTLSFile is where kube-exec keeps its loopback TLS identity (key
// and certificate in one PEM file, 0600) under the postern directory.
const ExecTLSFile = "kube-exec-loopback.pem"

// CachedLoopbackTLS is [LoopbackTLS] for kube-exec runs: the certificate
// and its key are kept in one file (0600, replaced atomically) and reused
// until a day before they expire, so that a run does not spend a key
// generation and a signature before its command can start. When the
// file cannot be written the certificate serves this run only.
func CachedLoopbackTLS(path string) (tls.Certificate, []byte, error) {
	if b, err := os.ReadFile(path); err == nil {
		var certPEM []byte
		for rest := b; ; {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				break
			}
			if blk.Type == "CERTIFICATE" {
				certPEM = pem.EncodeToMemory(blk)
			}
		}
		if c, err := tls.X509KeyPair(b, b); err == nil && certPEM != nil && c.Leaf != nil && time.Until(c.Leaf.NotAfter) > 24*time.Hour {
			return c, certPEM, nil
		}
	}
	certPEM, keyPEM, err := selfSigned(365 * 24 * time.Hour)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	_ = writeFileAtomic(path, append(append([]byte{}, certPEM...), keyPEM...))
	return c, certPEM, nil
}

// writeFileAtomic writes data to path (0600) through a temporary file in
// the same directory, so that readers see the old file or the new one.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

func selfSigned(ttl time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "kube-exec loopback"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(ttl),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create loopback certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, errors.New("marshal loopback key")
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}
