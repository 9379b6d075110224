package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// ShutdownTimeout bounds the graceful shutdown in Serve: in-flight requests
// (e.g. a long list download) get this long to finish.
const ShutdownTimeout = 30 * time.Second

// Defaults of ServeOptions (and of config.Proxy's max_connections and
// idle_timeout).
const (
	DefaultMaxConnections = 1024
	DefaultIdleTimeout    = 2 * time.Minute
)

// ServeOptions tune a server started by ServeWith. Zero values take the
// documented defaults.
type ServeOptions struct {
	// MaxConnections caps the client connections open at once: each holds
	// buffers and a goroutine whether it is busy or idle. Connection
	// MaxConnections+1 is not refused; it waits in the listen backlog
	// until another one closes, so a burst is served late rather than
	// failed. Default DefaultMaxConnections (1024); negative: no cap.
	MaxConnections int
	// IdleTimeout closes a keep-alive client connection that has been
	// idle this long between requests, which frees its place under
	// MaxConnections. Default DefaultIdleTimeout (2m): longer than Go
	// clients' own 90s, so the client usually closes first and never
	// sends a request on a connection the server is closing.
	IdleTimeout time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Serve listens on addr and serves h until ctx is done, then shuts down
// gracefully. It returns nil after a clean shutdown.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("proxy listen on %s: %w", addr, err)
	}
	return ServeListener(ctx, ln, h, log)
}

// ServeListener is ServeWith with the default options and log.
func ServeListener(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	return ServeWith(ctx, ln, h, ServeOptions{Logger: log})
}

// ServeWith serves h on ln (tests bind to :0) until ctx is done, then shuts
// down gracefully; it returns nil after a clean shutdown. It closes ln.
func ServeWith(ctx context.Context, ln net.Listener, h http.Handler, o ServeOptions) error {
	log := o.Logger
	if log == nil {
		log = discard
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = DefaultMaxConnections
	}
	addr := ln.Addr()
	if o.MaxConnections > 0 {
		ln = netutil.LimitListener(ln, o.MaxConnections)
	}
	srv := &http.Server{
		Handler: h,
		// No ReadTimeout/WriteTimeout: request bodies (workbook YAML) and
		// list responses may legitimately be slow; headers may not.
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       o.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("proxy listening", "addr", addr.String(), "max_connections", o.MaxConnections)

	select {
	case err := <-errc:
		return fmt.Errorf("proxy serve on %s: %w", addr, err)
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
