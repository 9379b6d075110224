package notifier

import (
	"fmt"
	"log/slog"
	"sync"
)

// storeHealth remembers whether the store's latest commit failed, and logs
// each change of that condition once: a full disk fails every commit, and
// a line per failed commit would flood the log.
type storeHealth struct {
	log *slog.Logger

	mu  sync.Mutex
	err error
}

// observe records a commit's result.
func (h *storeHealth) observe(err error) {
	h.mu.Lock()
	was := h.err
	h.err = err
	h.mu.Unlock()
	switch {
	case err != nil && was == nil:
		h.log.Error("store cannot commit; delivery outcomes are kept in memory and committed again with back-off", "err", err)
	case err == nil && was != nil:
		h.log.Info("store commits again")
	}
}

// get returns nil while commits succeed, else the latest failure.
func (h *storeHealth) get() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return fmt.Errorf("store cannot commit: %w", h.err)
	}
	return nil
}
