package sshcert

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// countingKey counts the real verifications done with a CA key.
type countingKey struct {
	ssh.PublicKey
	n *atomic.Int64
}

func (k countingKey) Verify(data []byte, sig *ssh.Signature) error {
	k.n.Add(1)
	return k.PublicKey.Verify(data, sig)
}

type sigFixture struct {
	ca    ssh.Signer
	now   time.Time
	calls atomic.Int64
}

func newSigFixture(t *testing.T) *sigFixture {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	ca, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return &sigFixture{ca: ca, now: time.Unix(1_800_000_000, 0)}
}

// cert signs a user certificate valid for [now-1m, now+life) and returns
// it re-parsed from the wire (as a server sees it), with its CA key
// wrapped to count verifications.
func (f *sigFixture) cert(t *testing.T, id string, life time.Duration, crit map[string]string) *ssh.Certificate {
	t.Helper()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	k, _ := ssh.NewPublicKey(pub)
	c := &ssh.Certificate{Key: k, Serial: 7, CertType: ssh.UserCert, KeyId: id, ValidPrincipals: []string{"alice"},
		ValidAfter: uint64(f.now.Add(-time.Minute).Unix()), ValidBefore: uint64(f.now.Add(life).Unix()),
		Permissions: ssh.Permissions{CriticalOptions: crit, Extensions: map[string]string{"permit-pty": ""}}}
	if err := c.SignCert(rand.Reader, f.ca); err != nil {
		t.Fatal(err)
	}
	return f.reparse(t, c)
}

func (f *sigFixture) reparse(t *testing.T, c *ssh.Certificate) *ssh.Certificate {
	t.Helper()
	k, err := ssh.ParsePublicKey(c.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	out := k.(*ssh.Certificate)
	out.SignatureKey = countingKey{out.SignatureKey, &f.calls}
	return out
}

func (f *sigFixture) checker(at time.Time) *ssh.CertChecker {
	return &ssh.CertChecker{Clock: func() time.Time { return at }, SupportedCriticalOptions: KnownCriticalOptions}
}

func TestSigCacheHitAndMiss(t *testing.T) {
	f := newSigFixture(t)
	c := NewSigCache(16)
	a := f.cert(t, "a", time.Hour, nil)
	for i := range 3 {
		if err := c.CheckCert(f.checker(f.now), "alice", a); err != nil {
			t.Fatalf("use %d: %v", i, err)
		}
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("3 uses of one certificate verified its signature %d times, want 1", n)
	}
	// The same certificate parsed again (new object, same bytes) hits.
	if err := c.CheckCert(f.checker(f.now), "alice", f.reparse(t, a)); err != nil || f.calls.Load() != 1 {
		t.Fatalf("same bytes, new parse: err %v, verifications %d", err, f.calls.Load())
	}
	// Another certificate from the same CA is a miss.
	b := f.cert(t, "b", time.Hour, nil)
	if err := c.CheckCert(f.checker(f.now), "alice", b); err != nil || f.calls.Load() != 2 {
		t.Fatalf("second certificate: err %v, verifications %d", err, f.calls.Load())
	}
	if s := c.Stats(); s.Hits != 3 || s.Misses != 2 || s.Len != 2 {
		t.Fatalf("stats %+v", s)
	}
	// The caller's certificate is left alone.
	if _, wrapped := a.SignatureKey.(cachedKey); wrapped {
		t.Fatal("CheckCert replaced the caller's SignatureKey")
	}
}

func TestSigCacheNeverCachesFailures(t *testing.T) {
	f := newSigFixture(t)
	c := NewSigCache(16)
	good := f.cert(t, "a", time.Hour, nil)
	// A forged certificate: the bytes of a good one with another validity
	// and the good one's signature.
	forged := *good
	forged.ValidBefore += uint64(24 * time.Hour / time.Second)
	// Remember the good one first: its cached signature must not vouch
	// for the forged bytes.
	if err := c.CheckCert(f.checker(f.now), "alice", good); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		err := c.CheckCert(f.checker(f.now), "alice", &forged)
		if err == nil || !strings.Contains(err.Error(), "signature does not verify") {
			t.Fatalf("forged certificate, try %d: %v", i, err)
		}
	}
	if n := f.calls.Load(); n != 4 {
		t.Fatalf("verifications %d, want 1 for the good certificate and 1 per forged try", n)
	}
	// Signed by another CA that claims to be this one.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherCA, _ := ssh.NewSignerFromKey(other)
	bad := f.cert(t, "c", time.Hour, nil)
	raw := *bad
	raw.SignatureKey = f.ca.PublicKey()
	if err := raw.SignCert(rand.Reader, otherCA); err != nil {
		t.Fatal(err)
	}
	raw.SignatureKey = f.ca.PublicKey() // SignCert set it to the real signer
	for range 2 {
		if err := c.CheckCert(f.checker(f.now), "alice", f.reparse(t, &raw)); err == nil {
			t.Fatal("a certificate signed by another key was accepted")
		}
	}
	if s := c.Stats(); s.Len != 1 {
		t.Fatalf("%d signatures cached, want only the good one", s.Len)
	}
}

