package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// discard is the logger used when none is given.
var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// goproxyLogger adapts goproxy's Printf-only Logger to slog at debug level:
// goproxy prints its WARN lines even when not verbose, and they are about
// single client connections, not the service. goproxy's messages carry
// methods, hosts and URLs, never header values.
type goproxyLogger struct{ log *slog.Logger }

// Printf implements goproxy.Logger.
func (g goproxyLogger) Printf(format string, v ...any) {
	if !g.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	g.log.Debug(strings.TrimSpace(fmt.Sprintf(format, v...)), "component", "goproxy")
}
