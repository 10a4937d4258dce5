package recordings

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/postern-dev/postern/internal/asciicast"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/storage"
)

// Errors for policy decisions; test them with errors.Is.
var (
	// ErrBadID: the argument is not a session ID.
	ErrBadID = errors.New("not a session id")
	// ErrNotFound: no recording of that session within the search window.
	ErrNotFound = errors.New("no recording of this session")
	// ErrNotAllowed: the session is another person's and no role of the
	// viewer has view_recordings.
	ErrNotAllowed = errors.New("another person's session, and no role of yours has view_recordings")
)

// Defaults and bounds.
const (
	DefaultListDays  = 7
	MaxListDays      = 90
	DefaultListLimit = 20
	MaxListLimit     = 200
	// DefaultFindDays is how far back Find looks for a session ID.
	DefaultFindDays = 90
	// MaxExamined bounds the objects one listing looks at; a listing that
	// reaches it says so (Listing.Incomplete).
	MaxExamined = 2000
)

// Metadata keys written by bastion/record.
const (
	MetaSessionID = "session-id"
	MetaPerson    = "person"
	MetaNode      = "node"
	MetaLogin     = "login"
)

// Prefix is where recordings live in the store.
const Prefix = "recordings/"

// idRe is a session ID (bastion IDs are 20 lowercase hex digits),
// optionally with "-N" naming one part.
var idRe = regexp.MustCompile(`^([0-9a-f]{8,64})(?:-([1-9][0-9]{0,5}))?$`)

// keyRe is the last segment of a recording key.
var keyRe = regexp.MustCompile(`^([0-9a-f]{8,64})-([1-9][0-9]{0,5})\.cast$`)

// ParseID splits a user's argument into a session ID and an optional part
// number (0: all parts).
func ParseID(s string) (id string, part int, err error) {
	m := idRe.FindStringSubmatch(strings.ToLower(s))
	if m == nil {
		return "", 0, fmt.Errorf("%w: %q", ErrBadID, s)
	}
	if m[2] != "" {
		part, _ = strconv.Atoi(m[2])
	}
	return m[1], part, nil
}

// Viewer is the person asking, as their verified certificate says.
type Viewer struct {
	Person string   // KeyId
	Roles  []string // roles in the certificate
}

// Policy decides whose recordings a viewer may see.
type Policy struct {
	viewAll map[string]bool
}

// NewPolicy reads view_recordings from the bastion's roles.
func NewPolicy(roles []config.Role) *Policy {
	p := &Policy{viewAll: map[string]bool{}}
	for _, r := range roles {
		if r.ViewRecordings {
			p.viewAll[r.Name] = true
		}
	}
	return p
}

// ViewsAll reports whether one of v's roles has view_recordings, and
// which.
func (p *Policy) ViewsAll(v Viewer) (role string, ok bool) {
	for _, r := range v.Roles {
		if p.viewAll[r] {
			return r, true
		}
	}
	return "", false
}

// Allows decides whether v may see a recording of person. why says what
// allowed it ("own session" or "role NAME has view_recordings").
func (p *Policy) Allows(v Viewer, person string) (why string, err error) {
	if person != "" && v.Person != "" && person == v.Person {
		return "own session", nil
	}
	if r, ok := p.ViewsAll(v); ok {
		return "role " + r + " has view_recordings", nil
	}
	return "", ErrNotAllowed
}

// Part is one recording (one SSH session of a recorded connection).
type Part struct {
	Key    string
	N      int
	Size   int64
	Stored time.Time
	// From the asciicast: when it started, how long it ran, the command
	// of an exec ("" for a shell) and the terminal size (0 without one).
	Start         time.Time
	Duration      time.Duration
	Command       string
	Width, Height int
	// Err is set when the file could not be read for the fields above.
	Err error
}

// Session is the recordings of one recorded connection.
type Session struct {
	ID, Person, Node, Login string
	Parts                   []Part // by N
}

