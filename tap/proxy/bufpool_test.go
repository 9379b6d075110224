package proxy

import "testing"

// TestBufPoolClasses: a buffer always has room for what was asked, and a
// returned buffer is only handed out again for sizes it can hold.
func TestBufPoolClasses(t *testing.T) {
	for _, n := range []int64{-1, 0, 1, minPooledBuf - 1, minPooledBuf, minPooledBuf + 1, 45254, 451155, maxPooledBuf, maxPooledBuf + 1} {
		b := getBuf(n)
		if len(b) != 0 || int64(cap(b)) < n {
			t.Errorf("getBuf(%d): len %d cap %d", n, len(b), cap(b))
		}
		putBuf(append(b, 'x'))
	}
	for i := range 1000 {
		// Odd capacities (append growth of a chunked body) go to the
		// class below them and must still satisfy that class.
		putBuf(make([]byte, 10, minPooledBuf+i*997))
		n := int64(minPooledBuf + (i*7919)%(maxPooledBuf-minPooledBuf))
		if b := getBuf(n); int64(cap(b)) < n || len(b) != 0 {
			t.Fatalf("getBuf(%d): len %d cap %d", n, len(b), cap(b))
		}
	}
	if got := classFor(maxPooledBuf); got != len(bufPools)-1 {
		t.Errorf("classFor(max) = %d, want %d", got, len(bufPools)-1)
	}
}
