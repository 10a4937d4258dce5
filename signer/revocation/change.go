package revocation

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// A change is one object of an [ObjectStore]: revocations added and
// removed by one Update. Change objects are written once and never
// replaced; the list is what folding all of them in name order gives.
type change struct {
	// Format is FormatVersion.
	Format int `json:"format"`
	// Time is when the change was made (UTC, whole seconds).
	Time time.Time `json:"time"`
	// Unrevoke are entries removed (as they were on the list); they are
	// applied before Revoke.
	Unrevoke []Entry `json:"unrevoke,omitempty"`
	// Revoke are entries added.
	Revoke []Entry `json:"revoke,omitempty"`
	// ImportedGeneration is set on the change that imported a local list
	// into an empty shared one: the generation of that list, so the shared
	// list's generation starts above it (nodes refuse older generations).
	ImportedGeneration uint64 `json:"imported_generation,omitempty"`
}

// maxChangeSize bounds one change object (an import holds a whole list).
const maxChangeSize = 16 << 20

// changeName is a change object's name below the store's prefix:
// SEQ-TIME-RANDOM.json. SEQ (20 digits) is one more than the number of
// changes the writer had read, so a change made after another was seen
// sorts after it whatever the writers' clocks say; changes made at the
// same time by writers that did not see each other sort by time, then at
// random. Names never collide.
var changeName = regexp.MustCompile(`^([0-9]{20})-([0-9]{8}T[0-9]{6}Z)-([0-9a-f]{16})\.json$`)

const changeTimeLayout = "20060102T150405Z"

// newChangeName returns a fresh name for the change written after seq-1
// known ones.
func newChangeName(seq uint64, now time.Time) string {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	return fmt.Sprintf("%020d-%s-%s.json", seq, now.UTC().Format(changeTimeLayout), hex.EncodeToString(rnd[:]))
}

// checkChangeName reports whether name is a change object's name.
func checkChangeName(name string) error {
	m := changeName.FindStringSubmatch(name)
	if m == nil {
		return fmt.Errorf("%w: %q is not the name of a revocation change (want SEQ-YYYYMMDDTHHMMSSZ-RANDOM.json)", ErrInvalid, name)
	}
	if seq, err := strconv.ParseUint(m[1], 10, 64); err != nil || seq == 0 {
		return fmt.Errorf("%w: %q: bad sequence number", ErrInvalid, name)
	}
	if _, err := time.Parse(changeTimeLayout, m[2]); err != nil {
		return fmt.Errorf("%w: %q: bad time: %v", ErrInvalid, name, err)
	}
	return nil
}

// parseChange decodes and checks one change object.
func parseChange(b []byte) (*change, error) {
	if len(b) > maxChangeSize {
		return nil, fmt.Errorf("%w: change of %d bytes (limit %d)", ErrInvalid, len(b), maxChangeSize)
	}
	var c change
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: parse change: %v", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: parse change: data after the object", ErrInvalid)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *change) validate() error {
	if c.Format != FormatVersion {
		return fmt.Errorf("%w: change format %d, want %d", ErrInvalid, c.Format, FormatVersion)
	}
	if c.Time.IsZero() {
		return fmt.Errorf("%w: change without a time", ErrInvalid)
	}
	if len(c.Revoke) == 0 && len(c.Unrevoke) == 0 && c.ImportedGeneration == 0 {
		return fmt.Errorf("%w: change that changes nothing", ErrInvalid)
	}
	var errs []error
	seen := map[string]bool{}
	for _, part := range [][]Entry{c.Unrevoke, c.Revoke} {
		for _, e := range part {
			if err := e.Validate(); err != nil {
				errs = append(errs, err)
				continue
			}
			if id := e.identity(); seen[id] {
				errs = append(errs, fmt.Errorf("%w: %s named twice in one change", ErrInvalid, e.Target()))
			} else {
				seen[id] = true
			}
		}
	}
	return errors.Join(errs...)
}

func (c *change) marshal() ([]byte, error) {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode revocation change: %w", err)
	}
	return append(b, '\n'), nil
}

// weight is what the change adds to the generation.
func (c *change) weight() uint64 {
	return max(1, c.ImportedGeneration)
}

// named is a change with its object name.
type named struct {
	Name   string  `json:"name"`
	Change *change `json:"change"`
}

// fold applies changes (sorted by name) to an empty list: an unrevoke
// removes the entry if it is there, a revoke adds it unless the same
// revocation is there (the earlier one stays). The generation is the sum
// of the changes' weights (one each, an import its imported generation),
// Updated the latest change time. The same changes always give the same
// list, entry for entry.
func fold(changes []named) *List {
	l := &List{Format: FormatVersion, Entries: []Entry{}}
	var entries []Entry
	var gone []bool
	at := map[string]int{} // identity -> index in entries, for live ones
	for _, n := range changes {
		c := n.Change
		for _, e := range c.Unrevoke {
			if i, ok := at[e.identity()]; ok {
				gone[i] = true
				delete(at, e.identity())
			}
		}
		for _, e := range c.Revoke {
			if id := e.identity(); !has(at, id) {
				at[id] = len(entries)
				entries = append(entries, e)
				gone = append(gone, false)
			}
		}
		l.Generation += c.weight()
		if t := c.Time.UTC(); t.After(l.Updated) {
			l.Updated = t
		}
	}
	for i, e := range entries {
		if !gone[i] {
			l.Entries = append(l.Entries, e)
		}
	}
	return l
}

func has(m map[string]int, k string) bool {
	_, ok := m[k]
	return ok
}

// diff returns the change that turns before into after: entries whose
// revocation is gone are unrevoked, new ones revoked. Editing an entry in
// place (same target, other reason) is not a change a shared list can
// express and is refused.
func diff(before, after *List, now time.Time) (*change, error) {
	c := &change{Format: FormatVersion, Time: now.UTC().Truncate(time.Second)}
	inBefore, inAfter := byIdentity(before), byIdentity(after)
	for _, e := range before.Entries {
		x, ok := inAfter[e.identity()]
		switch {
		case !ok:
			c.Unrevoke = append(c.Unrevoke, e)
		case !sameEntry(x, e):
			return nil, fmt.Errorf("%w: %s: changing a revocation in place is not supported (undo it and revoke again)", ErrInvalid, e.Target())
		}
	}
	for _, e := range after.Entries {
		if _, ok := inBefore[e.identity()]; !ok {
			c.Revoke = append(c.Revoke, e)
		}
	}
	return c, nil
}

func byIdentity(l *List) map[string]Entry {
	m := make(map[string]Entry, len(l.Entries))
	for _, e := range l.Entries {
		m[e.identity()] = e
	}
	return m
}

func sameEntry(a, b Entry) bool {
	return a.Kind == b.Kind && a.CA == b.CA && a.Serial == b.Serial && a.KeyID == b.KeyID &&
		a.PublicKey == b.PublicKey && a.KeyFP == b.KeyFP && a.Reason == b.Reason && a.By == b.By && a.Time.Equal(b.Time)
}
