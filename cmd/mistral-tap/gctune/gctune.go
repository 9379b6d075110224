// Package gctune sets the Go runtime's process-wide garbage-collector
// target and soft memory limit for a mistral-tap process. The command calls
// Apply once at start; code that embeds app.Run (tests, the demo) does not,
// because these settings belong to the process, not to a component.
package gctune

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
)

// DefaultGCPercent is the garbage collector target Apply sets when the
// environment does not choose one (GOGC unset).
//
// Why: mistral-tap's live heap is small (a few MiB plus ~200 B per tracked
// entity) while every proxied request allocates ~14 KiB (net/http and
// goproxy), so with Go's default of 100 the collector ran ~70 times a second
// under load on the measurement box (docs/performance.md), and its mark
// workers, assists and background sweeper competed with the proxy for the
// same cores. 400 lets the heap grow to five times the live heap between
// collections: a few tens of MiB more for a sidecar, a fraction of the GC
// work. GOGC and GOMEMLIMIT in the environment are honoured as usual; in a
// container with a memory limit and no GOMEMLIMIT, Apply sets a soft limit
// itself (memoryLimitShare).
const DefaultGCPercent = 400

// Apply sets DefaultGCPercent unless GOGC is set, and the soft memory limit
// from the cgroup unless GOMEMLIMIT is set, and logs the limit it chose.
// Calling it again is harmless.
func Apply(log *slog.Logger) {
	tuneGC()
	if cgroup, soft := tuneMemoryLimit(); soft > 0 && log != nil {
		log.Info("Go memory limit set from the container's (GOMEMLIMIT unset)", "cgroup_limit_bytes", cgroup, "soft_limit_bytes", soft)
	}
}

// tuneGC applies DefaultGCPercent unless GOGC is set.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	debug.SetGCPercent(DefaultGCPercent)
}

// memoryLimitShare is the share of the container's memory limit that Apply
// gives the Go runtime as its soft limit when GOMEMLIMIT is not set.
//
// Why: DefaultGCPercent lets the heap grow to five times the live heap, and
// under heavy list traffic (64 in-flight 512 KiB capture buffers) that
// reached 150-180 MiB RSS in the load tool (docs/performance.md). With a
// soft limit the collector runs earlier as the limit nears, instead of the
// kernel killing the sidecar; the remaining fifth covers goroutine stacks
// and SQLite's caches, which live outside the Go heap.
const memoryLimitShare = 0.8

// tuneMemoryLimit sets the runtime's soft memory limit to memoryLimitShare
// of the cgroup's limit, unless GOMEMLIMIT is set or there is no limit. It
// returns the cgroup limit and the soft limit set (0, 0: none).
func tuneMemoryLimit() (cgroup, soft int64) {
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		return 0, 0
	}
	limit, ok := cgroupMemoryLimit("/")
	if !ok {
		return 0, 0
	}
	soft = int64(float64(limit) * memoryLimitShare)
	debug.SetMemoryLimit(soft)
	return limit, soft
}

// cgroupMemoryLimit reads the memory limit of this process's cgroup below
// root ("/" outside tests): cgroup v2's memory.max, else v1's
// memory.limit_in_bytes, at the process's own cgroup path (from
// /proc/self/cgroup) or at the mount's top (where a container with its own
// cgroup namespace sees its cgroup). No file, "max", or v1's "unlimited"
// (MaxInt64 rounded down to a page) is no limit.
func cgroupMemoryLimit(root string) (int64, bool) {
	var v2, v1 string
	if b, err := os.ReadFile(filepath.Join(root, "proc/self/cgroup")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) != 3 {
				continue
			}
			switch {
			case parts[0] == "0" && parts[1] == "":
				v2 = parts[2]
			case slices.Contains(strings.Split(parts[1], ","), "memory"):
				v1 = parts[2]
			}
		}
	}
	candidates := []string{
		filepath.Join(root, "sys/fs/cgroup", v2, "memory.max"),
		filepath.Join(root, "sys/fs/cgroup/memory.max"),
		filepath.Join(root, "sys/fs/cgroup/memory", v1, "memory.limit_in_bytes"),
		filepath.Join(root, "sys/fs/cgroup/memory/memory.limit_in_bytes"),
	}
	for _, p := range candidates {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n >= 1<<62 {
			return 0, false
		}
		return n, true
	}
	return 0, false
}
