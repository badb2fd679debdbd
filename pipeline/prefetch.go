package pipeline

import (
	"sync"
	"sync/atomic"

	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/pipeline/decode"
)

// Prefetching. A key that is not in the cache, and may be in its bucket, is read from KV
// when a fold first needs it: one round trip to the server, during which the pipeline waits.
// With more live keys than the cache holds, or after a restart, that is most events. So while
// such reads are frequent, the keys of the events at hand are read ahead, many at once, before
// the events are processed.
const (
	// prefetchOn is how many KV reads in one burst of events turn prefetching on; below it,
	// prefetching turns off again (it costs a second decode of each event).
	prefetchOn = 8
	// prefetchWorkers is how many reads are in flight at once.
	prefetchWorkers = 32
)

// prefetcher holds the state of prefetching for one runner.
type prefetcher struct {
	on      bool
	dec     *decode.Decoder // decodes only what the type and key expressions read
	ev      operators.Event // scratch for computing keys
	reads   int             // KV reads by Get, counted to turn prefetching on and off
	before  int             // reads when the burst began
	fetched int             // keys read ahead for the burst
	miss    []*entry        // scratch: the entries to read
	seen    map[[2]string]struct{}
}

// readAhead starts a burst of events: while prefetching is on, it reads ahead the keys of the
// events src has at hand.
func (r *Runner) readAhead(src *source) {
	pf := &r.pf
	pf.before, pf.fetched = pf.reads, 0
	if pf.on && len(r.p.prefetch) > 0 {
		pf.fetched = r.prefetch(src.atHand(burstLen))
	}
}

// readsDone ends a burst: it counts the burst's reads and decides whether the next burst
// reads ahead.
func (r *Runner) readsDone() {
	pf := &r.pf
	onDemand := pf.reads - pf.before
	pf.on = onDemand+pf.fetched >= prefetchOn
	if onDemand > 0 {
		r.m.StateReads.WithLabelValues(r.p.Name, ReadOnDemand).Add(float64(onDemand))
	}
	if pf.fetched > 0 {
		r.m.StateReads.WithLabelValues(r.p.Name, ReadPrefetch).Add(float64(pf.fetched))
	}
	pf.before, pf.fetched = pf.reads, 0
}

// prefetch reads the committed state of the keys that msgs will fold and the cache lacks, and
// puts it in the cache. An event whose key cannot be computed here (a bad payload) is left to
// processing, which reports it; a failed read is left to Get, which retries it. It returns the
// number of keys read.
func (r *Runner) prefetch(msgs []srcMsg) int {
	pf := &r.pf
	pf.miss = pf.miss[:0]
	if pf.seen == nil {
		pf.seen = map[[2]string]struct{}{}
	}
	clear(pf.seen)
	x := &r.exec
	// Read ahead no more than a quarter of the cache: the entries read take the place of the
	// least recently used ones, and must stay until their events are processed.
	room := max(r.cache.max/4, 1)
	for _, sm := range msgs {
		m := sm.m
		ev := &pf.ev
		ev.Reset()
		ev.Subject, ev.Header, ev.Data = m.Subject(), m.Headers(), m.Data()
		if err := pf.dec.Decode(ev, ev.Data, ev.Header); err != nil {
			continue
		}
		var err error
		if ev.Type, err = x.EvalString(r.p.typeExpr, ev); err != nil {
			continue
		}
		key, err := x.EvalString(r.p.keyExpr, ev)
		if err != nil {
			continue
		}
		if len(pf.miss) >= room {
			break
		}
		for _, proj := range r.p.prefetch {
			pk := [2]string{proj, key}
			if _, dup := pf.seen[pk]; dup || r.cache.has(proj, key) || r.cache.absent(proj, key) {
				continue
			}
			pf.seen[pk] = struct{}{}
			pf.miss = append(pf.miss, newEntry(proj, key))
		}
	}
	if len(pf.miss) == 0 {
		return 0
	}
	loaded := make([]bool, len(pf.miss))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(len(pf.miss), prefetchWorkers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(pf.miss) {
					return
				}
				loaded[i] = r.load(x.Ctx, pf.miss[i]) == nil
			}
		}()
	}
	wg.Wait()
	n := 0
	for i, e := range pf.miss {
		if loaded[i] && !r.cache.has(e.proj, e.key) {
			r.cache.put(e)
			n++
		}
	}
	clear(pf.miss)
	r.cache.shrink() // between events: no entry is in use
	return n
}
