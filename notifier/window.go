package notifier

import "time"

// window is a lane's bookkeeping of how its queue relates to the store's
// pending rows: the queue is a bounded window on them (at most max), and
// when some pending rows are not in memory the lane is spilled and must
// read them back (refill) before it may take new events directly. It has
// no lock: its lane's mutex guards it.
type window struct {
	max     int // deliveries held in memory at most
	pending int // pending rows in the store (exact when !spilled)

	// spilled: the store may hold pending rows that are not in memory.
	spilled    bool
	needRefill bool

	// While a refill reads the store, completions are recorded in done so
	// the merge does not resurrect a row completed after the read began,
	// and accepted items wait in late: the read may or may not include
	// them.
	reading bool
	done    map[string]struct{}
	late    []*item

	// maxReplayed is the latest replayed_at of any row a refill read: a
	// later one in the store is a replay this lane has not seen.
	maxReplayed time.Time
}

func newWindow(max, pending int) window {
	// Spilled until the first refill has read the store: an event
	// accepted meanwhile must not overtake older pending ones of its root.
	return window{max: max, pending: pending, spilled: true}
}

// accepted counts a freshly committed item and says whether it may join
// the queue now (held is how many the queue holds). Otherwise it waits in
// the store (spilled) or, during a read, in late.
func (w *window) accepted(it *item, held int) bool {
	w.pending++
	if w.reading {
		w.late = append(w.late, it)
		return false
	}
	if w.spilled || held >= w.max {
		w.spilled = true
		return false
	}
	return true
}

// completed counts a delivery that left the pending state (held is how
// many the queue still holds). A refill reads up to max rows, those still
// in memory included: waiting until a quarter is left (rather than half)
// makes it read 1.33 rows per row it adds instead of 2, and a quarter is
// still enough to keep sending while the read runs (docs/performance.md).
func (w *window) completed(id string, held int) {
	w.pending--
	if w.reading {
		w.done[id] = struct{}{}
	}
	if w.spilled && held <= w.max/4 {
		w.needRefill = true
	}
}

// requestRefill asks the lane to read the store again (a replay).
func (w *window) requestRefill() { w.needRefill = true }

// takeRefill reports and clears a pending refill request.
func (w *window) takeRefill() bool {
	r := w.needRefill
	w.needRefill = false
	return r
}

// beginRead starts tracking completions and accepts for a refill's read.
func (w *window) beginRead() {
	w.reading, w.done, w.late = true, map[string]struct{}{}, nil
}

// endRead stops tracking and hands over what the read may have missed:
// the ids completed meanwhile and the items accepted meanwhile.
func (w *window) endRead() (done map[string]struct{}, late []*item) {
	done, late = w.done, w.late
	w.reading, w.done, w.late = false, nil, nil
	return done, late
}

// readFailed records a refill whose read failed: late items are in the
// store only.
func (w *window) readFailed(late []*item) {
	if len(late) > 0 {
		w.spilled = true
	}
}

// sawReplay records a row's replayed_at as read.
func (w *window) sawReplay(t time.Time) {
	if t.After(w.maxReplayed) {
		w.maxReplayed = t
	}
}

// readDone records a read of n rows. A read of fewer than max rows saw
// every row committed before it: an item accepted during the read is
// either among them or newer than all of them, so it can join memory
// without overtaking anything of its root. Otherwise older rows wait in
// the store and the late items with them.
func (w *window) readDone(n int) { w.spilled = n >= w.max }

// lateSpilled records that a late item could not join memory.
func (w *window) lateSpilled() { w.spilled, w.needRefill = true, true }

// settled fixes the pending count once every pending row is held.
func (w *window) settled(held int) {
	if !w.spilled {
		w.pending = held
	}
}

// matches reports whether the store's summary (pending count, latest
// replay) agrees with a lane that holds every pending row: then nothing
// was added behind its back and a full read can be skipped.
func (w *window) matches(n int, replayed time.Time) bool {
	return !w.spilled && n == w.pending && !replayed.After(w.maxReplayed)
}
