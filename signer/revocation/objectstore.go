package revocation

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/postern-dev/postern/internal/storage"
)

// Defaults of [ObjectStore].
const (
	DefaultObjectPrefix   = "revocations/"
	DefaultObjectInterval = 2 * time.Second
	DefaultObjectTimeout  = 10 * time.Second
)

// ObjectStore keeps the list in an object store (an S3 bucket) that
// several signers share. Object stores have no locks and postern never
// replaces an object, so the list is kept as a set of immutable change
// objects under Prefix, one per Update, each naming the revocations it
// adds and removes (see change.go for the names and the format). The list
// is what folding them in name order gives; its generation is the number
// of changes folded (an import counts as the generation it imported).
//
// Properties:
//   - Two signers revoking at the same time both write their change; both
//     revocations are on the list. A change made after another was read
//     sorts after it, whatever the clocks say.
//   - Objects are only ever added, so every later listing holds every
//     earlier one and the generation never goes down. A change object
//     that is read is kept (in memory and in LocalCopy) even if it later
//     disappears from the bucket: revocations are never forgotten.
//   - Objects already read are not read again: a refresh is one List plus
//     one Get per new change.
//   - Reading is refreshed at most once per Interval. When the bucket
//     cannot be reached, the last list read (or the local copy, after a
//     restart) is served and the failure logged; with neither, reading
//     fails (fail closed). Update needs the bucket: it fails with an error
//     and writes nothing.
type ObjectStore struct {
	// Objects is the bucket (keys relative to its configured prefix).
	Objects storage.Store
	// Prefix is where the change objects are, in Objects. Default
	// DefaultObjectPrefix.
	Prefix string
	// Source names the location in messages and in the local copy, e.g.
	// "s3://bucket/postern/revocations/". A local copy of another source
	// is not used.
	Source string
	// LocalCopy is a file holding every change read, so a signer that
	// starts while the bucket cannot be reached serves the last list it
	// knew. Empty: none.
	LocalCopy string
	// ImportFrom is a [FileStore] file whose list is copied into the
	// shared list when that is empty (switching a signer from "file" to
	// "s3"). Empty: none.
	ImportFrom string
	// Interval bounds how stale a read may be. Default
	// DefaultObjectInterval.
	Interval time.Duration
	// Timeout bounds one refresh or one write. Default
	// DefaultObjectTimeout.
	Timeout time.Duration
	Logger  *slog.Logger

	initOnce   sync.Once
	refreshing sync.Mutex // one refresh at a time
	updating   sync.Mutex // one Update at a time in this process
	saving     sync.Mutex // one write of the local copy at a time
	savedLen   int        // changes in the local copy last written

	mu           sync.Mutex // guards what follows
	known        map[string]*change
	list         *List // nil until something was read
	stamp        string
	lastTry      time.Time
	lastErr      error
	failingSince time.Time
	lastLog      time.Time
	missing      map[string]bool // known changes no longer listed, warned about
}

var _ Store = (*ObjectStore)(nil)

// errTransient marks a refresh failure worth retrying at once: a change
// object that was listed but not yet fully readable (being uploaded).
var errTransient = errors.New("change object not fully readable yet")

func (s *ObjectStore) prefix() string {
	if s.Prefix == "" {
		return DefaultObjectPrefix
	}
	return s.Prefix
}

func (s *ObjectStore) interval() time.Duration {
	if s.Interval <= 0 {
		return DefaultObjectInterval
	}
	return s.Interval
}

func (s *ObjectStore) timeout() time.Duration {
	if s.Timeout <= 0 {
		return DefaultObjectTimeout
	}
	return s.Timeout
}

func (s *ObjectStore) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *ObjectStore) source() string {
	if s.Source == "" {
		return s.prefix()
	}
	return s.Source
}

// Load returns the list, refreshed if the last refresh is older than
// Interval; see the type's documentation for outages.
func (s *ObjectStore) Load(ctx context.Context) (*List, error) {
	l, _, err := s.current(ctx)
	return l, err
}

