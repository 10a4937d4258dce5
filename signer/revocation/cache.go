package revocation

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/postern-dev/postern/internal/krl"
)

// Snapshot is the list as published at one generation.
type Snapshot struct {
	List *List
	// KRL is the binary OpenSSH KRL of List.
	KRL []byte
	// Checker is List as a parsed KRL, built once per snapshot, to check
	// certificates with (read-only: safe for concurrent use).
	Checker *krl.KRL
	// ETag identifies KRL (quoted, for the ETag header).
	ETag string
	// ListETag identifies the JSON form of List (public form; admins' full
	// form appends "-full").
	ListETag string
}

// Cache serves the current list, re-reading the store only when its stamp
// changed, so revocations made by another process are picked up on the
// next request.
type Cache struct {
	Store Store

	mu    sync.Mutex
	stamp string
	snap  *Snapshot
}

// Current returns the snapshot of the stored list.
func (c *Cache) Current(ctx context.Context) (*Snapshot, error) {
	stamp, err := c.Store.Stamp(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.snap != nil && stamp == c.stamp {
		return c.snap, nil
	}
	l, err := c.Store.Load(ctx)
	if err != nil {
		return nil, err
	}
	snap, err := NewSnapshot(l)
	if err != nil {
		return nil, err
	}
	c.stamp, c.snap = stamp, snap
	return snap, nil
}

// NewSnapshot encodes l.
func NewSnapshot(l *List) (*Snapshot, error) {
	k, err := l.KRL()
	if err != nil {
		return nil, err
	}
	b, err := k.Marshal()
	if err != nil {
		return nil, fmt.Errorf("encode KRL: %w", err)
	}
	j, err := json.Marshal(l.Wire(true))
	if err != nil {
		return nil, err
	}
	return &Snapshot{
		List:     l,
		KRL:      b,
		Checker:  k,
		ETag:     fmt.Sprintf(`"krl-%d-%s"`, l.Generation, hashOf(b)),
		ListETag: fmt.Sprintf(`"list-%d-%s"`, l.Generation, hashOf(j)),
	}, nil
}