func TestSigCacheStillChecksEverythingElse(t *testing.T) {
	f := newSigFixture(t)
	c := NewSigCache(16)
	short := f.cert(t, "short", 10*time.Minute, map[string]string{OptSourceAddress: "10.0.0.0/8"})
	if err := c.CheckCert(f.checker(f.now), "alice", short); err != nil {
		t.Fatal(err)
	}
	// Cached now; the validity window is still enforced...
	if err := c.CheckCert(f.checker(f.now.Add(11*time.Minute)), "alice", short); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired cached certificate: %v", err)
	}
	if err := c.CheckCert(f.checker(f.now.Add(-2*time.Minute)), "alice", short); err == nil || !strings.Contains(err.Error(), "not yet valid") {
		t.Fatalf("not yet valid cached certificate: %v", err)
	}
	// ...and the principal...
	if err := c.CheckCert(f.checker(f.now), "root", short); err == nil || !strings.Contains(err.Error(), "principal") {
		t.Fatalf("wrong principal on a cached certificate: %v", err)
	}
	// ...and the critical options the checker supports.
	strict := &ssh.CertChecker{Clock: func() time.Time { return f.now }}
	if err := c.CheckCert(strict, "alice", short); err == nil || !strings.Contains(err.Error(), "critical option") {
		t.Fatalf("unsupported critical option on a cached certificate: %v", err)
	}
	if err := c.CheckCert(f.checker(f.now), "alice", short); err != nil {
		t.Fatal(err)
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("verifications %d, want 1", n)
	}
}

func TestSigCacheBound(t *testing.T) {
	f := newSigFixture(t)
	c := NewSigCache(8)
	var certs []*ssh.Certificate
	for i := range 20 {
		certs = append(certs, f.cert(t, string(rune('a'+i)), time.Hour, nil))
		if err := c.CheckCert(f.checker(f.now), "alice", certs[i]); err != nil {
			t.Fatal(err)
		}
		if s := c.Stats(); s.Len > 8 {
			t.Fatalf("after %d certificates the cache holds %d, bound 8", i+1, s.Len)
		}
	}
	// The oldest was dropped: verified again.
	before := f.calls.Load()
	if err := c.CheckCert(f.checker(f.now), "alice", certs[0]); err != nil {
		t.Fatal(err)
	}
	if f.calls.Load() != before+1 {
		t.Fatal("the oldest certificate was still cached")
	}
	// One in use survives rotations: keep using certs[19] among new ones.
	hot := certs[19]
	for i := range 20 {
		if err := c.CheckCert(f.checker(f.now), "alice", f.cert(t, "new", time.Hour, nil)); err != nil {
			t.Fatal(err)
		}
		before := f.calls.Load()
		if err := c.CheckCert(f.checker(f.now), "alice", hot); err != nil {
			t.Fatal(err)
		}
		if f.calls.Load() != before {
			t.Fatalf("round %d: a certificate in constant use was evicted", i)
		}
	}
}

func TestSigCacheNil(t *testing.T) {
	f := newSigFixture(t)
	var c *SigCache
	a := f.cert(t, "a", time.Hour, nil)
	for range 2 {
		if err := c.CheckCert(f.checker(f.now), "alice", a); err != nil {
			t.Fatal(err)
		}
	}
	if f.calls.Load() != 2 {
		t.Fatal("a nil cache cached")
	}
}
