package proxy

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// chunkReader hands out body in reads of at most step bytes, returning
// io.EOF with the last bytes when eofWithData is set (as net/http does for
// a body with Content-Length) or on a read of its own otherwise.
type chunkReader struct {
	body        []byte
	step        int
	eofWithData bool
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.body) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.body[:min(r.step, len(r.body))])
	r.body = r.body[n:]
	if len(r.body) == 0 && r.eofWithData {
		return n, io.EOF
	}
	return n, nil
}

func (r *chunkReader) Close() error { return nil }

// failAfter is a client that accepts n bytes and then fails.
type failAfter struct{ n int }

var errClientGone = errors.New("client gone")

func (w *failAfter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, errClientGone
	}
	w.n -= len(p)
	return len(p), nil
}

// TestWriteTo: the zero-copy path writes every byte to the client in order
// and captures exactly the body, whatever the read sizes, the initial
// buffer and the way io.EOF arrives; past max it still writes everything
// and stops capturing.
func TestWriteTo(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 40_000) // 640,000 bytes
	cases := []struct {
		name        string
		size        int   // body bytes used
		step        int   // upstream read size
		initial     int64 // getBuf hint: Content-Length, or -1 when unknown
		max         int64
		capture     bool
		eofWithData bool
		truncated   bool
	}{
		{"content-length, one read", 451_000, 1 << 20, 451_000, 8 << 20, true, true, false},
		{"content-length, 32 KiB reads", 451_000, 32 << 10, 451_000, 8 << 20, true, false, false},
		{"exact class size", 512 << 10, 64 << 10, 512 << 10, 8 << 20, true, true, false},
		{"unknown length grows", 640_000, 7_000, -1, 8 << 20, true, false, false},
		{"unknown length, one byte reads", 5_000, 1, -1, 8 << 20, true, false, false},
		{"empty body", 0, 10, 0, 8 << 20, true, false, false},
		{"exactly max", 100_000, 3_000, -1, 100_000, true, false, false},
		{"one byte over max", 100_001, 3_000, -1, 100_000, true, false, true},
		{"far over max", 640_000, 50_000, -1, 100_000, true, true, true},
		{"not captured (stream only)", 640_000, 50_000, -1, 8 << 20, false, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := body[:c.size]
			b := &tapBody{rc: &chunkReader{body: want, step: c.step, eofWithData: c.eofWithData}, capture: c.capture, max: c.max}
			if c.capture {
				b.buf = getBuf(c.initial)
			}
			var out bytes.Buffer
			n, err := b.WriteTo(&out)
			if err != nil {
				t.Fatalf("WriteTo: %v", err)
			}
			if n != int64(len(want)) || !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("client got %d bytes (returned %d), want the %d-byte body", out.Len(), n, len(want))
			}
			if b.truncated != c.truncated {
				t.Fatalf("truncated = %v, want %v", b.truncated, c.truncated)
			}
			if c.capture && !c.truncated && !bytes.Equal(b.buf, want) {
				t.Fatalf("captured %d bytes, want the %d-byte body", len(b.buf), len(want))
			}
			if c.truncated && b.buf != nil {
				t.Fatal("a body over max still holds its capture buffer")
			}
		})
	}
}

// TestWriteToErrors: a client that goes away stops the copy with its error
// and the body is not reported complete; an upstream error is returned as
// is and ends the capture with that error.
func TestWriteToErrors(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 100_000)

	b := &tapBody{rc: &chunkReader{body: body, step: 10_000}, capture: true, max: 8 << 20, buf: getBuf(-1)}
	n, err := b.WriteTo(&failAfter{n: 25_000})
	if !errors.Is(err, errClientGone) || n != 25_000 {
		t.Fatalf("client gone: n=%d err=%v, want 25000 and the client's error", n, err)
	}
	ended := false
	b.once.Do(func() { ended = true })
	if !ended {
		t.Fatal("the body was finished although the client went away before EOF")
	}

	upErr := errors.New("upstream reset")
	b = &tapBody{rc: io.NopCloser(io.MultiReader(bytes.NewReader(body[:1000]), iotest.ErrReader(upErr))), capture: true, max: 8 << 20, buf: getBuf(-1)}
	var out bytes.Buffer
	if n, err := b.WriteTo(&out); !errors.Is(err, upErr) || n != 1000 {
		t.Fatalf("upstream error: n=%d err=%v, want 1000 and the upstream's error", n, err)
	}
	ended = false
	b.once.Do(func() { ended = true })
	if ended {
		t.Fatal("an upstream error did not end the capture")
	}
}
