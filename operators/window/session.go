package window

import (
	"fmt"

	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/event"
)

// candidate is an open session of the event's key that the event joins: its index in the
// key's spans and its entry.
type candidate struct {
	i int
	e *event.Entry
}

// processSession applies ev to the sessions of its key: it joins every open session s with
// s.start - gap <= t <= s.last + gap, merging them into one, or starts a session of its own.
func (o *Op) processSession(x *operators.Exec, ev *event.Event) (bool, error) {
	o.settle()
	t, h, g := nanos(ev.Time), o.horizon(x.Watermark), int64(o.gap)
	list := o.sessions[ev.Key]
	o.cands = o.cands[:0]
	merged := span{start: t, last: t}
	for i, sp := range list {
		if sp.start-g > t || t > sp.last+g {
			continue
		}
		e, err := x.Store.Get(x.Ctx, o.projection, o.kvKey(ev.Key, sp.start))
		if err != nil {
			return false, fmt.Errorf("window %s: %w", o.projection, err)
		}
		if e == nil || e.State == nil {
			continue
		}
		// Written by ev or after it: ev was processed before a restart. (A session that ev's
		// own tick closed is out of the index by now.)
		if e.Seq >= ev.Seq {
			ev.Duplicate = true
			return true, nil
		}
		if o.isClosed(e.State) {
			continue // closed in KV after the checkpoint's watermark: see Start
		}
		o.cands = append(o.cands, candidate{i: i, e: e})
		merged.start, merged.last = min(merged.start, sp.start), max(merged.last, sp.last)
	}
	if len(o.cands) == 0 && t+g <= h {
		return false, fmt.Errorf("%w: a session at %s would end at %s, not after watermark - lateness %s", ErrLate, timestamp(t), timestamp(t+g), timestamp(h))
	}
	if err := o.evaluate(x, ev); err != nil {
		return false, err
	}
	if err := o.applySession(x, ev, list, merged); err != nil {
		return false, err
	}
	return true, nil
}

// applySession stages the session merged of ev's key: the candidates' aggregates and ev's,
// under the KV key of its start; the candidates under other keys are deleted.
func (o *Op) applySession(x *operators.Exec, ev *event.Event, list []span, merged span) error {
	g := int64(o.gap)
	keep := -1 // the candidate whose KV key the merged session keeps
	for j, c := range o.cands {
		if list[c.i].start == merged.start {
			keep = j
		}
	}
	var st setter
	if keep >= 0 && len(o.cands) == 1 {
		st, _ = o.edit(ev, o.cands[0].e)
		if list[o.cands[0].i].last != merged.last {
			st.set(o.endSlot, event.ValueOf(timestamp(merged.last+g)))
		}
	} else {
		st = setter{ev: ev, r: o.newRecord(merged.start, merged.last+g)}
		for _, c := range o.cands {
			src := c.e.State
			if src.Shape() != o.shape {
				src = src.Clone(o.shape)
			}
			o.merge(st.r, src)
		}
	}
	o.add(&st)
	k := o.kvKey(ev.Key, merged.start)
	var e *event.Entry
	if keep >= 0 {
		e = o.cands[keep].e
	} else {
		var err error
		if e, err = x.Store.Get(x.Ctx, o.projection, k); err != nil {
			return fmt.Errorf("window %s: %w", o.projection, err)
		}
	}
	// The merged session first: should a crash commit only some of these keys, one written
	// before the deletions leaves remnants that Start finds, not a loss.
	o.stage(ev, k, e, &st)
	for j, c := range o.cands {
		if j != keep {
			ev.Writes = append(ev.Writes, event.Write{Projection: o.projection, Key: o.kvKey(ev.Key, list[c.i].start), Delete: true, TTL: deleteTTL, Seq: ev.Seq, Time: ev.Time, Entry: c.e})
		}
	}
	o.reindex(ev, list, merged, e, keep < 0)
	return nil
}

// reindex replaces the candidates by merged in the sessions of ev's key, remembering them as
// they were until ev's write to e is known to be applied. A session new under its start is
// put in the heap; one that only grows keeps its entry, which is moved to the session's end
// when it comes due (see closeDue): the heap holds about one entry a session, not one an
// event.
func (o *Op) reindex(ev *event.Event, list []span, merged span, e *event.Entry, isNew bool) {
	o.remember(ev.Key, list, ev.Seq, e)
	next, j := list[:0], 0
	for i, sp := range list {
		if j < len(o.cands) && o.cands[j].i == i {
			j++
			continue
		}
		next = append(next, sp)
	}
	o.sessions[ev.Key] = append(next, merged)
	if isNew {
		o.open.push(due{at: merged.last + int64(o.gap), start: merged.start, key: ev.Key})
	}
}

// sessionEnd returns the end of the open session of d's key and start; false when the index
// no longer has it (merged into another, closed, or dropped with its event's effects).
func (o *Op) sessionEnd(d due) (int64, bool) {
	for _, sp := range o.sessions[d.key] {
		if sp.start == d.start {
			return sp.last + int64(o.gap), true
		}
	}
	return 0, false
}

// takeSession removes the open session of d's key and start from the index.
func (o *Op) takeSession(d due) {
	list := o.sessions[d.key]
	for i, sp := range list {
		if sp.start != d.start {
			continue
		}
		if len(list) == 1 {
			delete(o.sessions, d.key)
		} else {
			o.sessions[d.key] = append(list[:i], list[i+1:]...)
		}
		return
	}
}