// Start is the earliest part's start.
func (s Session) Start() time.Time {
	var t time.Time
	for _, p := range s.Parts {
		if !p.Start.IsZero() && (t.IsZero() || p.Start.Before(t)) {
			t = p.Start
		}
	}
	return t
}

// Duration runs from Start to the end of the last part.
func (s Session) Duration() time.Duration {
	start := s.Start()
	var end time.Time
	for _, p := range s.Parts {
		if e := p.Start.Add(p.Duration); !p.Start.IsZero() && e.After(end) {
			end = e
		}
	}
	if start.IsZero() || end.Before(start) {
		return 0
	}
	return end.Sub(start)
}

// Catalog finds recordings in a store.
type Catalog struct {
	Store  storage.Store
	Policy *Policy
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c *Catalog) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

// ListOptions bound a listing.
type ListOptions struct {
	Days  int // today and the days before; default DefaultListDays
	Limit int // sessions; default DefaultListLimit
}

// Listing is what List found.
type Listing struct {
	Sessions []Session // newest first
	// Days searched, and whether the viewer sees everyone's.
	Days    int
	ViewAll bool
	// Incomplete: the search stopped at MaxExamined objects.
	Incomplete bool
}

// List returns the sessions v may see, recorded on the last o.Days days,
// newest first, at most o.Limit.
func (c *Catalog) List(ctx context.Context, v Viewer, o ListOptions) (Listing, error) {
	o.Days = clamp(o.Days, DefaultListDays, MaxListDays)
	o.Limit = clamp(o.Limit, DefaultListLimit, MaxListLimit)
	_, all := c.Policy.ViewsAll(v)
	out := Listing{Days: o.Days, ViewAll: all}
	examined := 0
	today := c.now().UTC()
	for d := 0; d < o.Days && len(out.Sessions) < o.Limit; d++ {
		objs, err := c.Store.List(ctx, dayPrefix(today.AddDate(0, 0, -d)))
		if err != nil {
			return out, fmt.Errorf("list recordings: %w", err)
		}
		groups := group(objs)
		// Newest stored first, so a long day stops early.
		slices.SortFunc(groups, func(a, b []storage.ObjectInfo) int { return lastStored(b).Compare(lastStored(a)) })
		var day []Session
		for _, g := range groups {
			if len(out.Sessions)+len(day) >= o.Limit {
				break
			}
			if examined >= MaxExamined {
				out.Incomplete = true
				break
			}
			examined += len(g)
			s, err := c.session(ctx, v, g)
			if errors.Is(err, ErrNotAllowed) {
				continue
			}
			if err != nil {
				return out, err
			}
			c.describe(ctx, &s)
			day = append(day, s)
		}
		slices.SortStableFunc(day, func(a, b Session) int { return b.Start().Compare(a.Start()) })
		out.Sessions = append(out.Sessions, day...)
		if out.Incomplete {
			break
		}
	}
	return out, nil
}

// Find returns session id's recordings (only part n when n > 0) if v may
// see them. It looks back DefaultFindDays days. A refused session is
// returned too (for the audit event) with ErrNotAllowed.
func (c *Catalog) Find(ctx context.Context, v Viewer, id string, n int) (Session, string, error) {
	if got, part, err := ParseID(id); err != nil || part != 0 || got != id {
		return Session{}, "", fmt.Errorf("%w: %q", ErrBadID, id)
	}
	today := c.now().UTC()
	for d := 0; d < DefaultFindDays; d++ {
		objs, err := c.Store.List(ctx, dayPrefix(today.AddDate(0, 0, -d))+id+"-")
		if err != nil {
			return Session{}, "", fmt.Errorf("find recording %s: %w", id, err)
		}
		groups := group(objs)
		for _, g := range groups {
			if sessionOf(g[0].Key) != id {
				continue
			}
			if n > 0 {
				g = slices.DeleteFunc(g, func(o storage.ObjectInfo) bool { _, k := parseKey(o.Key); return k != n })
				if len(g) == 0 {
					return Session{}, "", fmt.Errorf("%w: %s has no part %d", ErrNotFound, id, n)
				}
			}
			s, err := c.session(ctx, v, g)
			if err != nil {
				return s, "", err
			}
			why, _ := c.Policy.Allows(v, s.Person)
			c.describe(ctx, &s)
			return s, why, nil
		}
	}
	return Session{}, "", fmt.Errorf("%w %s in the last %d days", ErrNotFound, id, DefaultFindDays)
}

