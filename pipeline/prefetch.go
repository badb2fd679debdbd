package pipeline

import (
	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/pipeline/batch"
	"github.com/jetfold/jetfold/pipeline/decode"
	"github.com/jetfold/jetfold/pipeline/source"
	"github.com/jetfold/jetfold/pipeline/state"
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
)

// prefetcher holds the state of prefetching for one runner.
type prefetcher struct {
	on      bool
	dec     *decode.Decoder // decodes only what the type and key expressions read
	ev      event.Event     // scratch for computing keys
	before  int             // the store's reads when the burst began
	fetched int             // keys read ahead for the burst
	keys    []state.Key     // scratch: the keys of the events at hand
}

// readAhead starts a burst of events: while prefetching is on, it reads ahead the keys of the
// events src has at hand.
func (r *Runner) readAhead(src batch.Feed) {
	pf := &r.pf
	pf.before, pf.fetched = r.store.Reads(), 0
	if pf.on && len(r.p.prefetch) > 0 {
		pf.fetched = r.prefetch(src.AtHand(batch.BurstLen))
	}
}

// readsDone ends a burst: it counts the burst's reads and decides whether the next burst
// reads ahead.
func (r *Runner) readsDone() {
	pf := &r.pf
	onDemand := r.store.Reads() - pf.before
	pf.on = onDemand+pf.fetched >= prefetchOn
	if onDemand > 0 {
		r.m.StateReads.WithLabelValues(r.p.Name, ReadOnDemand).Add(float64(onDemand))
	}
	if pf.fetched > 0 {
		r.m.StateReads.WithLabelValues(r.p.Name, ReadPrefetch).Add(float64(pf.fetched))
	}
	pf.before, pf.fetched = r.store.Reads(), 0
}

// prefetch reads the committed state of the keys that msgs will fold and the cache lacks, and
// puts it in the cache. An event whose key cannot be computed here (a bad payload) is left to
// processing, which reports it; a failed read is left to Get, which retries it. It returns the
// number of keys read.
func (r *Runner) prefetch(msgs []source.Msg) int {
	pf := &r.pf
	pf.keys = pf.keys[:0]
	x := &r.exec
	for _, sm := range msgs {
		m := sm.Msg
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
		if err != nil || !r.o.Partition.ownsKey(key) {
			continue // another partition's key: it is never read here
		}
		for _, proj := range r.p.prefetch {
			pf.keys = append(pf.keys, state.Key{Projection: proj, Key: key})
		}
	}
	// Read ahead no more than a quarter of the cache: the entries read take the place of the
	// least recently used ones, and must stay until their events are processed.
	n := r.store.ReadAhead(x.Ctx, pf.keys, max(r.store.MaxKeys()/4, 1))
	clear(pf.keys)
	return n
}
