package revocation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/krl"
)

// Errors of [Watcher.Check], for errors.Is.
var (
	// ErrRevoked: the key or certificate is on the list. It wraps
	// krl.ErrRevoked too.
	ErrRevoked = errors.New("revoked")
	// ErrStale: the list is older than the maximum staleness allowed.
	ErrStale = errors.New("revocation list stale")
)

// List is one version of the KRL in force.
type List struct {
	KRL *krl.KRL
	// Generation is the KRL's version (the signer's list generation).
	Generation uint64
	raw        []byte
	tag        string
}

// Check returns an error wrapping ErrRevoked (and krl.ErrRevoked) when the
// list revokes pub. A nil list revokes nothing.
func (l *List) Check(pub ssh.PublicKey) error {
	if l == nil {
		return nil
	}
	if err := l.KRL.Check(pub); err != nil {
		return fmt.Errorf("%w: %w (KRL generation %d)", ErrRevoked, err, l.Generation)
	}
	return nil
}

// Watcher keeps the current KRL from a Source. The zero value is not
// usable; set Source and call Run (or Refresh).
type Watcher struct {
	// Source delivers the KRL. Required.
	Source Source
	// Interval between refreshes, jittered by ±20%. Default 2s.
	Interval time.Duration
	// MaxStale, when positive, makes Check refuse every key once the last
	// successful refresh (or the start, before the first) is older than
	// this. Zero keeps the last good list in force indefinitely.
	MaxStale time.Duration
	// OnChange runs after a new list is in force (from Refresh's
	// goroutine), with the new and the previous list (nil at first).
	OnChange func(cur, prev *List)
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time

	cur       atomic.Pointer[List]
	okAt      atomic.Int64 // unix nanos of the last successful refresh (or start)
	mu        sync.Mutex   // serialises Refresh
	failing   bool
	lastWarn  time.Time
	startOnce sync.Once
}

func (w *Watcher) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

func (w *Watcher) log() *slog.Logger {
	if w.Logger != nil {
		return w.Logger
	}
	return slog.Default()
}

func (w *Watcher) start() {
	w.startOnce.Do(func() {
		if w.okAt.Load() == 0 {
			w.okAt.Store(w.now().UnixNano())
		}
	})
}

// Current returns the list in force, nil before the first one.
func (w *Watcher) Current() *List { return w.cur.Load() }

// Check returns nil when pub may authenticate under the list in force; an
// error wrapping ErrRevoked (and krl.ErrRevoked) when the list revokes it;
// an error wrapping ErrStale when the list is too old (see MaxStale).
func (w *Watcher) Check(pub ssh.PublicKey) error {
	w.start()
	l := w.cur.Load()
	if err := l.Check(pub); err != nil {
		return err
	}
	if w.MaxStale > 0 {
		ok := time.Unix(0, w.okAt.Load())
		if age := w.now().Sub(ok); age > w.MaxStale {
			if l == nil {
				return fmt.Errorf("%w: no revocation list fetched in %s", ErrStale, age.Round(time.Second))
			}
			return fmt.Errorf("%w: last refreshed %s ago (generation %d)", ErrStale, age.Round(time.Second), l.Generation)
		}
	}
	return nil
}

// Refresh fetches the list once and, when it is new, puts it in force and
// calls OnChange. A failure keeps the list in force.
func (w *Watcher) Refresh(ctx context.Context) error {
	w.start()
	w.mu.Lock()
	defer w.mu.Unlock()
	prev := w.cur.Load()
	tag := ""
	if prev != nil {
		tag = prev.tag
	}
	f, err := w.Source.Fetch(ctx, tag)
	if err == nil && !f.NotModified {
		var next *List
		next, err = w.accept(prev, f)
		if err == nil && next != nil {
			w.cur.Store(next)
			w.log().Info("revocation list in force", "generation", next.Generation, "source", w.Source.String(),
				"previous", generationOf(prev), "empty", next.KRL.Empty())
			if w.OnChange != nil {
				w.OnChange(next, prev)
			}
		}
	}
	w.noteResult(err)
	return err
}

// accept parses a fetched list; nil without error means "same list, new
// tag" (kept in force with the new tag).
func (w *Watcher) accept(prev *List, f Fetched) (*List, error) {
	k, err := krl.Parse(f.Data)
	if err != nil {
		return nil, fmt.Errorf("parse KRL from %s: %w", w.Source, err)
	}
	if f.Generation != 0 && f.Generation != k.Version {
		return nil, fmt.Errorf("KRL from %s: generation %d announced, version %d inside", w.Source, f.Generation, k.Version)
	}
	next := &List{KRL: k, Generation: k.Version, raw: f.Data, tag: f.Tag}
	if prev == nil {
		return next, nil
	}
	switch {
	case k.Version < prev.Generation:
		return nil, fmt.Errorf("KRL from %s: generation %d is %w (%d)", w.Source, k.Version, errGoingBack, prev.Generation)
	case k.Version == prev.Generation && bytes.Equal(f.Data, prev.raw):
		same := *prev
		same.tag = f.Tag
		w.cur.Store(&same)
		return nil, nil
	}
	return next, nil
}

// noteResult tracks freshness and logs failures: the first at warn, then
// once a minute, and the recovery.
func (w *Watcher) noteResult(err error) {
	now := w.now()
	if err == nil {
		w.okAt.Store(now.UnixNano())
		if w.failing {
			w.log().Info("revocation list refreshed again", "source", w.Source.String(), "generation", generationOf(w.cur.Load()))
		}
		w.failing = false
		return
	}
	since := time.Unix(0, w.okAt.Load())
	if !w.failing || now.Sub(w.lastWarn) >= time.Minute {
		w.log().Warn("cannot refresh the revocation list: keeping the last good one", "source", w.Source.String(),
			"err", err, "generation", generationOf(w.cur.Load()), "stale_for", now.Sub(since).Round(time.Second).String())
		w.lastWarn = now
	} else {
		w.log().Debug("cannot refresh the revocation list", "err", err)
	}
	w.failing = true
}

// Run refreshes every Interval (±20%) until ctx is done. Call Refresh
// first to have a list before serving.
func (w *Watcher) Run(ctx context.Context) {
	w.start()
	iv := w.Interval
	if iv <= 0 {
		iv = 2 * time.Second
	}
	t := time.NewTimer(jitter(iv))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, max(iv, 10*time.Second))
		_ = w.Refresh(rctx)
		cancel()
		t.Reset(jitter(iv))
	}
}

// jitter spreads polls of many bastions: d ±20%.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func generationOf(l *List) any {
	if l == nil {
		return "none"
	}
	return l.Generation
}
