package app

import (
	"slices"
	"sync"
	"sync/atomic"
)

// secretSet is the growing set of secret values the log redactor looks
// for; it only grows, because work started under an old configuration may
// still log an old secret after a reload.
type secretSet struct {
	mu  sync.Mutex
	cur atomic.Pointer[[]string]
}

func (s *secretSet) add(vs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var next []string
	if p := s.cur.Load(); p != nil {
		next = slices.Clone(*p)
	}
	next = append(next, vs...)
	slices.Sort(next)
	next = slices.Compact(next)
	s.cur.Store(&next)
}

func (s *secretSet) get() []string {
	if p := s.cur.Load(); p != nil {
		return *p
	}
	return nil
}
