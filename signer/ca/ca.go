package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/crypto/ssh"
)

// Backdate is how far ValidAfter is set into the past.
const Backdate = time.Minute

// Key types accepted by Generate.
const (
	KeyEd25519 = "ed25519"
	KeyECDSA   = "ecdsa"
	KeyRSA     = "rsa"
)

// ErrExists is returned by Generate when the key file is already there.
var ErrExists = errors.New("key file already exists")

// Authority signs certificates with one CA key.
type Authority struct {
	signer ssh.Signer
	// Now is the clock; tests replace it.
	Now func() time.Time
	// Rand is the randomness for serials and signatures.
	Rand io.Reader
}

// New wraps a signer. RSA keys are switched to rsa-sha2-512.
func New(s ssh.Signer) (*Authority, error) {
	if s.PublicKey().Type() == ssh.KeyAlgoRSA {
		as, ok := s.(ssh.AlgorithmSigner)
		if !ok {
			return nil, errors.New("rsa signer cannot choose its algorithm")
		}
		ms, err := ssh.NewSignerWithAlgorithms(as, []string{ssh.KeyAlgoRSASHA512})
		if err != nil {
			return nil, fmt.Errorf("use rsa-sha2-512: %w", err)
		}
		s = ms
	}
	return &Authority{signer: s, Now: time.Now, Rand: rand.Reader}, nil
}

// Load reads an unencrypted OpenSSH (or PEM) private key file.
func Load(path string) (*Authority, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("parse CA key %s: %w", path, err)
	}
	return New(s)
}

// Generate creates a new CA key of the given type at path (0600) and its
// public key at path.pub. An existing file is never overwritten.
func Generate(path, keyType, comment string) error {
	var priv crypto.PrivateKey
	var err error
	switch keyType {
	case "", KeyEd25519:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case KeyECDSA:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyRSA:
		priv, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		return fmt.Errorf("unknown key type %q (want ed25519, ecdsa or rsa)", keyType)
	}
	if err != nil {
		return fmt.Errorf("generate %s key: %w", keyType, err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	if err := writeNew(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return err
	}
	pub := ssh.MarshalAuthorizedKey(s.PublicKey())
	if comment != "" {
		pub = append(pub[:len(pub)-1], []byte(" "+comment+"\n")...)
	}
	if err := os.WriteFile(path+".pub", pub, 0o644); err != nil {
		return fmt.Errorf("write public key: %w", err)
	}
	return nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%w: %s", ErrExists, path)
	}
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write key file: %w", err)
	}
	return f.Close()
}

// PublicKey is the CA's public key.
func (a *Authority) PublicKey() ssh.PublicKey { return a.signer.PublicKey() }

// UserCert describes a user certificate to sign.
type UserCert struct {
	Key             ssh.PublicKey
	KeyID           string
	Principals      []string
	TTL             time.Duration
	Extensions      map[string]string
	CriticalOptions map[string]string
}

// SignUser issues a user certificate.
func (a *Authority) SignUser(u UserCert) (*ssh.Certificate, error) {
	if u.KeyID == "" {
		return nil, errors.New("sign user certificate: empty key id")
	}
	if len(u.Principals) == 0 {
		return nil, errors.New("sign user certificate: no principals")
	}
	return a.sign(u.Key, ssh.UserCert, u.KeyID, u.Principals, u.TTL, u.Extensions, u.CriticalOptions)
}

// SignHost issues a host certificate whose principals are hosts.
func (a *Authority) SignHost(key ssh.PublicKey, hosts []string, ttl time.Duration) (*ssh.Certificate, error) {
	if len(hosts) == 0 {
		return nil, errors.New("sign host certificate: no host names")
	}
	return a.sign(key, ssh.HostCert, hosts[0], hosts, ttl, nil, nil)
}

func (a *Authority) sign(key ssh.PublicKey, typ uint32, keyID string, principals []string, ttl time.Duration, ext, crit map[string]string) (*ssh.Certificate, error) {
	if key == nil {
		return nil, errors.New("sign certificate: no public key")
	}
	if _, ok := key.(*ssh.Certificate); ok {
		return nil, errors.New("sign certificate: the key is itself a certificate")
	}
	if ttl <= 0 {
		return nil, errors.New("sign certificate: lifetime must be positive")
	}
	serial, err := a.serial()
	if err != nil {
		return nil, err
	}
	now := a.Now()
	c := &ssh.Certificate{
		Key:             key,
		Serial:          serial,
		CertType:        typ,
		KeyId:           keyID,
		ValidPrincipals: principals,
		ValidAfter:      uint64(now.Add(-Backdate).Unix()),
		ValidBefore:     uint64(now.Add(ttl).Unix()),
		Permissions:     ssh.Permissions{Extensions: ext, CriticalOptions: crit},
	}
	if err := c.SignCert(a.Rand, a.signer); err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	return c, nil
}

func (a *Authority) serial() (uint64, error) {
	var b [8]byte
	for {
		if _, err := io.ReadFull(a.Rand, b[:]); err != nil {
			return 0, fmt.Errorf("read serial: %w", err)
		}
		if s := binary.BigEndian.Uint64(b[:]); s != 0 {
			return s, nil
		}
	}
}
