package state

import (
	"hash/maphash"
	"time"
	"unsafe"

	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/streams"
)

// entry is the cached state of one key of one projection.
type entry struct {
	event.Entry // State, Seq (last source sequence applied), Time (newest event time)

	proj, key string
	rev       uint64 // KV revision (last subject sequence) of the committed value; 0: none
	dirty     bool   // changed since the batch started
	// committing counts the commits in flight that write this entry; it is not evicted
	// before they end. Changed by the processing goroutine only.
	committing int
	subj       string        // KV subject, computed once
	ttl        time.Duration // of the last write

	prev, next *entry // LRU list of evictable entries, most recent at the front; nil when out

	// keyBuf holds a key of up to its size (a UUID fits), so that the cache's map compares
	// keys in the entry's own memory: a lookup costs one cache miss less.
	keyBuf [40]byte
}

// cache is a bounded LRU of per-key state for one pipeline, over all its projections.
// Dirty entries, and entries whose commit is in flight, are never evicted: they are out of
// the LRU list until their commit ends. When they alone fill the cache, the batch in hand is
// committed, and the next one waits for that commit before it takes a second event (the
// pipeline's loop), so the cache stays within its bound plus the keys of one event.
type cache struct {
	max    int
	byProj map[string]map[string]*entry // projection -> key -> entry
	n      int                          // entries, in the list or not
	head   entry                        // sentinel of the LRU list: head.next is the most recent
	dirty  []*entry
	// known[proj], when set, holds the hash of every key of proj that exists in its bucket:
	// the bucket was empty when the pipeline started, so the keys are the ones it wrote. A
	// miss whose hash is not there is a new key and needs no read (a hash collision only
	// costs a read). It survives evictions: 8-16 bytes per key instead of the whole state.
	known map[string]map[uint64]struct{}
	seed  maphash.Seed
}

func newCache(max int) *cache {
	c := &cache{max: max, byProj: map[string]map[string]*entry{}, known: map[string]map[uint64]struct{}{}, seed: maphash.MakeSeed()}
	c.head.next, c.head.prev = &c.head, &c.head
	return c
}

// get returns the entry of proj/key and marks it recently used.
func (c *cache) get(proj, key string) (*entry, bool) {
	e, ok := c.byProj[proj][key]
	if ok && e.prev != nil {
		c.touch(e)
	}
	return e, ok
}

// has tells whether proj/key is cached, without marking it used.
func (c *cache) has(proj, key string) bool {
	_, ok := c.byProj[proj][key]
	return ok
}

// put adds e, which must not be present. The cache may exceed its bound until [cache.shrink].
func (c *cache) put(e *entry) {
	m := c.byProj[e.proj]
	if m == nil {
		m = map[string]*entry{}
		c.byProj[e.proj] = m
	}
	m[e.key] = e
	c.n++
	c.pushFront(e)
}

// track starts tracking the keys of proj, whose bucket is empty.
func (c *cache) track(proj string) { c.known[proj] = map[uint64]struct{}{} }

// absent tells whether proj/key is known not to exist in its bucket.
func (c *cache) absent(proj, key string) bool {
	set, ok := c.known[proj]
	if !ok {
		return false
	}
	_, exists := set[maphash.String(c.seed, key)]
	return !exists
}

// markDirty records that e changed in this batch.
func (c *cache) markDirty(e *entry) {
	if !e.dirty {
		if set, ok := c.known[e.proj]; ok {
			set[maphash.String(c.seed, e.key)] = struct{}{}
		}
		e.dirty = true
		c.dirty = append(c.dirty, e)
		if e.prev != nil {
			c.unlink(e)
		}
	}
}

// seal moves the dirty entries to a commit: they stay out of the LRU list until
// [cache.committed], and the next batch starts with none dirty. An entry fn does not take (it
// returns false: there is nothing to write) is evictable again at once.
func (c *cache) seal(fn func(e *entry) bool) {
	for _, e := range c.dirty {
		e.dirty = false
		if !fn(e) {
			c.pushFront(e)
			continue
		}
		e.Owned = false // the commit holds the state now: the next fold copies it
		e.committing++
	}
	clear(c.dirty)
	c.dirty = c.dirty[:0]
}

// committed is called, on the processing goroutine, when the commit of writes has ended:
// their entries become evictable again, unless the next batch changed them meanwhile.
func (c *cache) committed(writes []Write) {
	for _, w := range writes {
		e := w.e
		if e.committing--; e.committing == 0 && !e.dirty {
			c.pushFront(e)
		}
	}
	c.shrink()
}

// shrink evicts the least recently used evictable entries until the cache is within its
// bound or none is left. It runs between events, never while an event holds entries.
func (c *cache) shrink() {
	for c.n > c.max && c.head.prev != &c.head {
		e := c.head.prev
		c.unlink(e)
		delete(c.byProj[e.proj], e.key)
		c.n--
	}
}

// over tells whether the cache is over its bound with nothing left to evict: only a commit
// can make room.
func (c *cache) over() bool { return c.n > c.max }

func (c *cache) len() int { return c.n }

// newEntry returns the entry of proj/key, which lives in bucket.
func newEntry(proj, bucket, key string) *entry {
	e := &entry{proj: proj, key: key, subj: streams.KVSubject(bucket, streams.EncodeKey(key))}
	if n := copy(e.keyBuf[:], key); n == len(key) && n > 0 {
		e.key = unsafe.String(&e.keyBuf[0], n)
	}
	e.Handle = e
	return e
}

func (c *cache) touch(e *entry) {
	if c.head.next != e {
		c.unlink(e)
		c.pushFront(e)
	}
}

func (c *cache) pushFront(e *entry) {
	e.prev, e.next = &c.head, c.head.next
	c.head.next.prev = e
	c.head.next = e
}

func (c *cache) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}
