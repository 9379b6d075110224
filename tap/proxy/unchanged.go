package proxy

import (
	"hash/maphash"
	"sync"
)

// maxLastBodies bounds lastBodies; when full it starts over, which only
// costs a re-parse.
const maxLastBodies = 4096

// lastBodies skips parsing a tapped body that is byte-identical to the
// last one parsed for the same request (method and target). Clients and
// dashboards poll the same lists; parsing a list of 1,000 executions costs
// ~100× what proxying it does, and an identical body cannot tell the
// tracker anything new: every resource in it is as recent as what the
// tracker already holds (stale), or older than its horizon (history).
type lastBodies struct {
	once sync.Once
	seed maphash.Seed
	mu   sync.Mutex
	m    map[string]bodySum
}

type bodySum struct {
	sum uint64
	n   int
}

// unchanged reports whether body equals the last body recorded for key,
// and records it otherwise. Hashing runs at several GB/s, far cheaper than
// decoding.
func (l *lastBodies) unchanged(key string, body []byte) bool {
	l.once.Do(func() { l.seed = maphash.MakeSeed(); l.m = map[string]bodySum{} })
	s := bodySum{maphash.Bytes(l.seed, body), len(body)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev, ok := l.m[key]; ok && prev == s {
		return true
	}
	if len(l.m) >= maxLastBodies {
		clear(l.m)
	}
	l.m[key] = s
	return false
}
