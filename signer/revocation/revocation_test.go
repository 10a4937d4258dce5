package revocation

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/api"
	"github.com/postern-dev/postern/internal/krl"
)

func newSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func cert(t *testing.T, ca ssh.Signer, keyID string, serial uint64) *ssh.Certificate {
	t.Helper()
	c := &ssh.Certificate{Key: newSigner(t).PublicKey(), Serial: serial, CertType: ssh.UserCert, KeyId: keyID,
		ValidPrincipals: []string{"u"}, ValidBefore: ssh.CertTimeInfinity}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return c
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestFileStoreLifecycle(t *testing.T) {
	ctx := context.Background()
	ca := newSigner(t)
	s := &FileStore{Path: filepath.Join(t.TempDir(), "revocations.json")}
	l, err := s.Load(ctx)
	if err != nil || l.Generation != 0 || len(l.Entries) != 0 {
		t.Fatalf("Load of missing file = %+v, %v; want empty generation 0", l, err)
	}
	add := func(e Entry) (*List, bool) {
		t.Helper()
		e.Reason, e.By, e.Time = "left", "test", t0
		var changed bool
		l, err := s.Update(ctx, t0, func(l *List) (bool, error) {
			_, c, err := l.Add(e)
			changed = c
			return c, err
		})
		if err != nil {
			t.Fatal(err)
		}
		return l, changed
	}
	bobKey := newSigner(t).PublicKey()
	if l, ch := add(NewKeyID(ca.PublicKey(), "alice@example.com")); !ch || l.Generation != 1 {
		t.Fatalf("first revoke: changed=%v generation=%d", ch, l.Generation)
	}
	if l, ch := add(NewKeyID(ca.PublicKey(), "alice@example.com")); ch || l.Generation != 1 {
		t.Fatalf("repeat revoke: changed=%v generation=%d, want no change", ch, l.Generation)
	}
	add(NewSerial(ca.PublicKey(), 77))
	l, _ = add(NewKey(bobKey))
	if l.Generation != 3 || len(l.Entries) != 3 {
		t.Fatalf("generation %d, %d entries; want 3, 3", l.Generation, len(l.Entries))
	}
	fi, err := os.Stat(s.Path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, %v; want 0600", fi.Mode(), err)
	}

	// The KRL says what the list says.
	k, err := l.KRL()
	if err != nil {
		t.Fatal(err)
	}
	if k.Version != 3 {
		t.Errorf("KRL version %d, want 3", k.Version)
	}
	for _, tc := range []struct {
		key  ssh.PublicKey
		want bool
	}{
		{cert(t, ca, "alice@example.com", 5), true},
		{cert(t, ca, "carol@example.com", 77), true},
		{cert(t, ca, "carol@example.com", 78), false},
		{bobKey, true},
		{cert(t, newSigner(t), "alice@example.com", 5), false},
	} {
		if got := k.Revoked(tc.key); got != tc.want {
			t.Errorf("Revoked(%v) = %v, want %v", tc.key.Type(), got, tc.want)
		}
	}

	// Issuance refusals.
	if err := l.Refuses("alice@example.com", newSigner(t).PublicKey()); !errors.Is(err, ErrRevoked) {
		t.Errorf("Refuses(alice) = %v, want ErrRevoked", err)
	}
	if err := l.Refuses("bob@example.com", bobKey); !errors.Is(err, ErrRevoked) {
		t.Errorf("Refuses(bob's revoked key) = %v, want ErrRevoked", err)
	}
	if err := l.Refuses("bob@example.com", newSigner(t).PublicKey()); err != nil {
		t.Errorf("Refuses(bob, new key) = %v, want nil", err)
	}

	// Undo.
	l, err = s.Update(ctx, t0, func(l *List) (bool, error) {
		_, err := l.Remove(NewKeyID(ca.PublicKey(), "alice@example.com"))
		return err == nil, err
	})
	if err != nil || l.Generation != 4 || l.Refuses("alice@example.com", nil) != nil {
		t.Fatalf("undo: generation %d, err %v", l.Generation, err)
	}
	_, err = s.Update(ctx, t0, func(l *List) (bool, error) {
		_, err := l.Remove(NewKeyID(ca.PublicKey(), "alice@example.com"))
		return err == nil, err
	})
	if !errors.Is(err, ErrNotRevoked) {
		t.Fatalf("second undo = %v, want ErrNotRevoked", err)
	}
	if l, _ := s.Load(ctx); l.Generation != 4 {
		t.Fatalf("a failed change moved the generation to %d", l.Generation)
	}
}

func TestConcurrentUpdates(t *testing.T) {
	ctx := context.Background()
	ca := newSigner(t)
	path := filepath.Join(t.TempDir(), "r.json")
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &FileStore{Path: path} // separate values, shared file
			e := NewSerial(ca.PublicKey(), uint64(i+1))
			e.Reason, e.By, e.Time = "r", "b", t0
			if _, err := s.Update(ctx, t0, func(l *List) (bool, error) {
				_, c, err := l.Add(e)
				return c, err
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	l, err := (&FileStore{Path: path}).Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l.Generation != n || len(l.Entries) != n {
		t.Fatalf("generation %d with %d entries, want %d and %d", l.Generation, len(l.Entries), n, n)
	}
}

func TestCachePicksUpChanges(t *testing.T) {
	ctx := context.Background()
	ca := newSigner(t)
	s := &FileStore{Path: filepath.Join(t.TempDir(), "r.json")}
	c := &Cache{Store: s}
	s0, err := c.Current(ctx)
	if err != nil || s0.List.Generation != 0 {
		t.Fatalf("empty: %v %v", s0, err)
	}
	if k, err := krl.Parse(s0.KRL); err != nil || !k.Empty() {
		t.Fatalf("empty KRL: %v", err)
	}
	if again, _ := c.Current(ctx); again != s0 {
		t.Fatal("unchanged store re-read")
	}
	other := &FileStore{Path: s.Path} // "another process"
	if _, err := other.Update(ctx, t0, func(l *List) (bool, error) {
		e := NewKeyID(ca.PublicKey(), "alice@example.com")
		e.Time = t0
		_, ch, err := l.Add(e)
		return ch, err
	}); err != nil {
		t.Fatal(err)
	}
	s1, err := c.Current(ctx)
	if err != nil || s1.List.Generation != 1 || s1.ETag == s0.ETag {
		t.Fatalf("after change: gen %d etag %s (was %s), %v", s1.List.Generation, s1.ETag, s0.ETag, err)
	}
	// Same list, same bytes: a fresh snapshot has the same ETag.
	s1b, err := NewSnapshot(s1.List)
	if err != nil || s1b.ETag != s1.ETag || string(s1b.KRL) != string(s1.KRL) {
		t.Fatal("snapshot is not deterministic")
	}
}

func TestBrokenFileFailsClosed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ca := newSigner(t)
	for _, tc := range []struct{ name, content string }{
		{"not json", "{"},
		{"unknown field", `{"format":1,"generation":1,"entries":[],"extra":1}`},
		{"serial 0", fmt.Sprintf(`{"format":1,"generation":1,"entries":[{"kind":"serial","ca":%q,"serial":0}]}`, authorizedKey(ca.PublicKey()))},
		{"unknown kind", `{"format":1,"generation":1,"entries":[{"kind":"person"}]}`},
		{"future format", `{"format":2,"generation":1,"entries":[]}`},
		{"bad fingerprint", fmt.Sprintf(`{"format":1,"generation":1,"entries":[{"kind":"key","public_key":%q,"key_fp":"SHA256:x"}]}`, authorizedKey(ca.PublicKey()))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".json")
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := (&Cache{Store: &FileStore{Path: p}}).Current(ctx); err == nil {
				t.Fatal("broken list served")
			}
		})
	}
}

