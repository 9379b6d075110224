package app

import (
	"os"
	"runtime/debug"
)

// DefaultGCPercent is the garbage collector target Run sets when the
// environment does not choose one (GOGC unset).
//
// Why: mistral-tap's live heap is small (a few MiB plus ~200 B per tracked
// entity) while every proxied request allocates ~14 KiB (net/http and
// goproxy), so with Go's default of 100 the collector ran ~70 times a second
// under load on the measurement box (docs/performance.md), and its mark
// workers, assists and background sweeper competed with the proxy for the
// same cores. 400 lets the heap grow to five times the live heap between
// collections: a few tens of MiB more for a sidecar, a fraction of the GC
// work. GOGC and GOMEMLIMIT in the environment are honoured as usual (a
// GOMEMLIMIT bounds the larger heap where the container has a limit).
const DefaultGCPercent = 400

// tuneGC applies DefaultGCPercent unless GOGC is set. It is process-wide,
// so Run calls it once at start; doing it again is harmless.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	debug.SetGCPercent(DefaultGCPercent)
}
