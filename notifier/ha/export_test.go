package ha

// NewTestLease returns a trusted lease of term for tests.
func NewTestLease(term int64) *Lease { return &Lease{Term: term, lost: make(chan struct{})} }
