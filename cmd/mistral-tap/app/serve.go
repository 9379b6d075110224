package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// endpointShutdownTimeout bounds how long the admin and ops servers wait for
// in-flight requests when they stop; their requests are small and quick.
const endpointShutdownTimeout = 5 * time.Second

// serve runs one of mistral-tap's own HTTP endpoints (admin API, ops) on ln
// until ctx ends, then shuts it down gracefully. Unlike the proxy, these
// serve small requests and responses, so whole-request timeouts apply: a
// slow client cannot hold a connection open.
func serve(ctx context.Context, name string, ln net.Listener, h http.Handler, log *slog.Logger) error {
	log = log.With("component", name)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info(name+" listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), endpointShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		log.Warn(name+" server stopped with an error", "err", serr)
	}
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("graceful shutdown did not finish within %s: %w", endpointShutdownTimeout, err)
	}
	log.Info(name + " stopped")
	return nil
}
