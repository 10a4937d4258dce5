package revocation

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/api"
	"github.com/postern-dev/postern/internal/krl"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

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

func newCert(t testing.TB, ca ssh.Signer, keyID string, serial uint64) *ssh.Certificate {
	t.Helper()
	c := &ssh.Certificate{Key: newSigner(t).PublicKey(), CertType: ssh.UserCert, KeyId: keyID, Serial: serial,
		ValidPrincipals: []string{"ubuntu"}, ValidBefore: ssh.CertTimeInfinity}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return c
}

// krlBytes encodes a KRL of generation gen revoking keyIDs of ca.
func krlBytes(t testing.TB, gen uint64, ca ssh.PublicKey, keyIDs ...string) []byte {
	t.Helper()
	k := &krl.KRL{Version: gen}
	for _, id := range keyIDs {
		k.RevokeKeyID(ca, id)
	}
	b, err := k.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeSource serves whatever it was last given; tags are "g<N>".
type fakeSource struct {
	mu    sync.Mutex
	data  []byte
	tag   string
	err   error
	calls int
}

func (f *fakeSource) set(data []byte, tag string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.data, f.tag, f.err = data, tag, nil
}

func (f *fakeSource) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeSource) String() string { return "fake" }

func (f *fakeSource) Fetch(_ context.Context, tag string) (Fetched, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return Fetched{}, f.err
	}
	if tag != "" && tag == f.tag {
		return Fetched{NotModified: true, Tag: tag}, nil
	}
	return Fetched{Data: f.data, Tag: f.tag}, nil
}

func TestWatcher(t *testing.T) {
	caSigner := newSigner(t)
	ca := caSigner.PublicKey()
	alice, bob := newCert(t, caSigner, "alice", 1), newCert(t, caSigner, "bob", 2)
	src := &fakeSource{}
	now := time.Unix(1_800_000_000, 0)
	var changes []uint64
	w := &Watcher{Source: src, Logger: quiet, Now: func() time.Time { return now },
		OnChange: func(cur, _ *List) { changes = append(changes, cur.Generation) }}
	ctx := context.Background()

	// Before any list, nothing is revoked.
	if err := w.Check(alice); err != nil {
		t.Fatalf("no list yet: %v", err)
	}
	steps := []struct {
		name      string
		apply     func()
		wantErr   bool
		wantGen   uint64
		aliceOut  bool
		bobOut    bool
		changes   int
		wantCalls int
	}{
		{"first list", func() { src.set(krlBytes(t, 1, ca, "alice"), "g1") }, false, 1, true, false, 1, 1},
		{"not modified", func() {}, false, 1, true, false, 1, 2},
		{"new generation", func() { src.set(krlBytes(t, 2, ca, "alice", "bob"), "g2") }, false, 2, true, true, 2, 3},
		{"older generation refused", func() { src.set(krlBytes(t, 1, ca, "alice"), "g1b") }, true, 2, true, true, 2, 4},
		{"garbage refused", func() { src.set([]byte("not a krl"), "bad") }, true, 2, true, true, 2, 5},
		{"fetch error keeps the list", func() { src.fail(errors.New("signer down")) }, true, 2, true, true, 2, 6},
		{"same generation, new tag", func() { src.set(krlBytes(t, 2, ca, "alice", "bob"), "g2b") }, false, 2, true, true, 2, 7},
		{"undo", func() { src.set(krlBytes(t, 3, ca), "g3") }, false, 3, false, false, 3, 8},
	}
	for _, s := range steps {
		s.apply()
		err := w.Refresh(ctx)
		if (err != nil) != s.wantErr {
			t.Fatalf("%s: Refresh error %v, want error %v", s.name, err, s.wantErr)
		}
		if g := w.Current().Generation; g != s.wantGen {
			t.Errorf("%s: generation %d, want %d", s.name, g, s.wantGen)
		}
		aErr, bErr := w.Check(alice), w.Check(bob)
		if (aErr != nil) != s.aliceOut || (bErr != nil) != s.bobOut {
			t.Errorf("%s: alice %v, bob %v; want revoked %v, %v", s.name, aErr, bErr, s.aliceOut, s.bobOut)
		}
		if aErr != nil && (!errors.Is(aErr, ErrRevoked) || !errors.Is(aErr, krl.ErrRevoked)) {
			t.Errorf("%s: %v does not wrap ErrRevoked", s.name, aErr)
		}
		if len(changes) != s.changes {
			t.Errorf("%s: %d changes %v, want %d", s.name, len(changes), changes, s.changes)
		}
		if src.calls != s.wantCalls {
			t.Errorf("%s: %d fetches, want %d", s.name, src.calls, s.wantCalls)
		}
	}
}