// Stamp identifies the set of changes known: it changes exactly when the
// list may have.
func (s *ObjectStore) Stamp(ctx context.Context) (string, error) {
	_, st, err := s.current(ctx)
	return st, err
}

// Refresh reads new changes now and returns the error, if any (the list
// known before stays in use).
func (s *ObjectStore) Refresh(ctx context.Context) error {
	s.init()
	s.refreshing.Lock()
	defer s.refreshing.Unlock()
	err := s.refresh(ctx)
	s.note(err)
	return err
}

func (s *ObjectStore) current(ctx context.Context) (*List, string, error) {
	s.init()
	s.mu.Lock()
	due := time.Since(s.lastTry) >= s.interval()
	have := s.list != nil
	s.mu.Unlock()
	if due {
		// With a list to serve, a request does not wait for a refresh
		// another one is doing.
		locked := true
		if have {
			locked = s.refreshing.TryLock()
		} else {
			s.refreshing.Lock()
		}
		if locked {
			s.mu.Lock()
			still := time.Since(s.lastTry) >= s.interval() // not just done by another
			s.mu.Unlock()
			if still {
				// A client that goes away does not cut a refresh short.
				s.note(s.refresh(context.WithoutCancel(ctx)))
			}
			s.refreshing.Unlock()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.list == nil {
		err := s.lastErr
		if err == nil {
			err = errors.New("not read yet")
		}
		return nil, "", fmt.Errorf("the shared revocation list in %s cannot be read and there is no local copy: %w", s.source(), err)
	}
	return s.list.clone(), s.stamp, nil
}

// Update reads the newest list, runs change on a copy and stores the
// difference as a new change object. It fails, writing nothing, when the
// bucket cannot be read. Updates in one process are serialised; between
// processes there is no lock: concurrent changes are all kept.
func (s *ObjectStore) Update(ctx context.Context, now time.Time, change func(*List) (bool, error)) (*List, error) {
	s.init()
	s.updating.Lock()
	defer s.updating.Unlock()
	s.refreshing.Lock()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = s.refresh(ctx); !errors.Is(err, errTransient) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err == nil {
		s.note(nil)
	}
	s.refreshing.Unlock()
	if err != nil {
		// The caller reports it; reads go on serving the last list.
		return nil, fmt.Errorf("the shared revocation list cannot be read, nothing was changed: %w", err)
	}
	s.mu.Lock()
	before, seq := s.list.clone(), uint64(len(s.known))+1
	s.mu.Unlock()
	after := before.clone()
	changed, err := change(after)
	if err != nil || !changed {
		return after, err
	}
	if err := after.Validate(); err != nil {
		return nil, err
	}
	c, err := diff(before, after, now)
	if err != nil {
		return nil, err
	}
	if len(c.Revoke) == 0 && len(c.Unrevoke) == 0 {
		return before, nil
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	name := newChangeName(seq, now)
	if err := s.put(ctx, name, c); err != nil {
		return nil, err
	}
	s.add([]named{{Name: name, Change: c}})
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.list.clone(), nil
}

// put writes one change object; an error means it is not confirmed stored.
func (s *ObjectStore) put(ctx context.Context, name string, c *change) error {
	b, err := c.marshal()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	if _, err := s.Objects.Put(ctx, s.prefix()+name, bytes.NewReader(b), int64(len(b)), nil); err != nil {
		return fmt.Errorf("store the revocation change in %s: %w (not confirmed stored: check the list, then run the command again)", s.source(), err)
	}
	return nil
}

// refresh lists the changes and reads the new ones. The caller holds
// s.refreshing.
func (s *ObjectStore) refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	s.mu.Lock()
	s.lastTry = time.Now()
	s.mu.Unlock()
	objs, err := s.Objects.List(ctx, s.prefix())
	if err != nil {
		return err // names the bucket and prefix
	}
	s.mu.Lock()
	empty := len(s.known) == 0
	listed := make(map[string]bool, len(objs))
	var fresh []storage.ObjectInfo
	for _, o := range objs {
		name := strings.TrimPrefix(o.Key, s.prefix())
		listed[name] = true
		if s.known[name] == nil {
			fresh = append(fresh, o)
		}
	}
	var gone []string
	for name := range s.known {
		if !listed[name] && !s.missing[name] {
			s.missing[name] = true
			gone = append(gone, name)
		}
	}
	s.mu.Unlock()
	for _, name := range gone {
		s.log().Warn("a revocation change read before is no longer in the bucket; it stays in force (objects under revocations/ must never be deleted)",
			"object", s.source()+name)
	}
	var add []named
	if len(objs) == 0 && empty && s.ImportFrom != "" {
		n, err := s.importLocal(ctx)
		if err != nil {
			return err
		}
		if n != nil {
			add = append(add, *n)
		}
	}
	for _, o := range fresh {
		name := strings.TrimPrefix(o.Key, s.prefix())
		if err := checkChangeName(name); err != nil {
			return fmt.Errorf("%s: %w", s.source(), err)
		}
		c, err := s.read(ctx, o)
		if err != nil {
			return fmt.Errorf("revocation change %s%s: %w", s.source(), name, err)
		}
		add = append(add, named{Name: name, Change: c})
	}
	s.add(add)
	return nil
}

func (s *ObjectStore) read(ctx context.Context, o storage.ObjectInfo) (*change, error) {
	rc, err := s.Objects.Get(ctx, o.Key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxChangeSize+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != o.Size {
		return nil, fmt.Errorf("%w: %d of %d bytes", errTransient, len(b), o.Size)
	}
	return parseChange(b)
}

// importLocal copies the list in ImportFrom into the empty shared list.
func (s *ObjectStore) importLocal(ctx context.Context) (*named, error) {
	l, err := (&FileStore{Path: s.ImportFrom}).Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("import the local list into the empty shared one: %w", err)
	}
	if l.Generation == 0 && len(l.Entries) == 0 {
		return nil, nil
	}
	now := time.Now().UTC().Truncate(time.Second)
	c := &change{Format: FormatVersion, Time: l.Updated.UTC(), Revoke: l.Entries, ImportedGeneration: l.Generation}
	if c.Time.IsZero() {
		c.Time = now
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("import %s: %w", s.ImportFrom, err)
	}
	name := newChangeName(1, now)
	if err := s.put(ctx, name, c); err != nil {
		return nil, fmt.Errorf("import %s: %w", s.ImportFrom, err)
	}
	s.log().Info("imported the local revocation list into the empty shared one",
		"file", s.ImportFrom, "entries", len(l.Entries), "generation", l.Generation, "object", s.source()+name)
	return &named{Name: name, Change: c}, nil
}

// add takes changes into the known set, refolds and saves the local copy.
func (s *ObjectStore) add(changes []named) {
	s.mu.Lock()
	for _, n := range changes {
		s.known[n.Name] = n.Change
		delete(s.missing, n.Name)
	}
	first := s.list == nil
	if len(changes) > 0 || first {
		s.refold()
	}
	var snapshot []named
	if len(changes) > 0 || first {
		snapshot = s.sorted()
	}
	s.mu.Unlock()
	if snapshot != nil && s.LocalCopy != "" {
		if err := s.saveLocal(snapshot); err != nil {
			s.log().Error("cannot write the local copy of the shared revocation list", "file", s.LocalCopy, "err", err)
		}
	}
}

// sorted returns the known changes in name order; the caller holds s.mu.
func (s *ObjectStore) sorted() []named {
	out := make([]named, 0, len(s.known))
	for name, c := range s.known {
		out = append(out, named{Name: name, Change: c})
	}
	slices.SortFunc(out, func(a, b named) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// refold recomputes the list and the stamp; the caller holds s.mu.
func (s *ObjectStore) refold() {
	all := s.sorted()
	s.list = fold(all)
	h := sha256.New()
	for _, n := range all {
		io.WriteString(h, n.Name+"\n")
	}
	s.stamp = fmt.Sprintf("%d-%d-%s", s.list.Generation, len(all), hex.EncodeToString(h.Sum(nil)[:8]))
}

// note records the outcome of a refresh and logs failures: the first at
// warn, then once a minute, and the recovery.
func (s *ObjectStore) note(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	gen := any("none")
	if s.list != nil {
		gen = s.list.Generation
	}
	if err == nil {
		if !s.failingSince.IsZero() {
			s.log().Info("shared revocation list readable again", "source", s.source(), "generation", gen,
				"failed_for", now.Sub(s.failingSince).Round(time.Second).String())
		}
		s.failingSince, s.lastErr = time.Time{}, nil
		return
	}
	s.lastErr = err
	if s.failingSince.IsZero() {
		s.failingSince = now
	} else if now.Sub(s.lastLog) < time.Minute {
		return
	}
	s.lastLog = now
	if s.list == nil {
		s.log().Error("shared revocation list unreadable and no local copy: nothing to serve", "source", s.source(), "err", err)
		return
	}
	s.log().Warn("cannot refresh the shared revocation list; serving the last one read", "source", s.source(), "err", err,
		"generation", gen, "failing_for", now.Sub(s.failingSince).Round(time.Second).String())
}

func (s *ObjectStore) init() {
	s.initOnce.Do(func() {
		s.mu.Lock()
		s.known, s.missing = map[string]*change{}, map[string]bool{}
		s.mu.Unlock()
		if s.LocalCopy == "" {
			return
		}
		changes, err := s.readLocal()
		if err != nil {
			s.log().Warn("local copy of the shared revocation list not used", "file", s.LocalCopy, "err", err)
			return
		}
		if changes != nil {
			s.mu.Lock()
			for _, n := range changes {
				s.known[n.Name] = n.Change
			}
			s.refold()
			s.mu.Unlock()
		}
	})
}

// localCopy is the file format of ObjectStore.LocalCopy.
type localCopy struct {
	Format  int     `json:"format"`
	Source  string  `json:"source"`
	Changes []named `json:"changes"`
}

// readLocal returns the changes in the local copy; nil when there is none.
func (s *ObjectStore) readLocal() ([]named, error) {
	b, err := os.ReadFile(s.LocalCopy)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var lc localCopy
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&lc); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if lc.Format != FormatVersion {
		return nil, fmt.Errorf("format %d, want %d", lc.Format, FormatVersion)
	}
	if lc.Source != s.source() {
		return nil, fmt.Errorf("it is a copy of %s, not of %s", lc.Source, s.source())
	}
	for _, n := range lc.Changes {
		if err := checkChangeName(n.Name); err != nil {
			return nil, err
		}
		if n.Change == nil {
			return nil, fmt.Errorf("%s: empty", n.Name)
		}
		if err := n.Change.validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
	}
	if lc.Changes == nil {
		lc.Changes = []named{}
	}
	return lc.Changes, nil
}

// saveLocal writes the local copy unless a larger one (the set of changes
// only grows) was written meanwhile.
func (s *ObjectStore) saveLocal(changes []named) error {
	s.saving.Lock()
	defer s.saving.Unlock()
	if len(changes) < s.savedLen {
		return nil
	}
	b, err := json.Marshal(localCopy{Format: FormatVersion, Source: s.source(), Changes: changes})
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(s.LocalCopy, append(b, '\n'), 0o600); err != nil {
		return err
	}
	s.savedLen = len(changes)
	return nil
}

// clone copies the list and its entries.
func (l *List) clone() *List {
	c := *l
	c.Entries = slices.Clone(l.Entries)
	if c.Entries == nil {
		c.Entries = []Entry{}
	}
	return &c
}
