package timeout

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/event"
)

// Process implements [operators.Operator]: a start type sets the timer of the event's key (or
// fires it at once, late), a cancel type ends it, other types pass (see the package comment).
func (o *op) Process(x *operators.Exec, ev *event.Event) (bool, error) {
	if ev.TypeErr != nil {
		return false, ev.TypeErr
	}
	start, cancel := slices.Contains(o.start, ev.Type), slices.Contains(o.cancel, ev.Type)
	if !start && !cancel {
		return true, nil
	}
	if err := ev.Require(); err != nil {
		return false, err
	}
	if ev.Key == "" {
		return false, fmt.Errorf("timeout %s: empty key", o.name)
	}
	k := o.prefix + ev.Key
	e, err := x.Store.Get(x.Ctx, o.projection, k)
	if err != nil {
		return false, fmt.Errorf("timeout %s: %w", o.name, err)
	}
	if o.applied(e, ev) {
		ev.Duplicate = true
		return true, nil
	}
	pending := e != nil && e.State != nil && e.State.Get(StateDeadline) != nil
	if cancel {
		if pending {
			ev.Writes = append(ev.Writes, o.end(k, e, ev.Seq, ev.Time))
		}
		return true, nil
	}
	if pending && !o.restart {
		return true, nil // the first start stays
	}
	deadline := ev.Time.Add(o.after)
	t := event.NewRecord(o.shape, nil) // set by slot: no map per start
	t.Set(o.slots.started, event.ValueOf(ev.Time.UTC().Format(time.RFC3339Nano)))
	t.Set(o.slots.deadline, event.ValueOf(deadline.UTC().Format(time.RFC3339Nano)))
	t.Set(o.slots.seq, event.NumberValue(float64(ev.Seq)))
	if o.keepEvent {
		t.Set(o.slots.event, event.ValueOf(maps.Clone(ev.FieldMap()))) // the event's map is reused for the next one
	}
	at, late := deadline, !deadline.After(x.Watermark) // late: due as it starts, it fires at once
	switch {
	case !late:
		ev.Writes = append(ev.Writes, event.Write{Projection: o.projection, Key: k, State: t, Seq: ev.Seq, Time: ev.Time, Entry: e})
		o.idx.note(ev.Key, deadline)
		return true, nil
	case pending:
		ev.Writes = append(ev.Writes, o.end(k, e, ev.Seq, ev.Time))
	}
	if o.fires(ev.Mode) && !ev.Duplicate {
		// Fired on the event itself: an emit that cannot be made is the event's dead letter.
		out, err := o.render(x, o.tickLike(ev, at), ev.Key, t, deadline)
		if err != nil {
			return false, fmt.Errorf("timeout %s: emit of the timer: %w", o.name, err)
		}
		ev.Outputs = append(ev.Outputs, out)
	}
	return true, nil
}

// applied tells whether ev was applied to its key's entry e before a restart: e was written
// by ev or a later event, not by the tick of ev's step, which runs before ev.
func (o *op) applied(e *event.Entry, ev *event.Event) bool {
	if e == nil || e.State == nil || e.Seq < ev.Seq {
		return false
	}
	return e.Seq != o.tickSeq || !slices.Contains(o.ticked, ev.Key)
}

// end returns the write that ends the timer of key k (entry e) at sequence seq: a deletion,
// or with restart: false an end marker with a TTL (see the package comment).
func (o *op) end(k string, e *event.Entry, seq uint64, at time.Time) event.Write {
	w := event.Write{Projection: o.projection, Key: k, Seq: seq, Time: at, Entry: e}
	if o.restart {
		w.Delete = true
	} else {
		w.State, w.TTL = event.NewRecord(o.shape, map[string]any{StateEnded: e.State.Get(StateSeq)}), EndedTTL
	}
	return w
}

// tickLike returns what the tick of ev's step at time at would be, for the emit outside a tick.
func (o *op) tickLike(ev *event.Event, at time.Time) *event.Event {
	s := &o.scratch
	s.Reset()
	s.Seq, s.Subject, s.Mode, s.Time = ev.Seq, ev.Subject, ev.Mode, at
	return s
}