func TestWatcherMaxStale(t *testing.T) {
	ca := newSigner(t)
	alice := newCert(t, ca, "alice", 1)
	src := &fakeSource{}
	src.fail(errors.New("signer down"))
	now := time.Unix(1_800_000_000, 0)
	w := &Watcher{Source: src, Logger: quiet, MaxStale: 10 * time.Second, Now: func() time.Time { return now }}
	ctx := context.Background()
	if err := w.Check(alice); err != nil {
		t.Fatalf("fresh start: %v", err)
	}
	_ = w.Refresh(ctx)
	now = now.Add(11 * time.Second)
	if err := w.Check(alice); !errors.Is(err, ErrStale) {
		t.Fatalf("never fetched, 11s after start: %v, want ErrStale", err)
	}
	src.set(krlBytes(t, 1, ca.PublicKey()), "g1")
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Check(alice); err != nil {
		t.Fatalf("just refreshed: %v", err)
	}
	// Not modified counts as fresh.
	now = now.Add(9 * time.Second)
	_ = w.Refresh(ctx)
	now = now.Add(9 * time.Second)
	if err := w.Check(alice); err != nil {
		t.Fatalf("refreshed (304) 9s ago: %v", err)
	}
	src.fail(errors.New("signer down"))
	_ = w.Refresh(ctx)
	now = now.Add(2 * time.Second)
	if err := w.Check(alice); !errors.Is(err, ErrStale) {
		t.Fatalf("last good 11s ago: %v, want ErrStale", err)
	}
	// Without MaxStale the last good list stays in force.
	w.MaxStale = 0
	if err := w.Check(alice); err != nil {
		t.Fatalf("fail open: %v", err)
	}
}

