package sshcert

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/ssh"
)

// DefaultSigCacheSize bounds a SigCache made with size 0.
const DefaultSigCacheSize = 4096

// SigCache remembers CA signatures on certificates that verified, so that
// a certificate presented again and again (a bastion's host certificate on
// every request to the signer, a person's certificate on every recorded
// hop) costs one public-key verification instead of one per use.
//
// Only the signature check is remembered, keyed by a SHA-256 hash of the
// exact signing key, signed bytes and signature: a certificate that
// differs in any byte (a longer validity, another principal, another
// signature) is a miss and is verified. A failed verification is never
// remembered. Everything else about a certificate is checked on every
// use, cached or not: CheckCert runs ssh.CertChecker.CheckCert in full
// (critical options, principal, validity window against the checker's
// clock), and the callers check the CA they trust and revocation.
//
// The cache holds at most its size in entries (32 bytes each): two
// generations of half that size, the older one dropped when the newer is
// full, so certificates in use stay in. A nil *SigCache caches nothing.
type SigCache struct {
	half int

	mu        sync.Mutex
	cur, prev map[[sha256.Size]byte]struct{}

	hits, misses atomic.Uint64
}

// NewSigCache returns a cache of at most size verified signatures
// (0: DefaultSigCacheSize).
func NewSigCache(size int) *SigCache {
	if size <= 0 {
		size = DefaultSigCacheSize
	}
	half := max(size/2, 1)
	return &SigCache{half: half, cur: make(map[[sha256.Size]byte]struct{}, half)}
}

// SigCacheStats counts lookups.
type SigCacheStats struct {
	Hits, Misses uint64
	// Len is the number of signatures remembered.
	Len int
}

// Stats returns the counts so far.
func (c *SigCache) Stats() SigCacheStats {
	if c == nil {
		return SigCacheStats{}
	}
	c.mu.Lock()
	n := len(c.cur) + len(c.prev)
	c.mu.Unlock()
	return SigCacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Len: n}
}

// CheckCert is checker.CheckCert(principal, cert), with the verification
// of the CA's signature answered from c when these exact bytes verified
// before. cert is not modified.
func (c *SigCache) CheckCert(checker *ssh.CertChecker, principal string, cert *ssh.Certificate) error {
	if c == nil || !cacheable(cert.SignatureKey) {
		return checker.CheckCert(principal, cert)
	}
	cp := *cert
	cp.SignatureKey = cachedKey{PublicKey: cert.SignatureKey, cache: c}
	return checker.CheckCert(principal, &cp)
}

// cacheable leaves out what ssh.CertChecker treats specially: security
// key CAs (whose user-presence flag it ignores on certificate signatures,
// by type) and certificates used as CA keys.
func cacheable(k ssh.PublicKey) bool {
	if k == nil {
		return false
	}
	if _, isCert := k.(*ssh.Certificate); isCert {
		return false
	}
	return !strings.HasPrefix(k.Type(), "sk-")
}

// cachedKey is a CA key whose Verify consults the cache. Marshal and Type
// are the key's own, so the certificate's signed bytes do not change.
type cachedKey struct {
	ssh.PublicKey
	cache *SigCache
}

func (k cachedKey) Verify(data []byte, sig *ssh.Signature) error {
	id := sigID(k.PublicKey, data, sig)
	if k.cache.has(id) {
		k.cache.hits.Add(1)
		return nil
	}
	k.cache.misses.Add(1)
	if err := k.PublicKey.Verify(data, sig); err != nil {
		return err
	}
	k.cache.add(id)
	return nil
}

var hashes = sync.Pool{New: func() any { return sha256.New() }}

// sigID hashes key, data and signature, each length-prefixed.
func sigID(key ssh.PublicKey, data []byte, sig *ssh.Signature) [sha256.Size]byte {
	h := hashes.Get().(hash.Hash)
	defer hashes.Put(h)
	h.Reset()
	var n [8]byte
	part := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	part(key.Marshal())
	part(data)
	part(ssh.Marshal(sig))
	var id [sha256.Size]byte
	h.Sum(id[:0])
	return id
}

func (c *SigCache) has(id [sha256.Size]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cur[id]; ok {
		return true
	}
	if _, ok := c.prev[id]; ok {
		c.insert(id) // still in use: keep it past the next rotation
		return true
	}
	return false
}

func (c *SigCache) add(id [sha256.Size]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.insert(id)
}

func (c *SigCache) insert(id [sha256.Size]byte) {
	if len(c.cur) >= c.half {
		c.prev, c.cur = c.cur, make(map[[sha256.Size]byte]struct{}, c.half)
	}
	c.cur[id] = struct{}{}
}
