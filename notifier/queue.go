package notifier

import (
	"container/heap"
	"slices"
	"sort"
	"time"

	"github.com/mistral-tap/mistral-tap/tap/event"
)

// item is a pending delivery held in memory by its lane.
type item struct {
	id       string
	root     string
	seq      uint64
	attempts int
	nextAt   time.Time
	created  time.Time
	replayed time.Time
	ev       *event.Event

	inflight bool // taken for a send; until its outcome is saved
	probe    bool // the open breaker's trial send
	hidx     int  // index in the queue's heap, -1 when not in it

	// unsaved is the outcome of a send that the store could not commit,
	// waiting to be committed again (see lane.completed).
	unsaved *outcome
}

// queue is a lane's ordering: the pending deliveries it holds, per root in
// sequence order, and a heap of those that may be sent, by next attempt
// time. With ordering per root only a root's head is in the heap, and it
// stays out while in flight, so a root's next delivery waits until the
// head's outcome is saved. It has no lock: its lane's mutex guards it.
type queue struct {
	items   map[string]*item
	roots   map[string][]*item // per root, by sequence
	heap    itemHeap
	ordered bool
}

func newQueue() queue {
	return queue{items: map[string]*item{}, roots: map[string][]*item{}}
}

// len is the number of deliveries held, in flight included.
func (q *queue) len() int { return len(q.items) }

// has reports whether a delivery with id is held.
func (q *queue) has(id string) bool {
	_, ok := q.items[id]
	return ok
}

// setOrdered switches between ordering per root and none, rebuilding the
// heap when that changes.
func (q *queue) setOrdered(ordered bool) {
	if ordered == q.ordered {
		return
	}
	q.ordered = ordered
	for _, it := range q.heap {
		it.hidx = -1
	}
	q.heap = q.heap[:0]
	for _, list := range q.roots {
		for i, it := range list {
			if i > 0 && q.ordered {
				break
			}
			if !it.inflight {
				heap.Push(&q.heap, it)
			}
		}
	}
}

// add holds it unless its id is already held.
func (q *queue) add(it *item) {
	if q.has(it.id) {
		return
	}
	it.hidx = -1
	q.items[it.id] = it
	list := q.roots[it.root]
	// After any equal sequence: a later arrival never overtakes.
	i := sort.Search(len(list), func(i int) bool { return list[i].seq > it.seq })
	list = slices.Insert(list, i, it)
	q.roots[it.root] = list
	if !q.ordered {
		heap.Push(&q.heap, it)
		return
	}
	if i != 0 {
		return
	}
	if len(list) > 1 && list[1].hidx >= 0 {
		heap.Remove(&q.heap, list[1].hidx) // it is no longer the head
	}
	heap.Push(&q.heap, it)
}

// remove drops it (delivered or dead) and promotes its root's next
// delivery.
func (q *queue) remove(it *item) {
	if q.items[it.id] != it {
		return
	}
	delete(q.items, it.id)
	if it.hidx >= 0 {
		heap.Remove(&q.heap, it.hidx)
	}
	list := q.roots[it.root]
	if i := slices.Index(list, it); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(q.roots, it.root)
		return
	}
	q.roots[it.root] = list
	if q.ordered && !list[0].inflight && list[0].hidx < 0 {
		heap.Push(&q.heap, list[0])
	}
}

// requeue makes a held item that is no longer in flight eligible again.
func (q *queue) requeue(it *item) {
	if q.items[it.id] != it || it.hidx >= 0 {
		return
	}
	if q.ordered && q.roots[it.root][0] != it {
		return
	}
	heap.Push(&q.heap, it)
}

// eligible reports whether any item may be sent (due or not).
func (q *queue) eligible() bool { return len(q.heap) > 0 }

// next is the earliest next attempt among eligible items; ok is false when
// there is none.
func (q *queue) next() (at time.Time, ok bool) {
	if len(q.heap) == 0 {
		return time.Time{}, false
	}
	return q.heap[0].nextAt, true
}

// pop takes the eligible item with the earliest next attempt out of the
// heap and marks it in flight; the queue must have one.
func (q *queue) pop() *item {
	it := heap.Pop(&q.heap).(*item)
	it.inflight = true
	return it
}

// oldest is the earliest event time of the items held (zero: none).
func (q *queue) oldest() time.Time {
	var oldest time.Time
	for _, it := range q.items {
		if oldest.IsZero() || it.created.Before(oldest) {
			oldest = it.created
		}
	}
	return oldest
}

// itemHeap orders eligible items by next attempt time, then sequence.
type itemHeap []*item

func (h itemHeap) Len() int { return len(h) }
func (h itemHeap) Less(i, j int) bool {
	if h[i].nextAt.Equal(h[j].nextAt) {
		return h[i].seq < h[j].seq
	}
	return h[i].nextAt.Before(h[j].nextAt)
}
func (h itemHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *itemHeap) Push(x any) {
	it := x.(*item)
	it.hidx = len(*h)
	*h = append(*h, it)
}
func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	it.hidx = -1
	return it
}
