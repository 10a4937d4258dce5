package revocation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/storage"
)

// flaky is a storage.Store that can be switched off, as an S3 outage
// would (the end-to-end test stops a real S3 server instead).
type flaky struct {
	storage.Store
	down atomic.Bool
}

var errOutage = errors.New("dial tcp 127.0.0.1:9: connect: connection refused")

func (f *flaky) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, meta map[string]string) (storage.ObjectInfo, error) {
	if f.down.Load() {
		return storage.ObjectInfo{}, errOutage
	}
	return f.Store.Put(ctx, key, body, size, meta)
}

func (f *flaky) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if f.down.Load() {
		return nil, errOutage
	}
	return f.Store.Get(ctx, key)
}

func (f *flaky) List(ctx context.Context, prefix string) ([]storage.ObjectInfo, error) {
	if f.down.Load() {
		return nil, errOutage
	}
	return f.Store.List(ctx, prefix)
}

func newLocal(t *testing.T) *storage.Local {
	t.Helper()
	l, err := storage.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// objStore is a store on objs with a tiny refresh interval, so every read
// looks at the bucket.
func objStore(objs storage.Store, localCopy string) *ObjectStore {
	return &ObjectStore{Objects: objs, Source: "test://bucket/revocations/", LocalCopy: localCopy, Interval: time.Nanosecond}
}

func revoke(t *testing.T, s Store, e Entry, now time.Time) (*List, bool) {
	t.Helper()
	e.Reason, e.By, e.Time = "left", "test", now.UTC().Truncate(time.Second)
	_, l, changed, err := Apply(context.Background(), s, e, false, now)
	if err != nil {
		t.Fatalf("revoke %s: %v", e.Target(), err)
	}
	return l, changed
}

func load(t *testing.T, s Store) *List {
	t.Helper()
	l, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func changeObjects(t *testing.T, objs storage.Store) []storage.ObjectInfo {
	t.Helper()
	o, err := objs.List(context.Background(), DefaultObjectPrefix)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestObjectStoreLifecycle(t *testing.T) {
	ctx := context.Background()
	ca := newSigner(t)
	objs := newLocal(t)
	a, b := objStore(objs, ""), objStore(objs, "")
	if l := load(t, a); l.Generation != 0 || len(l.Entries) != 0 {
		t.Fatalf("empty bucket: generation %d, %d entries", l.Generation, len(l.Entries))
	}
	alice := NewKeyID(ca.PublicKey(), "alice@example.com")
	if l, ch := revoke(t, a, alice, t0); !ch || l.Generation != 1 {
		t.Fatalf("first revoke: changed=%v generation=%d", ch, l.Generation)
	}
	if l, ch := revoke(t, b, alice, t0.Add(time.Minute)); ch || l.Generation != 1 {
		t.Fatalf("repeat revoke on the other signer: changed=%v generation=%d, want no change", ch, l.Generation)
	}
	revoke(t, b, NewSerial(ca.PublicKey(), 77), t0)
	bobKey := newSigner(t).PublicKey()
	revoke(t, a, NewKey(bobKey), t0)
	if n := len(changeObjects(t, objs)); n != 3 {
		t.Fatalf("%d change objects, want 3 (one per change)", n)
	}
	la, lb := load(t, a), load(t, b)
	if la.Generation != 3 || len(la.Entries) != 3 {
		t.Fatalf("generation %d, %d entries; want 3, 3", la.Generation, len(la.Entries))
	}
	sa, _ := NewSnapshot(la)
	sb, _ := NewSnapshot(lb)
	if !bytes.Equal(sa.KRL, sb.KRL) || sa.ETag != sb.ETag {
		t.Fatal("two signers reading the same changes publish different KRLs")
	}
	k, err := la.KRL()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key  ssh.PublicKey
		want bool
	}{
		{cert(t, ca, "alice@example.com", 5), true},
		{cert(t, ca, "carol@example.com", 77), true},
		{cert(t, ca, "carol@example.com", 78), false},
		{bobKey, true},
	} {
		if got := k.Revoked(tc.key); got != tc.want {
			t.Errorf("Revoked(%v) = %v, want %v", tc.key.Type(), got, tc.want)
		}
	}

	// Undo on b; a sees it; a second undo is ErrNotRevoked and writes nothing.
	if _, l, ch, err := Apply(ctx, b, alice, true, t0); err != nil || !ch || l.Generation != 4 {
		t.Fatalf("undo: changed=%v generation=%d err=%v", ch, l.Generation, err)
	}
	if l := load(t, a); l.Refuses("alice@example.com", nil) != nil || l.Generation != 4 {
		t.Fatalf("a after b's undo: generation %d, refuses alice: %v", l.Generation, l.Refuses("alice@example.com", nil))
	}
	if _, _, _, err := Apply(ctx, a, alice, true, t0); !errors.Is(err, ErrNotRevoked) {
		t.Fatalf("second undo = %v, want ErrNotRevoked", err)
	}
	if n := len(changeObjects(t, objs)); n != 4 {
		t.Fatalf("%d change objects after a refused undo, want 4", n)
	}
	// Revoked again after the undo: in force again.
	if l, ch := revoke(t, a, alice, t0); !ch || l.Generation != 5 || l.Refuses("alice@example.com", nil) == nil {
		t.Fatalf("revoke after undo: changed=%v generation=%d", ch, l.Generation)
	}
}

// TestObjectStoreConcurrentSigners: two stores (two signers) on one bucket
// revoke at the same time; nothing is lost, both end with the same list.
func TestObjectStoreConcurrentSigners(t *testing.T) {
	ca := newSigner(t)
	objs := newLocal(t)
	stores := []*ObjectStore{objStore(objs, ""), objStore(objs, "")}
	const perStore = 10
	var wg sync.WaitGroup
	for si, s := range stores {
		for i := range perStore {
			wg.Add(1)
			go func() {
				defer wg.Done()
				revoke(t, s, NewSerial(ca.PublicKey(), uint64(si*perStore+i+1)), t0)
			}()
		}
	}
	wg.Wait()
	var krls [][]byte
	for _, s := range stores {
		l := load(t, s)
		if l.Generation != 2*perStore || len(l.Entries) != 2*perStore {
			t.Fatalf("generation %d with %d entries, want %d and %d", l.Generation, len(l.Entries), 2*perStore, 2*perStore)
		}
		snap, err := NewSnapshot(l)
		if err != nil {
			t.Fatal(err)
		}
		krls = append(krls, snap.KRL)
	}
	if !bytes.Equal(krls[0], krls[1]) {
		t.Fatal("the signers disagree on the KRL")
	}
}

// TestObjectStoreGenerationMonotonic: a reader polling while another
// signer writes never sees the generation go down.
func TestObjectStoreGenerationMonotonic(t *testing.T) {
	ca := newSigner(t)
	objs := newLocal(t)
	writer, reader := objStore(objs, ""), objStore(objs, "")
	const n = 15
	done := make(chan struct{})
	var seen []uint64
	go func() {
		defer close(done)
		for {
			l, err := reader.Load(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			seen = append(seen, l.Generation)
			if l.Generation == n {
				return
			}
		}
	}()
	for i := range n {
		revoke(t, writer, NewSerial(ca.PublicKey(), uint64(i+1)), t0)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the reader did not reach the last generation")
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] < seen[i-1] {
			t.Fatalf("generation went from %d to %d", seen[i-1], seen[i])
		}
	}
}

// TestObjectStoreOrderIsCausal: an undo made after the revocation was read
// wins even when the undoing signer's clock is an hour behind, and a
// revocation made after that undo wins again.
func TestObjectStoreOrderIsCausal(t *testing.T) {
	ca := newSigner(t)
	objs := newLocal(t)
	a, b := objStore(objs, ""), objStore(objs, "")
	alice := NewKeyID(ca.PublicKey(), "alice@example.com")
	revoke(t, a, alice, t0)
	if _, l, _, err := Apply(context.Background(), b, alice, true, t0.Add(-time.Hour)); err != nil || l.Refuses("alice@example.com", nil) != nil {
		t.Fatalf("undo with a slow clock: %v", err)
	}
	if l := load(t, a); l.Refuses("alice@example.com", nil) != nil {
		t.Fatal("the undo made after the revocation was read does not hold")
	}
	revoke(t, b, alice, t0.Add(-2*time.Hour))
	if l := load(t, a); l.Refuses("alice@example.com", nil) == nil || l.Generation != 3 {
		t.Fatalf("revocation after the undo not in force (generation %d)", l.Generation)
	}
}

// TestObjectStoreOutage: with the bucket unreachable, changes fail and write
// nothing, the last list keeps being served, a restarted signer serves its
// local copy, one without a copy fails closed; everything resumes after.
func TestObjectStoreOutage(t *testing.T) {
	ctx := context.Background()
	ca := newSigner(t)
	objs := &flaky{Store: newLocal(t)}
	copyPath := filepath.Join(t.TempDir(), "revocations.json.s3-copy")
	a := objStore(objs, copyPath)
	revoke(t, a, NewKeyID(ca.PublicKey(), "alice@example.com"), t0)
	revoke(t, a, NewSerial(ca.PublicKey(), 9), t0)

	objs.down.Store(true)
	e := NewKeyID(ca.PublicKey(), "bob@example.com")
	e.Reason, e.By, e.Time = "r", "b", t0
	_, _, _, err := Apply(ctx, a, e, false, t0)
	if err == nil || !strings.Contains(err.Error(), "nothing was changed") || !errors.Is(err, errOutage) {
		t.Fatalf("revoke during the outage = %v, want a clear error", err)
	}
	if l := load(t, a); l.Generation != 2 || l.Refuses("alice@example.com", nil) == nil {
		t.Fatalf("during the outage the signer serves generation %d", l.Generation)
	}
	// A restart during the outage: the local copy is served.
	restarted := objStore(objs, copyPath)
	if l := load(t, restarted); l.Generation != 2 || l.Refuses("alice@example.com", nil) == nil {
		t.Fatalf("restarted signer serves generation %d", l.Generation)
	}
	// Without a local copy there is nothing safe to serve.
	if _, err := objStore(objs, filepath.Join(t.TempDir(), "none")).Load(ctx); err == nil {
		t.Fatal("a signer with no list served one")
	}

	objs.down.Store(false)
	if n := len(changeObjects(t, objs)); n != 2 {
		t.Fatalf("%d change objects after the outage, want 2 (the failed revoke wrote nothing)", n)
	}
	revoke(t, restarted, e, t0)
	if l := load(t, a); l.Generation != 3 || l.Refuses("bob@example.com", nil) == nil {
		t.Fatalf("after the outage: generation %d", l.Generation)
	}
}

// TestObjectStoreNeverForgets: a change object deleted from the bucket
// stays in force for a signer that read it, also across a restart.
func TestObjectStoreNeverForgets(t *testing.T) {
	ca := newSigner(t)
	local := newLocal(t)
	copyPath := filepath.Join(t.TempDir(), "copy")
	a := objStore(local, copyPath)
	revoke(t, a, NewKeyID(ca.PublicKey(), "alice@example.com"), t0)
	revoke(t, a, NewSerial(ca.PublicKey(), 3), t0)
	objs := changeObjects(t, local)
	if err := os.Remove(filepath.Join(local.Dir(), filepath.FromSlash(objs[0].Key))); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*ObjectStore{a, objStore(local, copyPath)} {
		if l := load(t, s); l.Generation != 2 || l.Refuses("alice@example.com", nil) == nil {
			t.Fatalf("generation %d after a change object was deleted; want 2 with alice revoked", l.Generation)
		}
	}
}

// TestObjectStoreImport: switching from "file" to "s3" carries the list
// and its generation over into an empty bucket, once.
func TestObjectStoreImport(t *testing.T) {
	ca := newSigner(t)
	fs := &FileStore{Path: filepath.Join(t.TempDir(), "revocations.json")}
	for i := range 5 {
		revoke(t, fs, NewSerial(ca.PublicKey(), uint64(i+1)), t0)
	}
	revoke(t, fs, NewKeyID(ca.PublicKey(), "alice@example.com"), t0)
	objs := newLocal(t)
	s := objStore(objs, "")
	s.ImportFrom = fs.Path
	if l := load(t, s); l.Generation != 6 || len(l.Entries) != 6 {
		t.Fatalf("after import: generation %d, %d entries; want 6, 6", l.Generation, len(l.Entries))
	}
	if l, _ := revoke(t, s, NewSerial(ca.PublicKey(), 99), t0); l.Generation != 7 {
		t.Fatalf("generation %d after import and one change, want 7", l.Generation)
	}
	// Another signer with its own file joins the non-empty list: no import.
	other := objStore(objs, "")
	other.ImportFrom = fs.Path
	if l := load(t, other); l.Generation != 7 || len(changeObjects(t, objs)) != 2 {
		t.Fatalf("second signer: generation %d, %d objects", l.Generation, len(changeObjects(t, objs)))
	}
}

// TestObjectStoreBadObject: a change object that is not one is an error
// naming it; a signer that knows a list keeps serving it, a new one fails
// closed, and changes are refused.
func TestObjectStoreBadObject(t *testing.T) {
	ctx := context.Background()
	ca := newSigner(t)
	objs := newLocal(t)
	a := objStore(objs, "")
	revoke(t, a, NewKeyID(ca.PublicKey(), "alice@example.com"), t0)
	for _, tc := range []struct{ name, content string }{
		{"00000000000000000002-20260102T030405Z-0123456789abcdef.json", `{"format":1}`},
		{"notes.txt", "hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := DefaultObjectPrefix + tc.name
			if _, err := objs.Put(ctx, key, strings.NewReader(tc.content), int64(len(tc.content)), nil); err != nil {
				t.Fatal(err)
			}
			defer os.Remove(filepath.Join(objs.Dir(), filepath.FromSlash(key)))
			if _, err := objStore(objs, "").Load(ctx); err == nil || !strings.Contains(err.Error(), tc.name) {
				t.Fatalf("new signer: Load = %v, want an error naming the object", err)
			}
			if l := load(t, a); l.Generation != 1 {
				t.Fatalf("the signer that knew generation 1 serves %d", l.Generation)
			}
			e := NewSerial(ca.PublicKey(), 5)
			e.Reason, e.By, e.Time = "r", "b", t0
			if _, _, _, err := Apply(ctx, a, e, false, t0); err == nil || !strings.Contains(err.Error(), tc.name) {
				t.Fatalf("revoke with a bad object in the bucket = %v", err)
			}
		})
	}
}

// TestObjectStoreLocalCopyOfAnotherBucket is not used.
func TestObjectStoreLocalCopyOfAnotherBucket(t *testing.T) {
	ca := newSigner(t)
	copyPath := filepath.Join(t.TempDir(), "copy")
	a := objStore(newLocal(t), copyPath)
	revoke(t, a, NewKeyID(ca.PublicKey(), "alice@example.com"), t0)
	other := objStore(newLocal(t), copyPath)
	other.Source = "test://another/revocations/"
	if l := load(t, other); l.Generation != 0 {
		t.Fatalf("a copy of another bucket was used: generation %d", l.Generation)
	}
}

// TestCacheSeesOtherSigner: the KRL cache of one signer picks up a change
// another signer wrote.
func TestCacheSeesOtherSigner(t *testing.T) {
	ctx := context.Background()
	ca := newSigner(t)
	objs := newLocal(t)
	c := &Cache{Store: objStore(objs, "")}
	s0, err := c.Current(ctx)
	if err != nil || s0.List.Generation != 0 {
		t.Fatalf("empty: %v", err)
	}
	revoke(t, objStore(objs, ""), NewKeyID(ca.PublicKey(), "alice@example.com"), t0)
	s1, err := c.Current(ctx)
	if err != nil || s1.List.Generation != 1 || s1.ETag == s0.ETag {
		t.Fatalf("after another signer's change: generation %d, %v", s1.List.Generation, err)
	}
	if again, _ := c.Current(ctx); again != s1 {
		t.Fatal("an unchanged list was re-encoded")
	}
}

func TestChangeNames(t *testing.T) {
	for _, ok := range []string{newChangeName(1, t0), newChangeName(1<<60, t0)} {
		if err := checkChangeName(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"", "x.json", "00000000000000000000-20260102T030405Z-0123456789abcdef.json",
		"00000000000000000001-20261302T030405Z-0123456789abcdef.json",
		"00000000000000000001-20260102T030405Z-0123456789ABCDEF.json",
		"99999999999999999999-20260102T030405Z-0123456789abcdef.json",
		"sub/00000000000000000001-20260102T030405Z-0123456789abcdef.json",
	} {
		if err := checkChangeName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if a, b := newChangeName(2, t0), newChangeName(10, t0.Add(-time.Hour)); a >= b {
		t.Errorf("%s sorts after %s", a, b)
	}
}

func FuzzParseChange(f *testing.F) {
	ca := newSigner(f)
	e := NewKeyID(ca.PublicKey(), "alice@example.com")
	e.Reason, e.By, e.Time = "left", "test", t0
	good, _ := (&change{Format: 1, Time: t0, Revoke: []Entry{e}}).marshal()
	f.Add(good)
	undo, _ := (&change{Format: 1, Time: t0, Unrevoke: []Entry{NewKey(ca.PublicKey())}, ImportedGeneration: 3}).marshal()
	f.Add(undo)
	f.Add([]byte(`{"format":1,"time":"2026-01-02T03:04:05Z","revoke":[{"kind":"serial","ca":"x","serial":1}]}`))
	f.Add([]byte(`{"format":1,"time":"2026-01-02T03:04:05Z"}{}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseChange(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error without ErrInvalid: %v", err)
			}
			return
		}
		// What parses folds into a valid list, and survives a round trip.
		l := fold([]named{{Name: newChangeName(1, t0), Change: c}})
		if err := l.Validate(); err != nil {
			t.Fatalf("parsed change folds into an invalid list: %v", err)
		}
		if _, err := l.KRL(); err != nil {
			t.Fatalf("KRL of a parsed change: %v", err)
		}
		again, err := c.marshal()
		if err != nil {
			t.Fatal(err)
		}
		c2, err := parseChange(again)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", again, err)
		}
		j1, _ := json.Marshal(l)
		j2, _ := json.Marshal(fold([]named{{Name: newChangeName(1, t0), Change: c2}}))
		if !bytes.Equal(j1, j2) {
			t.Fatalf("round trip changed the list:\n%s\n%s", j1, j2)
		}
	})
}
