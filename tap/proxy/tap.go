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

// tapBody wraps every upstream response body that may have bytes while
// goproxy copies it to the client. It has three independent jobs:
//
//   - always, it records the error that cut the upstream body short, so
//     that ServeHTTP aborts the client's response: goproxy only logs a
//     failed copy, and the server would then end the response as if it
//     were complete (a terminating chunk after a cut chunked body);
//   - with capture set, it keeps a copy of at most max bytes and, once, at
//     io.EOF or Close, hands it to p.tapped together with the way the body
//     ended (io.EOF means complete);
//   - with flush set (bodies of unknown length), it flushes what the client
//     has been written before every read that may block on the upstream, so
//     that a slow list streams instead of waiting in the server's buffers.
//
// goproxy's io.Copy uses WriteTo, which does all three without a second copy
// of the bytes; Read does the same for any other reader of the body.
//
// It is installed at the transport, not in an OnResponse hook: goproxy
// deletes Content-Length when a hook replaces resp.Body, and it does not
// when the body it received is already this wrapper.
type tapBody struct {
	rc    io.ReadCloser
	flush func()
	dirty bool // bytes were handed out since the last flush
	// upErr is the error that ended reading the upstream body, io.EOF
	// aside: the body was cut short.
	upErr error

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
		b.ended(err)
	}
	return n, err
}

// Close implements io.Closer. A body closed before EOF is not complete.
func (b *tapBody) Close() error {
	err := b.rc.Close()
	b.finish(errClosedEarly)
	return err
}

// ended records how reading the upstream body ended, then finishes.
func (b *tapBody) ended(err error) {
	if err != io.EOF {
		b.upErr = err
	}
	b.finish(err)
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

// minRead is the least room WriteTo reads into while capturing: with less
// left, the capture buffer grows first.
const minRead = 4 << 10

// scratchSize is WriteTo's read size once nothing is captured (a stream
// that is not tapped, or a body past max).
const scratchSize = 64 << 10

// WriteTo implements io.WriterTo, which goproxy's io.Copy prefers to any
// copy loop of its own. While capturing, the upstream body is read straight
// into the capture buffer and written to the client from there: the tap
// costs no second copy of the bytes, and each read takes as much as the
// socket holds instead of io.Copy's 32 KiB, so a list of 1,000 executions
// crosses the proxy in a few large reads and writes rather than 15 of each.
// Every read is written out before the next one starts, so a slow upstream
// still streams.
func (b *tapBody) WriteTo(w io.Writer) (int64, error) {
	if b.capture && b.p != nil {
		// The last bytes reach the client before finish hands the body
		// to the parser (it is the buffer they are written from): count
		// the copy as in flight so that Proxy.Wait covers it.
		b.p.inflight.Add(1)
		defer b.p.inflight.Done()
	}
	var written int64
	var scratch []byte
	defer func() {
		if scratch != nil {
			putBuf(scratch)
		}
	}()
	for {
		if b.flush != nil && b.dirty {
			b.flush()
			b.dirty = false
		}
		capturing := b.capture && !b.truncated
		var p []byte
		if capturing {
			if cap(b.buf)-len(b.buf) < minRead {
				b.grow()
			}
			p = b.buf[len(b.buf):cap(b.buf)]
		} else {
			if scratch == nil {
				scratch = getBuf(scratchSize)
			}
			p = scratch[:cap(scratch)]
		}
		n, rerr := b.rc.Read(p)
		if n > 0 {
			b.dirty = true
			nw, werr := w.Write(p[:n])
			written += int64(nw)
			if capturing {
				if int64(len(b.buf))+int64(n) > b.max {
					// Too large to tap; the bytes are already written.
					b.truncated = true
					putBuf(b.buf)
					b.buf = nil
				} else {
					b.buf = b.buf[:len(b.buf)+n]
				}
			}
			if werr == nil && nw != n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				// The client is gone; goproxy's Close reports the body
				// as incomplete.
				return written, werr
			}
		}
		if rerr != nil {
			b.ended(rerr)
			if rerr == io.EOF {
				return written, nil
			}
			return written, rerr
		}
	}
}

// grow doubles the capture buffer (at least one pooled class, at most
// max+minRead so that a body one byte over max is still seen as too large).
func (b *tapBody) grow() {
	size := 2 * int64(cap(b.buf))
	size = max(size, minPooledBuf)
	size = min(size, b.max+minRead)
	nb := append(getBuf(size), b.buf...)
	putBuf(b.buf)
	b.buf = nb
}