func TestEntryValidate(t *testing.T) {
	ca := newSigner(t)
	c := cert(t, ca, "x", 1)
	for _, tc := range []struct {
		name string
		e    Entry
	}{
		{"empty key id", NewKeyID(ca.PublicKey(), "")},
		{"key id with newline", NewKeyID(ca.PublicKey(), "a\nb")},
		{"key id with spaces", NewKeyID(ca.PublicKey(), " alice")},
		{"serial 0", NewSerial(ca.PublicKey(), 0)},
		{"certificate as key", NewKey(c)},
		{"no CA", Entry{Kind: api.RevokeSerial, Serial: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.e.Validate(); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestWireRedacts(t *testing.T) {
	e := NewKeyID(newSigner(t).PublicKey(), "alice@example.com")
	e.Reason, e.By = "dismissed for cause", "cli:root@signer"
	l := &List{Format: FormatVersion, Generation: 1, Entries: []Entry{e}}
	pub := l.Wire(false).Revocations[0]
	if pub.Reason != "" || pub.By != "" || pub.KeyID != "alice@example.com" {
		t.Fatalf("public view %+v", pub)
	}
	if full := l.Wire(true).Revocations[0]; full.Reason == "" || full.By == "" {
		t.Fatalf("full view %+v", full)
	}
}
