package main

import (
	"context"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"
)

func TestShouldRelease(t *testing.T) {
	base := heapState{allocs: 100 << 20, live: 40 << 20, objects: 40 << 20}
	for _, tc := range []struct {
		name string
		now  heapState
		want bool
	}{
		{"nothing to give back", heapState{allocs: base.allocs + 1000, live: 40 << 20, objects: 41 << 20}, false},
		{"garbage, quiet", heapState{allocs: base.allocs + 1000, live: 40 << 20, objects: 60 << 20}, true},
		{"free memory kept, quiet", heapState{allocs: base.allocs, live: 40 << 20, objects: 40 << 20, free: 30 << 20}, true},
		{"garbage, busy", heapState{allocs: base.allocs + 50<<20, live: 40 << 20, objects: 90 << 20}, false},
		{"below an eighth of a large live heap", heapState{allocs: base.allocs, live: 800 << 20, objects: 860 << 20}, false},
		{"above an eighth of a large live heap", heapState{allocs: base.allocs, live: 800 << 20, objects: 900 << 20, free: 10 << 20}, true},
	} {
		if got := shouldRelease(base, tc.now); got != tc.want {
			t.Errorf("%s: shouldRelease = %v, want %v", tc.name, got, tc.want)
		}
	}
}

var sink [][]byte

// After a burst of garbage the loop releases once, then stays quiet.
func TestReleaseWhenIdle(t *testing.T) {
	// No collection on its own: the garbage stays until released.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	runtime.GC()
	var calls atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		releaseWhenIdle(ctx, 50*time.Millisecond, func() { calls.Add(1); debug.FreeOSMemory() })
	}()
	defer func() { cancel(); <-done }()
	for range 64 {
		sink = append(sink, make([]byte, 1<<20)) // 64 MiB, then dropped
	}
	sink = nil
	deadline := time.Now().Add(10 * time.Second)
	for calls.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("64 MiB of garbage was not released")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // six more quiet ticks
	if n := calls.Load(); n != 1 {
		t.Fatalf("released %d times, want once per quiet spell", n)
	}
}
