package timeout

import (
	"cmp"
	"container/heap"
	"slices"
	"strings"
	"time"
)

// index is what a timeout keeps in memory: for each key that may have a pending timer, a time
// at or before its deadline, in a heap. A lower bound, as the operator cannot see which of its
// effects are applied (an operator after it may drop the event): a start only lowers its key's
// time, and a key is forgotten only when its time comes, when Advance reads its timer, which
// fires, or is indexed at its real deadline, or is gone.
type index struct {
	at map[string]time.Time // key -> the lower bound of its deadline
	h  entries              // the bounds; an entry whose time is not its key's in at is stale
}

// entry is one key's time in the heap.
type entry struct {
	at  time.Time
	key string
}

// reset empties the index.
func (x *index) reset() { x.at, x.h = map[string]time.Time{}, x.h[:0] }

// note records that key may have a timer due at deadline.
func (x *index) note(key string, deadline time.Time) {
	if cur, ok := x.at[key]; ok && !deadline.Before(cur) {
		return
	}
	x.at[key] = deadline
	heap.Push(&x.h, entry{at: deadline, key: key})
}

// due tells whether a key's time is at or before t: O(1).
func (x *index) due(t time.Time) bool { return len(x.h) > 0 && !x.h[0].at.After(t) }

// popDue removes from the index the keys whose time is at or before t and appends them to
// keys, each once.
func (x *index) popDue(t time.Time, keys []string) []string {
	for x.due(t) {
		e := heap.Pop(&x.h).(entry)
		if cur, ok := x.at[e.key]; ok && cur.Equal(e.at) {
			delete(x.at, e.key)
			keys = append(keys, e.key)
		}
	}
	return keys
}

// entries is a min-heap of entries by time, then key (container/heap.Interface).
type entries []entry

func (h entries) Len() int { return len(h) }
func (h entries) Less(i, j int) bool {
	return cmp.Or(h[i].at.Compare(h[j].at), strings.Compare(h[i].key, h[j].key)) < 0
}
func (h entries) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *entries) Push(v any)   { *h = append(*h, v.(entry)) }
func (h *entries) Pop() any {
	e := (*h)[len(*h)-1]
	*h = slices.Delete(*h, len(*h)-1, len(*h)) // clears the entry the slice no longer holds
	return e
}
