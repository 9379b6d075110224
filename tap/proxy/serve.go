package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ShutdownTimeout bounds the graceful shutdown in Serve: in-flight requests
// (e.g. a long list download) get this long to finish.
const ShutdownTimeout = 30 * time.Second

// Serve listens on addr and serves h until ctx is done, then shuts down
// gracefully. It returns nil after a clean shutdown.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("proxy listen on %s: %w", addr, err)
	}
	return ServeListener(ctx, ln, h, log)
}

// ServeListener is Serve on an existing listener (tests bind to :0). It
// closes ln.
func ServeListener(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	if log == nil {
		log = discard
	}
	srv := &http.Server{
		Handler: h,
		// No ReadTimeout/WriteTimeout: request bodies (workbook YAML) and
		// list responses may legitimately be slow; headers may not.
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("proxy listening", "addr", ln.Addr().String())

	select {
	case err := <-errc:
		return fmt.Errorf("proxy serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		log.Warn("proxy server stopped with an error", "err", serr)
	}
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("proxy graceful shutdown did not finish within %s: %w", ShutdownTimeout, err)
	}
	log.Info("proxy stopped")
	return nil
}
