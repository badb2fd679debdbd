package pipeline

import (
	"github.com/jetfold/jetfold/operators"
)

// entry is the cached state of one key of one projection.
type entry struct {
	operators.Entry // State, Seq (last source sequence applied), Time (newest event time)

	proj, key string
	rev       uint64 // KV revision (last subject sequence) of the committed value; 0: none
	dirty     bool   // changed since the last commit

	prev, next *entry // LRU list, most recent at the front
}

// cache is a bounded LRU of per-key state for one pipeline, over all its projections.
// Dirty entries are never evicted: they are written by the next commit first.
type cache struct {
	max     int
	entries map[cacheKey]*entry
	head    entry // sentinel: head.next is the most recent
	dirty   []*entry
	// complete[proj] is true while the cache is known to hold every key of proj that exists
	// in its bucket (the bucket was empty at start and nothing was evicted), so a miss is a
	// new key and needs no read.
	complete map[string]bool
	evicted  uint64
}

type cacheKey struct{ proj, key string }

func newCache(max int) *cache {
	c := &cache{max: max, entries: map[cacheKey]*entry{}, complete: map[string]bool{}}
	c.head.next, c.head.prev = &c.head, &c.head
	return c
}

// get returns the entry of proj/key and marks it recently used.
func (c *cache) get(proj, key string) (*entry, bool) {
	e, ok := c.entries[cacheKey{proj, key}]
	if ok {
		c.touch(e)
	}
	return e, ok
}

// put adds e, which must not be present.
func (c *cache) put(e *entry) {
	c.entries[cacheKey{e.proj, e.key}] = e
	c.pushFront(e)
}

// markDirty records that e changed in this batch.
func (c *cache) markDirty(e *entry) {
	if !e.dirty {
		e.dirty = true
		c.dirty = append(c.dirty, e)
	}
}

// clean is called after a commit wrote every dirty entry.
func (c *cache) clean() {
	for _, e := range c.dirty {
		e.dirty = false
	}
	clear(c.dirty)
	c.dirty = c.dirty[:0]
	c.shrink()
}

// shrink evicts least recently used clean entries until the cache is within its bound.
func (c *cache) shrink() {
	for e := c.head.prev; len(c.entries) > c.max && e != &c.head; {
		prev := e.prev
		if !e.dirty {
			c.unlink(e)
			delete(c.entries, cacheKey{e.proj, e.key})
			c.complete[e.proj] = false
			c.evicted++
		}
		e = prev
	}
}

func (c *cache) len() int { return len(c.entries) }

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