// Advance implements [operators.Clock]: it fires the timers whose deadline is at or before
// to, by deadline then key, each with a derived event (as the handler allows), and ends them
// (see end). When nothing is due it costs one comparison.
func (o *op) Advance(x *operators.Exec, tick *event.Event, _, to time.Time) error {
	if !o.idx.due(to) {
		return nil
	}
	type due struct {
		key      string
		e        *event.Entry
		deadline time.Time
		bad      error // the deadline does not parse (ErrBadTimer)
	}
	var fire []due
	for _, key := range o.idx.popDue(to, nil) {
		e, deadline, err := o.timer(x, o.prefix+key)
		if err != nil && !errors.Is(err, ErrBadTimer) {
			return err
		}
		if e == nil {
			continue // ended
		}
		// A timer of a later event than the tick's, applied before a restart, is not due (not
		// >=: an idle tick has the sequence of the last event, whose timer may be due).
		if deadline.After(to) || e.Seq > tick.Seq {
			o.idx.note(key, deadline)
			continue
		}
		fire = append(fire, due{key: key, e: e, deadline: deadline, bad: err})
	}
	slices.SortFunc(fire, func(a, b due) int {
		return cmp.Or(a.deadline.Compare(b.deadline), cmp.Compare(a.key, b.key))
	})
	o.tickSeq, o.ticked = tick.Seq, o.ticked[:0]
	for _, d := range fire {
		o.ticked = append(o.ticked, d.key)
		if o.fires(tick.Mode) {
			var out event.Output
			err := d.bad
			if err == nil {
				out, err = o.render(x, tick, d.key, d.e.State, d.deadline)
			} else {
				out = event.Output{Key: d.key, ID: o.outputID(d.key, d.e.State, d.deadline)}
			}
			if err != nil {
				// Staged as unmade: the pipeline dead-letters it, with the timer as payload.
				out.Err = fmt.Errorf("timeout %s: emit of the timer of %q: %w", o.name, d.key, err)
				out.Data, _ = json.Marshal(d.e.State.Map())
			}
			tick.Outputs = append(tick.Outputs, out)
		}
		tick.Writes = append(tick.Writes, o.end(o.prefix+d.key, d.e, tick.Seq, tick.Time))
	}
	return nil
}

// fires tells whether a timer fired at the step of an event of mode m emits.
func (o *op) fires(m event.Mode) bool { return !o.once || m == event.Live }

// render evaluates the emit of key's timer t on ev (a tick, or what one would be), with ev's
// Key set to key and [Var] to t, both put back after.
func (o *op) render(x *operators.Exec, ev *event.Event, key string, t *event.Record, deadline time.Time) (event.Output, error) {
	defer func(k string) { ev.Key = k; delete(ev.Vars, Var) }(ev.Key)
	ev.Key = key
	ev.SetVar(Var, t.Map())
	out := event.Output{Key: key, ID: o.outputID(key, t, deadline)}
	subject, err := x.EvalString(o.subject, ev)
	if err != nil {
		return out, err
	}
	out.Subject, out.Type = subject, cmp.Or(o.typ, subject)
	if err := operators.CheckSubject(o.subject, subject); err != nil {
		return out, err
	}
	body, err := x.Eval(o.data, ev)
	if err != nil {
		return out, err
	}
	out.Data, err = operators.EncodeData(body)
	return out, err
}

// outputID is the id of the derived event of key's timer t: the same in every run.
func (o *op) outputID(key string, t *event.Record, deadline time.Time) string {
	seq, _ := t.Get(StateSeq).(float64)
	return fmt.Sprintf("timeout:%s:%s:%d:%d", o.name, key, deadline.UnixMilli(), uint64(seq))
}

// Start implements [operators.Starter]: it rebuilds the index from the projection's timers.
func (o *op) Start(x *operators.Exec) error {
	o.idx.reset()
	o.tickSeq, o.ticked = 0, o.ticked[:0]
	keys, err := x.Store.Keys(x.Ctx, o.projection, o.prefix)
	if err != nil {
		return fmt.Errorf("timeout %s: list timers: %w", o.name, err)
	}
	for _, k := range keys {
		if !x.OwnsKey(k[len(o.prefix):]) {
			continue // another partition's timer, which fires with its watermark
		}
		// A timer whose deadline does not parse is indexed as due at once (the zero time):
		// the next tick dead-letters and ends it, instead of every start failing.
		e, deadline, err := o.timer(x, k)
		if err != nil && !errors.Is(err, ErrBadTimer) {
			return err
		}
		if e != nil {
			o.idx.note(k[len(o.prefix):], deadline)
		}
	}
	return nil
}

// timer reads the timer of projection key k: its entry and deadline, a nil entry for none.
// For a timer whose deadline does not parse, it returns the entry, the zero time and an error
// wrapping ErrBadTimer.
func (o *op) timer(x *operators.Exec, k string) (*event.Entry, time.Time, error) {
	e, err := x.Store.Get(x.Ctx, o.projection, k)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("timeout %s: %w", o.name, err)
	}
	if e == nil || e.State == nil || e.State.Get(StateDeadline) == nil {
		return nil, time.Time{}, nil
	}
	s, _ := e.State.Get(StateDeadline).(string)
	d, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return e, time.Time{}, fmt.Errorf("timeout %s: %s/%s: deadline %q: %w", o.name, o.projection, k, s, ErrBadTimer)
	}
	return e, d, nil
}
