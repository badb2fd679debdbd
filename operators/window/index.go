package window

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/event"
)

// due is a window in the index: its entity key, its start and a time (its end, in Unix
// nanoseconds like start).
type due struct {
	at, start int64
	key       string
}

// compare orders windows as they close: by end, then key, then start (oracle.Windows).
func (d due) compare(e due) int {
	if c := cmp.Compare(d.at, e.at); c != 0 {
		return c
	}
	if c := strings.Compare(d.key, e.key); c != 0 {
		return c
	}
	return cmp.Compare(d.start, e.start)
}

// before tells whether d closes before e.
func (d due) before(e due) bool { return d.compare(e) < 0 }

// dueHeap is a min-heap of windows in closing order (container/heap would box each one).
type dueHeap []due

// push adds d.
func (h *dueHeap) push(d due) {
	*h = append(*h, d)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s[i].before(s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

// pop removes and returns the first window; the heap must not be empty.
func (h *dueHeap) pop() due {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s[n] = due{}
	s = s[:n]
	for i := 0; ; {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && s[c+1].before(s[c]) {
			c++
		}
		if !s[c].before(s[i]) {
			break
		}
		s[i], s[c] = s[c], s[i]
		i = c
	}
	*h = s
	return top
}

// queue is a FIFO of closed windows, in order of end: windows close in that order (a window
// never opens already closed), so they expire in it too.
type queue struct {
	items []due
	head  int
}

// push appends d.
func (q *queue) push(d due) { q.items = append(q.items, d) }

// first returns the oldest window, false when the queue is empty.
func (q *queue) first() (due, bool) {
	if q.head == len(q.items) {
		return due{}, false
	}
	return q.items[q.head], true
}

// drop removes the oldest window, reusing the slice's room once half of it is gone.
func (q *queue) drop() {
	q.items[q.head] = due{}
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head > 1024 && q.head > len(q.items)/2 {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
}

// span is an open session: its first and last event times, in Unix nanoseconds.
type span struct{ start, last int64 }

// pending is the change an event made to the sessions of its key, undone when its effects
// were dropped (a later operator failed): the next call checks that the write it staged was
// applied, which sets the entry's sequence.
type pending struct {
	active bool
	key    string
	old    []span
	seq    uint64
	entry  *event.Entry // of the session the event wrote
}

// Start implements operators.Starter: it rebuilds the index from the projection's keys,
// forgetting what an earlier run left. Windows whose end is after the checkpoint's watermark -
// lateness are open (whatever KV says: a close committed after the checkpoint is found when
// the window comes due again), the others closed, or deleted when their end + retention has
// passed. Keys that are no window of this operator's are ignored. Sessions are read (their
// end is in their value); a session whose start lies within another of its key is what
// remains of a merge whose deletion a crash lost, and is deleted on the next tick.
func (o *Op) Start(x *operators.Exec) error {
	o.open, o.closed, o.sessions = o.open[:0], queue{}, map[string][]span{}
	o.pend, o.stale = pending{}, nil
	keys, err := x.Store.Keys(x.Ctx, o.projection, "")
	if err != nil {
		return fmt.Errorf("window %s: list windows: %w", o.projection, err)
	}
	h := o.horizon(x.Watermark)
	var closed []due
	if o.gap > 0 {
		closed, err = o.startSessions(x, keys, h)
		if err != nil {
			return err
		}
	} else {
		for _, k := range keys {
			key, start, ok := o.parseKey(k)
			if !ok || !x.OwnsKey(key) {
				continue // not a window, or another partition's, which closes with its watermark
			}
			d := due{at: start + int64(o.size), start: start, key: key}
			switch {
			case d.at > h:
				o.open.push(d)
			case d.at+int64(o.retention) > nanos(x.Watermark):
				closed = append(closed, d)
			} // else deleted before the checkpoint: a delete marker
		}
	}
	slices.SortFunc(closed, due.compare)
	o.closed.items = closed
	return nil
}

// parseKey splits a fixed window's KV key into its entity key and start (nanoseconds); false
// for a key that is none.
func (o *Op) parseKey(k string) (string, int64, bool) {
	i := strings.LastIndexByte(k, '.')
	if i <= 0 {
		return "", 0, false
	}
	ms, err := strconv.ParseInt(k[i+1:], 10, 64)
	if err != nil {
		return "", 0, false
	}
	start := ms * int64(time.Millisecond)
	if start/int64(time.Millisecond) != ms || floorMod(start, int64(o.advance)) != 0 {
		return "", 0, false
	}
	return k[:i], start, true
}

// startSessions reads the sessions of keys into the index and returns the closed ones.
func (o *Op) startSessions(x *operators.Exec, keys []string, h int64) ([]due, error) {
	byKey := map[string][]due{} // every session of each key, open or closed
	for _, k := range keys {
		i := strings.LastIndexByte(k, '.')
		if i <= 0 || !x.OwnsKey(k[:i]) {
			continue // not a session, or another partition's, which closes with its watermark
		}
		e, err := x.Store.Get(x.Ctx, o.projection, k)
		if err != nil {
			return nil, fmt.Errorf("window %s: read session %s: %w", o.projection, k, err)
		}
		if e == nil || e.State == nil {
			continue
		}
		s, _ := e.State.Get(startField).(string)
		en, _ := e.State.Get(endField).(string)
		start, err1 := time.Parse(time.RFC3339Nano, s)
		end, err2 := time.Parse(time.RFC3339Nano, en)
		if err1 != nil || err2 != nil || o.kvKey(k[:i], nanos(start)) != k {
			continue // not a session of this operator's
		}
		byKey[k[:i]] = append(byKey[k[:i]], due{at: nanos(end), start: nanos(start), key: k[:i]})
	}
	var closed []due
	for key, ss := range byKey {
		slices.SortFunc(ss, func(a, b due) int { return cmp.Compare(a.start, b.start) })
		reach := int64(minNanos) // the latest last event time of the sessions before
		for _, d := range ss {
			last := d.at - int64(o.gap)
			switch {
			case d.start <= reach:
				o.stale = append(o.stale, o.kvKey(key, d.start))
			case d.at > h:
				o.sessions[key] = append(o.sessions[key], span{start: d.start, last: last})
				o.open.push(d)
			default:
				closed = append(closed, d)
			}
			reach = max(reach, last)
		}
	}
	slices.Sort(o.stale)
	return closed, nil
}

// settle undoes the change to the sessions index of the last event when its effects were
// dropped.
func (o *Op) settle() {
	p := &o.pend
	if !p.active {
		return
	}
	p.active = false
	if p.entry.Seq == p.seq && p.entry.State != nil {
		return // applied
	}
	if len(p.old) == 0 {
		delete(o.sessions, p.key)
	} else {
		o.sessions[p.key] = slices.Clone(p.old)
	}
}

// remember records the sessions of key as they were before the event of sequence seq, whose
// write to e decides whether they stay changed (see settle).
func (o *Op) remember(key string, old []span, seq uint64, e *event.Entry) {
	p := &o.pend
	p.active, p.key, p.seq, p.entry = true, key, seq, e
	p.old = append(p.old[:0], old...)
}
