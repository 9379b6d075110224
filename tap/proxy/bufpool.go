package proxy

import (
	"math/bits"
	"sync"
)

// Capture buffers are recycled in power-of-two size classes from
// minPooledBuf to maxPooledBuf: a busy client listing executions would
// otherwise allocate a list-sized buffer per response. Bigger buffers are
// left to the GC so the pools never pin MaxTapBody-sized memory.
//
// Why classes: with one pool, a buffer too small for the response was put
// back and a new one allocated, so every miss added a buffer to the pool
// for good (until the next GC); with lists of 100 and of 1,000 mixed, the
// pool grew by a 450 KB buffer per request and the heap goal with it (3 GB
// RSS in the loadtool's list workloads). A class pool only ever hands out
// buffers big enough, so it holds at most what is in use concurrently.
const (
	minPooledShift = 15 // 32 KiB
	maxPooledShift = 20 // 1 MiB
	minPooledBuf   = 1 << minPooledShift
	maxPooledBuf   = 1 << maxPooledShift
)

// bufPools[i] holds buffers with a capacity of at least 1<<(minPooledShift+i).
var bufPools [maxPooledShift - minPooledShift + 1]sync.Pool

// classFor is the smallest class whose buffers hold n bytes (n <= maxPooledBuf).
func classFor(n int64) int {
	if n <= minPooledBuf {
		return 0
	}
	return bits.Len64(uint64(n-1)) - minPooledShift
}

// getBuf returns an empty buffer with room for at least n bytes (n <= 0:
// unknown, the smallest class; append grows it).
func getBuf(n int64) []byte {
	if n > maxPooledBuf {
		return make([]byte, 0, n)
	}
	c := classFor(n)
	if bp, ok := bufPools[c].Get().(*[]byte); ok {
		return (*bp)[:0]
	}
	return make([]byte, 0, 1<<(minPooledShift+c))
}

// putBuf returns a buffer to the largest class it can serve; the caller
// must not use it again.
func putBuf(b []byte) {
	if cap(b) < minPooledBuf || cap(b) > maxPooledBuf {
		return
	}
	c := bits.Len64(uint64(cap(b))) - 1 - minPooledShift // floor(log2 cap)
	b = b[:0]
	bufPools[c].Put(&b)
}
