package main

import (
	"context"
	"runtime/metrics"
	"time"
)

// The bastion runs with GOGC=400 (tuneGC): cheap on CPU while it forwards
// bulk data, but Go collects only when it allocates, so the garbage of a
// busy spell (every connection's key exchange and authentication leaves
// ~50 KiB of it) stays in the process for as long as the bastion then sits
// quiet, up to four times the live heap. With thousands of idle sessions
// that is most of its memory (docs/benchmarks.md, idle sessions).
// releaseWhenIdle collects it and returns it to the operating system once
// the allocation rate has dropped: one collection per quiet spell, none
// while data flows.

const (
	// idleGCEvery is how often the allocation rate is looked at.
	idleGCEvery = time.Second
	// idleAllocRate: allocating less than this in idleGCEvery is quiet.
	idleAllocRate = 1 << 20
	// idleMinReclaim: less reclaimable memory than this (or an eighth of
	// the live heap, whichever is larger) is not worth a collection.
	idleMinReclaim = 1 << 20
)

// heapState is what releaseWhenIdle decides on, in bytes.
type heapState struct {
	allocs  uint64 // allocated since the start (cumulative)
	live    uint64 // live heap at the last collection
	objects uint64 // heap objects now, live or garbage not yet collected
	free    uint64 // free heap memory not yet returned to the OS
}

func readHeapState(s []metrics.Sample) heapState {
	metrics.Read(s)
	v := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	return heapState{allocs: v(0), live: v(1), objects: v(2), free: v(3)}
}

// shouldRelease: quiet since prev, and enough to give back.
func shouldRelease(prev, now heapState) bool {
	if now.allocs-prev.allocs >= idleAllocRate {
		return false
	}
	var garbage uint64
	if now.objects > now.live {
		garbage = now.objects - now.live
	}
	return garbage+now.free >= max(idleMinReclaim, now.live/8)
}

// releaseWhenIdle runs until ctx ends; release is debug.FreeOSMemory
// outside tests.
func releaseWhenIdle(ctx context.Context, every time.Duration, release func()) {
	samples := []metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
	}
	t := time.NewTicker(every)
	defer t.Stop()
	prev := readHeapState(samples)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := readHeapState(samples)
		if shouldRelease(prev, now) {
			release()
			now = readHeapState(samples)
		}
		prev = now
	}
}
