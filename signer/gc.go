package main

import (
	"os"
	"runtime/debug"
)

// tuneGC trades a little memory for CPU: every certificate request
// allocates ~37 KiB (TLS records, JSON, SSH marshalling) on a live heap of
// a few MiB, so at the default GOGC the collector ran several times a
// second under load. GOGC=400 cut the signer's CPU per delegated
// certificate by about 5 % (docs/benchmarks.md, signer). A soft memory
// limit keeps the larger heap bounded. GOGC and GOMEMLIMIT in the
// environment win.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(1 << 30)
	}
}
