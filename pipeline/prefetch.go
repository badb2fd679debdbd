package pipeline

import (
	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/operators/expr"
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
	// prefetchOn is how many KV reads in one burst of events turn prefetching on, as do
	// reads for at least half the events of a shorter burst; two bursts in a row of at least
	// as many events with fewer reads turn it off again (it costs a second decode of each
	// event). A shorter burst with no read says too little to change it.
	prefetchOn = 8
)

// keyRead is a lookup whose key prefetch computes (see operators.KeyReader).
type keyRead struct {
	proj string
	key  *expr.Expr
}

// prefetcher holds the state of prefetching for one runner.
type prefetcher struct {
	on      bool
	quiet   int             // bursts in a row with few reads
	dec     *decode.Decoder // decodes only what the type and key expressions read
	ev      event.Event     // scratch for computing keys
	before  int             // the store's reads when the burst began
	fetched int             // keys read ahead for the burst
	keys    []state.Key     // scratch: the keys of the events at hand, and of their lookups
}

// readAhead starts a burst of at most max events: while prefetching is on, it reads ahead the
// keys of those src has at hand, and returns how many those are (0: it did not read ahead).
// The burst ends with them: while reads are slow, more events arrive during a burst than
// were at hand at its start, and the next burst reads theirs ahead.
func (r *Runner) readAhead(src batch.Feed, max int) int {
	pf := &r.pf
	pf.before, pf.fetched = r.store.Reads(), 0
	if !pf.on || len(r.p.prefetch)+len(r.p.lookahead) == 0 {
		return 0
	}
	msgs := src.AtHand(max)
	pf.fetched = r.prefetch(msgs)
	return len(msgs)
}

// readsDone ends a burst of took events: it counts the burst's reads and decides whether the
// next burst reads ahead. A burst that took no event (the source had none at hand) says
// nothing about the reads events need: prefetching stays as it was.
func (r *Runner) readsDone(took int) {
	pf := &r.pf
	onDemand := r.store.Reads() - pf.before
	if took > 0 {
		switch reads := onDemand + pf.fetched; {
		case reads >= prefetchOn || reads > 0 && 2*reads >= took:
			pf.on, pf.quiet = true, 0
		case took >= prefetchOn:
			// Enough events to tell, and few reads; but the burst before may have read this
			// one's keys ahead (it reads what is at hand, and a batch can end before): only a
			// second such burst in a row turns prefetching off.
			if pf.quiet++; pf.quiet >= 2 {
				pf.on = false
			}
		}
	}
	if onDemand > 0 {
		r.mx.stateReads.WithLabelValues(ReadOnDemand).Add(float64(onDemand))
	}
	if pf.fetched > 0 {
		r.mx.stateReads.WithLabelValues(ReadPrefetch).Add(float64(pf.fetched))
	}
	pf.before, pf.fetched = r.store.Reads(), 0
}

// prefetch reads the committed state of the keys that msgs will fold and the cache lacks, and
// puts it in the cache; and the keys their lookups read (see operators.KeyReader). An event
// whose keys cannot be computed here (a bad payload) is left to processing, which reports it;
// a failed read is left to Get or Lookup, which retry it. It returns the number of keys read.
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
		if len(r.p.lookahead) > 0 {
			ev.Key = key
			for _, kr := range r.p.lookahead {
				if v, err := x.Eval(kr.key, ev); err == nil && v != nil {
					if k, err := expr.Text(v); err == nil {
						pf.keys = append(pf.keys, state.Key{Projection: kr.proj, Key: k})
					}
				}
			}
		}
	}
	// Read ahead no more than a quarter of the cache: the entries read take the place of the
	// least recently used ones, and must stay until their events are processed.
	n := r.store.ReadAhead(x.Ctx, pf.keys, max(r.store.MaxKeys()/4, 1))
	clear(pf.keys)
	return n
}
