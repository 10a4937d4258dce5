package bastionauth

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestNonceWindows(t *testing.T) {
	_, caPriv, _ := ed25519.GenerateKey(rand.Reader)
	ca, _ := ssh.NewSignerFromKey(caPriv)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	key, _ := ssh.NewSignerFromKey(priv)
	now := time.Unix(1_800_000_000, 0)
	cert := &ssh.Certificate{Key: key.PublicKey(), CertType: ssh.HostCert, ValidPrincipals: []string{"b"},
		ValidAfter: uint64(now.Add(-time.Hour).Unix()), ValidBefore: uint64(now.Add(time.Hour).Unix())}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	clock := now
	v := &Verifier{HostCA: func() []ssh.PublicKey { return []ssh.PublicKey{ca.PublicKey()} },
		Principals: func() []string { return []string{"b"} }, Now: func() time.Time { return clock }}
	send := func(env Envelope) error {
		body := []byte(env.Nonce)
		sig, err := Sign(key, body)
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(env, body, sig)
		return err
	}
	env := NewEnvelope(cert, clock)
	if err := send(env); err != nil {
		t.Fatal(err)
	}
	if err := send(env); !errors.Is(err, ErrReplay) {
		t.Fatalf("immediate replay: %v", err)
	}
	// After one rotation the nonce is in the previous window: still refused.
	clock = clock.Add(2*MaxSkew + time.Second)
	env.Timestamp = clock.Unix() - int64(MaxSkew/time.Second) + 1 // as fresh as a replay could claim
	if err := send(env); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay after a rotation: %v", err)
	}
	// Many distinct nonces are fine (no global cap).
	for range 10000 {
		if err := send(NewEnvelope(cert, clock)); err != nil {
			t.Fatal(err)
		}
	}
	// A stale timestamp is refused whatever the nonce.
	old := NewEnvelope(cert, clock.Add(-2*MaxSkew))
	if err := send(old); !errors.Is(err, ErrReplay) {
		t.Fatalf("stale request: %v", err)
	}
}