// Open opens one part of a session Find returned.
func (c *Catalog) Open(ctx context.Context, p Part) (*asciicast.Reader, io.Closer, error) {
	rc, err := c.Store.Get(ctx, p.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("open recording %s: %w", p.Key, err)
	}
	r, err := asciicast.NewReader(rc)
	if err != nil {
		rc.Close()
		return nil, nil, fmt.Errorf("open recording %s: %w", p.Key, err)
	}
	return r, rc, nil
}

// session reads the metadata of a group's objects and checks access to
// every one of them.
func (c *Catalog) session(ctx context.Context, v Viewer, g []storage.ObjectInfo) (Session, error) {
	var s Session
	for i, o := range g {
		info, err := c.Store.Stat(ctx, o.Key)
		if err != nil {
			return s, fmt.Errorf("read recording metadata %s: %w", o.Key, err)
		}
		m := info.Meta
		if i == 0 {
			s = Session{ID: sessionOf(o.Key), Person: m[MetaPerson], Node: m[MetaNode], Login: m[MetaLogin]}
		}
		if _, err := c.Policy.Allows(v, m[MetaPerson]); err != nil {
			return s, err
		}
		_, n := parseKey(o.Key)
		s.Parts = append(s.Parts, Part{Key: o.Key, N: n, Size: info.Size, Stored: info.ModTime})
	}
	return s, nil
}

// describe fills the parts' start, duration, command and size from their
// asciicast, reading each file through once.
func (c *Catalog) describe(ctx context.Context, s *Session) {
	for i := range s.Parts {
		p := &s.Parts[i]
		r, cl, err := c.Open(ctx, *p)
		if err != nil {
			p.Err = err
			continue
		}
		h := r.Header
		p.Command, p.Width, p.Height = h.Command, h.Width, h.Height
		if h.Timestamp > 0 {
			p.Start = time.Unix(h.Timestamp, 0).UTC()
		}
		last := 0.0
		for {
			e, err := r.Next()
			if err != nil {
				if err != io.EOF {
					p.Err = err
				}
				break
			}
			last = e.Time
		}
		cl.Close()
		p.Duration = time.Duration(last * float64(time.Second))
	}
}

func dayPrefix(t time.Time) string { return Prefix + t.UTC().Format("2006/01/02") + "/" }

// parseKey returns the session ID and part number of a recording key, ""
// for other objects.
func parseKey(key string) (string, int) {
	m := keyRe.FindStringSubmatch(path.Base(key))
	if m == nil {
		return "", 0
	}
	n, _ := strconv.Atoi(m[2])
	return m[1], n
}

func sessionOf(key string) string { id, _ := parseKey(key); return id }

// group collects recording objects by session, parts in order; other
// objects are skipped.
func group(objs []storage.ObjectInfo) [][]storage.ObjectInfo {
	idx := map[string]int{}
	var out [][]storage.ObjectInfo
	for _, o := range objs {
		id, _ := parseKey(o.Key)
		if id == "" {
			continue
		}
		i, ok := idx[id]
		if !ok {
			i = len(out)
			idx[id] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], o)
	}
	for _, g := range out {
		slices.SortFunc(g, func(a, b storage.ObjectInfo) int {
			_, na := parseKey(a.Key)
			_, nb := parseKey(b.Key)
			return cmp.Compare(na, nb)
		})
	}
	return out
}

func lastStored(g []storage.ObjectInfo) time.Time {
	var t time.Time
	for _, o := range g {
		if o.ModTime.After(t) {
			t = o.ModTime
		}
	}
	return t
}

func clamp(v, def, max int) int {
	if v <= 0 {
		return def
	}
	return min(v, max)
}
