package proxy

import (
	"errors"
	"io"
	"sync"
	"time"
)

// errClosedEarly is what a tapped body reports when it was closed before
// io.EOF: the client went away or goproxy stopped copying.
var errClosedEarly = errors.New("body closed before EOF")

// tapBody wraps an upstream response body while goproxy copies it to the
// client. It does two independent jobs:
//
//   - with capture set, it keeps a copy of at most max bytes and, once, at
//     io.EOF or Close, hands it to p.tapped together with the way the body
//     ended (io.EOF means complete);
//   - with flush set (bodies of unknown length), it flushes what the client
//     has been written before every read that may block on the upstream, so
//     that a slow list streams instead of waiting in the server's buffers.
//
// It is installed at the transport, not in an OnResponse hook: goproxy
// deletes Content-Length when a hook replaces resp.Body, and it does not
// when the body it received is already this wrapper.
type tapBody struct {
	rc    io.ReadCloser
	flush func()
	dirty bool // bytes were handed out since the last flush

	capture   bool
	max       int64
	buf       []byte
	truncated bool
	once      sync.Once
	// Where a captured body goes (p.tapped); fields rather than a closure
	// so that a tapped response costs no extra allocation.
	p     *Proxy
	route route
	key   string
	at    time.Time
}

// Read implements io.Reader.
func (b *tapBody) Read(p []byte) (int, error) {
	if b.flush != nil && b.dirty {
		b.flush()
		b.dirty = false
	}
	n, err := b.rc.Read(p)
	if n > 0 {
		b.dirty = true
		if b.capture && !b.truncated {
			if int64(len(b.buf))+int64(n) > b.max {
				// Too large to tap: stop copying and free what we have.
				b.truncated = true
				putBuf(b.buf)
				b.buf = nil
			} else {
				b.buf = append(b.buf, p[:n]...)
			}
		}
	}
	if err != nil {
		b.finish(err)
	}
	return n, err
}

// Close implements io.Closer. A body closed before EOF is not complete.
func (b *tapBody) Close() error {
	err := b.rc.Close()
	b.finish(errClosedEarly)
	return err
}

func (b *tapBody) finish(err error) {
	b.once.Do(func() {
		if b.capture && b.p != nil {
			buf := b.buf
			b.buf = nil
			b.p.tapped(b.route, b.key, b.at, buf, b.truncated, err)
		}
	})
}
