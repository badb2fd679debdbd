package pipeline

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/jetfold/jetfold/operators"
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
	// batchKeys is how many keys one batch read asks for (the server answers at most 1,024
	// subjects per request).
	batchKeys = 512
	// numPendingHeader is set by a batch read on each message: how many follow it.
	numPendingHeader = "Nats-Num-Pending"
)

// prefetcher holds the state of prefetching for one runner.
type prefetcher struct {
	on      bool
	dec     *decoder        // decodes only what the type and key expressions read
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
func (r *Runner) prefetch(msgs []jetstream.Msg) int {
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
	for _, m := range msgs {
		ev := &pf.ev
		ev.Reset()
		ev.Subject, ev.Header, ev.Data = m.Subject(), m.Headers(), m.Data()
		if err := pf.dec.decode(ev, ev.Data, ev.Header); err != nil {
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
	loaded := r.readMany(x.Ctx, pf.miss)
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

// Outcomes of a batch read, the label of jetfold_state_batch_reads_total.
const (
	BatchComplete = "complete"
	BatchFailed   = "failed"
)

// readMany reads the committed values of es and tells which were read. Keys are read in
// batches: one direct get of the last message of up to batchKeys subjects (ADR-31
// multi_last), a few batches in flight. The keys of a batch that does not complete (an older
// server, a lost connection, a timeout: the batch reader ends quietly on one, so completion is
// checked on the last message's pending count) are read one by one.
func (r *Runner) readMany(ctx context.Context, es []*entry) []bool {
	loaded := make([]bool, len(es))
	var chunks [][]int // indexes into es, one projection per chunk
	for _, proj := range r.p.prefetch {
		var c []int
		for i, e := range es {
			if e.proj != proj {
				continue
			}
			if c = append(c, i); len(c) == batchKeys {
				chunks, c = append(chunks, c), nil
			}
		}
		if len(c) > 0 {
			chunks = append(chunks, c)
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(len(chunks), prefetchWorkers/8) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(chunks) {
					return
				}
				r.readBatch(ctx, es, chunks[i], loaded)
			}
		}()
	}
	wg.Wait()
	var rest []int
	for i := range es {
		if !loaded[i] {
			rest = append(rest, i)
		}
	}
	r.readEach(ctx, es, rest, loaded)
	return loaded
}

// readBatch reads es[idx], all of one projection, with one batch read, and sets loaded for
// the entries it read. It reads none when the batch does not complete.
func (r *Runner) readBatch(ctx context.Context, es []*entry, idx []int, loaded []bool) {
	s, ok := r.kvStreams[es[idx[0]].proj]
	if !ok {
		return
	}
	subjects := make([]string, len(idx))
	bySubject := make(map[string]int, len(idx))
	for j, i := range idx {
		subjects[j] = es[i].subject()
		bySubject[subjects[j]] = i
	}
	ctx, cancel := context.WithTimeout(ctx, readRetryFor)
	defer cancel()
	outcome := BatchFailed
	defer func() { r.m.BatchReads.WithLabelValues(r.p.Name, outcome).Inc() }()
	msgs, err := jetstreamext.GetLastMsgsFor(ctx, r.o.JS, s.CachedInfo().Config.Name, subjects)
	if err != nil {
		return
	}
	got := make([]int, 0, len(idx))
	complete := false
	for m, err := range msgs {
		if err != nil {
			return // no results at all is answered like a failed read: read one by one
		}
		i, ok := bySubject[m.Subject]
		if !ok {
			return
		}
		if err := r.fill(es[i], m.Sequence, m.Header, m.Data); err != nil {
			return
		}
		got = append(got, i)
		complete = m.Header.Get(numPendingHeader) == "0"
	}
	if !complete {
		return
	}
	// Every key with a value was sent: the others have none.
	for _, i := range idx {
		loaded[i] = true
	}
	outcome = BatchComplete
}

// readEach reads es[idx] one key per request, prefetchWorkers at a time.
func (r *Runner) readEach(ctx context.Context, es []*entry, idx []int, loaded []bool) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(len(idx), prefetchWorkers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j := int(next.Add(1)) - 1
				if j >= len(idx) {
					return
				}
				loaded[idx[j]] = r.load(ctx, es[idx[j]]) == nil
			}
		}()
	}
	wg.Wait()
}