func TestRunPolls(t *testing.T) {
	ca := newSigner(t)
	src := &fakeSource{}
	src.set(krlBytes(t, 1, ca.PublicKey()), "g1")
	got := make(chan uint64, 4)
	w := &Watcher{Source: src, Logger: quiet, Interval: 20 * time.Millisecond,
		OnChange: func(cur, _ *List) { got <- cur.Generation }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for _, want := range []uint64{1, 2} {
		select {
		case g := <-got:
			if g != want {
				t.Fatalf("generation %d, want %d", g, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("generation %d not picked up", want)
		}
		src.set(krlBytes(t, 2, ca.PublicKey(), "alice"), "g2")
	}
}

func TestFileSource(t *testing.T) {
	ca := newSigner(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "postern.krl")
	w := &Watcher{Source: &FileSource{Path: path}, Logger: quiet}
	ctx := context.Background()
	if err := w.Refresh(ctx); err == nil {
		t.Fatal("missing file: no error")
	}
	install := func(data []byte) {
		tmp := path + ".new"
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	install(krlBytes(t, 4, ca.PublicKey()))
	if err := w.Refresh(ctx); err != nil || w.Current().Generation != 4 {
		t.Fatalf("first read: %v", err)
	}
	install(krlBytes(t, 5, ca.PublicKey(), "alice"))
	if err := w.Refresh(ctx); err != nil || w.Current().Generation != 5 {
		t.Fatalf("replaced file: %v, generation %d", err, w.Current().Generation)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := w.Refresh(ctx); err == nil || w.Current().Generation != 5 {
		t.Fatalf("removed file: %v, generation %d; want an error and the last good list", err, w.Current().Generation)
	}
}

func TestHTTPSource(t *testing.T) {
	ca := newSigner(t)
	var gen atomic.Uint64
	gen.Store(1)
	var conditional atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != api.PathKRL {
			http.NotFound(w, r)
			return
		}
		g := gen.Load()
		etag := `"krl-` + strconv.FormatUint(g, 10) + `"`
		if r.Header.Get("If-None-Match") == etag {
			conditional.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Header().Set(api.HeaderKRLGeneration, strconv.FormatUint(g, 10))
		w.Write(krlBytes(t, g, ca.PublicKey()))
	}))
	defer srv.Close()
	dir := t.TempDir()
	pinned := filepath.Join(dir, "signer-ca.pem")
	if err := os.WriteFile(pinned, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	w := &Watcher{Source: NewHTTPSource(srv.URL+"/", pinned, 5*time.Second), Logger: quiet}
	if err := w.Refresh(ctx); err != nil || w.Current().Generation != 1 {
		t.Fatalf("first fetch: %v", err)
	}
	if err := w.Refresh(ctx); err != nil || conditional.Load() != 1 {
		t.Fatalf("second fetch: %v, %d conditional answers; want If-None-Match answered 304", err, conditional.Load())
	}
	gen.Store(2)
	if err := w.Refresh(ctx); err != nil || w.Current().Generation != 2 {
		t.Fatalf("new generation: %v", err)
	}

	// Another CA than the signer's: refused. (httptest servers all share
	// one certificate, so the other CA is made here.)
	wrong := filepath.Join(dir, "other-ca.pem")
	if err := os.WriteFile(wrong, selfSigned(t), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewHTTPSource(srv.URL, wrong, 5*time.Second).Fetch(ctx, ""); err == nil {
		t.Fatal("a signer certificate outside the pinned CA was accepted")
	}
	// Missing CA file: an error now, retried at the next fetch.
	missing := NewHTTPSource(srv.URL, filepath.Join(dir, "later.pem"), 5*time.Second)
	if _, err := missing.Fetch(ctx, ""); err == nil {
		t.Fatal("missing CA file: no error")
	}
	if err := os.Rename(pinned, filepath.Join(dir, "later.pem")); err != nil {
		t.Fatal(err)
	}
	if f, err := missing.Fetch(ctx, ""); err != nil || f.Generation != 2 {
		t.Fatalf("CA file installed later: %v", err)
	}
}

// selfSigned returns a PEM CA certificate that signed nothing.
func selfSigned(t *testing.T) []byte {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		DNSNames: []string{"example.com"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestHTTPSourceGenerationMismatch(t *testing.T) {
	ca := newSigner(t)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(api.HeaderKRLGeneration, "7")
		w.Write(krlBytes(t, 6, ca.PublicKey()))
	}))
	defer srv.Close()
	src := NewHTTPSource(srv.URL, "", 5*time.Second)
	src.client = srv.Client()
	w := &Watcher{Source: src, Logger: quiet}
	if err := w.Refresh(context.Background()); err == nil || w.Current() != nil {
		t.Fatalf("header says 7, KRL says 6: %v", err)
	}
}

func TestRegistrySweep(t *testing.T) {
	ca := newSigner(t)
	alice1, alice2, bob := newCert(t, ca, "alice", 1), newCert(t, ca, "alice", 2), newCert(t, ca, "bob", 3)
	var reg Registry
	ended := make(chan string, 8)
	add := func(id string, c *ssh.Certificate) func() {
		return reg.Add(Entry{Cert: c, Kind: "test", ID: id, End: func(cause error) {
			if !errors.Is(cause, ErrRevoked) {
				t.Errorf("%s: cause %v does not wrap ErrRevoked", id, cause)
			}
			ended <- id
		}})
	}
	add("a1", alice1)
	add("a2", alice2)
	removeB := add("b", bob)
	list := &List{KRL: &krl.KRL{Version: 1}, Generation: 1}
	list.KRL.RevokeKeyID(ca.PublicKey(), "alice")
	check := func(c *ssh.Certificate) error { return list.Check(c) }

	if got := reg.Sweep(check); len(got) != 2 {
		t.Fatalf("swept %d entries, want alice's 2", len(got))
	}
	seen := map[string]bool{}
	for range 2 {
		select {
		case id := <-ended:
			seen[id] = true
		case <-time.After(5 * time.Second):
			t.Fatal("End not called")
		}
	}
	if !seen["a1"] || !seen["a2"] {
		t.Fatalf("ended %v", seen)
	}
	// A second sweep does not end them again.
	if got := reg.Sweep(check); len(got) != 0 {
		t.Fatalf("second sweep ended %d entries again", len(got))
	}
	removeB()
	if reg.Len() != 2 {
		t.Fatalf("Len %d, want 2 (alice's entries stay until their holders remove them)", reg.Len())
	}
}
