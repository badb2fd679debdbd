package window

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/operators/expr"
)

// ErrLate is the reason of a late event's dead letter: every window it belongs to is closed.
// The dead letter's text starts with "late".
var ErrLate = errors.New("late")

// Op is the window operator (see the package doc). It implements operators.Operator,
// TTLProjector, Clock, Starter and Expressioner. It is used by one goroutine at a time.
type Op struct {
	config
	fields []string // StateFields
	shape  *event.Shape
	// slots of the window's own fields in shape; nSlot is _n's, -1 without an avg.
	startSlot, endSlot, closedSlot, nSlot int

	// The index (see Start): open windows by end, closed ones by end, open sessions by key,
	// the change of the last event to the sessions, and remnants of merges to delete.
	open     dueHeap
	closed   queue
	sessions map[string][]span
	pend     pending
	stale    []string

	in      []input       // what the event in hand contributes, per aggregate
	scratch *event.Record // reads a Value's number unboxed (see number)
	cands   []candidate   // the sessions the event in hand joins
	buf     []byte        // builds KV keys
}

// newOp returns the operator of c, in a shape of its own fields.
func newOp(c *config) *Op {
	o := &Op{config: *c, in: make([]input, len(c.aggs)), scratch: event.NewRecord(scratchShape, nil), sessions: map[string][]span{}}
	o.fields = []string{startField, endField, closedField}
	avg := false
	for i := range o.aggs {
		a := &o.aggs[i]
		o.fields = append(o.fields, a.name)
		if n := a.internal(); n != "" {
			o.fields = append(o.fields, n)
		}
		avg = avg || a.fn == fnAvg
	}
	if avg {
		o.fields = append(o.fields, countInternal)
	}
	o.UseShape(event.NewShape(o.fields...))
	return o
}

// Projection implements operators.Projector: the bucket of the operator's windows.
func (o *Op) Projection() string { return o.projection }

// StateFields implements operators.Projector: start, end, closed, the aggregates and their
// internal fields.
func (o *Op) StateFields() []string { return o.fields }

// Shape implements operators.Projector.
func (o *Op) Shape() *event.Shape { return o.shape }

// UseShape implements operators.Projector.
func (o *Op) UseShape(s *event.Shape) {
	o.shape = s
	slot := func(name string) int {
		if name == "" {
			return -1
		}
		i, ok := s.Slot(name)
		if !ok {
			panic("window: shape without the field " + name) // the pipeline's contract
		}
		return i
	}
	o.startSlot, o.endSlot, o.closedSlot = slot(startField), slot(endField), slot(closedField)
	o.nSlot = -1
	for i := range o.aggs {
		a := &o.aggs[i]
		a.slot, a.aux = slot(a.name), slot(a.internal())
		if a.fn == fnAvg {
			o.nSlot = slot(countInternal)
		}
	}
}

// Exprs implements operators.Expressioner: the aggregates' and the emit's expressions.
func (o *Op) Exprs() []*expr.Expr {
	var out []*expr.Expr
	for _, a := range o.aggs {
		if a.expr != nil {
			out = append(out, a.expr)
		}
	}
	if e := o.emit; e != nil {
		out = append(out, e.subject, e.data)
		for _, f := range e.fields {
			out = append(out, f.expr)
		}
	}
	return out
}

// Process implements operators.Operator: it counts ev in its open windows. An event whose
// windows are all closed is an error wrapping [ErrLate]; one an aggregate refuses is an error
// `aggregate <name>: ...`, applied to none of its windows.
func (o *Op) Process(x *operators.Exec, ev *event.Event) (bool, error) {
	if err := ev.Require(); err != nil {
		return false, err
	}
	if o.gap > 0 {
		return o.processSession(x, ev)
	}
	return o.processFixed(x, ev)
}

// processFixed applies ev to its open tumbling or hopping windows.
func (o *Op) processFixed(x *operators.Exec, ev *event.Event) (bool, error) {
	t, h := nanos(ev.Time), o.horizon(x.Watermark)
	size, adv := int64(o.size), int64(o.advance)
	last := floorDiv(t, adv) * adv // the latest start <= t
	lo := max(t, h) - size         // a window holds t and is open when its start is after lo
	if last <= lo {
		return false, o.late(ev.Time, h)
	}
	if err := o.evaluate(x, ev); err != nil {
		return false, err
	}
	applied := false
	for s := (floorDiv(lo, adv) + 1) * adv; s <= last; s += adv {
		ok, err := o.applyFixed(x, ev, s)
		if err != nil {
			return false, err
		}
		applied = applied || ok
	}
	ev.Duplicate = ev.Duplicate || !applied
	return true, nil
}

// late is the error of an event at t, late for the horizon h.
func (o *Op) late(t time.Time, h int64) error {
	return fmt.Errorf("%w: every window of %s is closed (watermark - lateness is %s)", ErrLate, timestamp(nanos(t)), timestamp(h))
}

// applyFixed applies ev to its window starting at start, unless it was applied before a
// restart; it tells whether it applied it.
func (o *Op) applyFixed(x *operators.Exec, ev *event.Event, start int64) (bool, error) {
	k := o.kvKey(ev.Key, start)
	e, err := x.Store.Get(x.Ctx, o.projection, k)
	if err != nil {
		return false, fmt.Errorf("window %s: %w", o.projection, err)
	}
	if e != nil && e.State != nil && e.Seq >= ev.Seq {
		return false, nil // applied and committed before a restart
	}
	st, ok := o.edit(ev, e)
	if !ok {
		end := start + int64(o.size)
		st.r = o.newRecord(start, end)
		o.open.push(due{at: end, start: start, key: ev.Key})
	}
	o.add(&st)
	o.stage(ev, k, e, &st)
	return true, nil
}

// edit returns a setter of the window of e: its own record in place when the Store lets it
// be changed so, a copy otherwise; false (and no record) for a window without state.
func (o *Op) edit(ev *event.Event, e *event.Entry) (setter, bool) {
	if e == nil || e.State == nil {
		return setter{ev: ev}, false
	}
	if e.Owned && e.State.Shape() == o.shape {
		return setter{ev: ev, r: e.State, inPlace: true, roomy: e.Roomy}, true
	}
	return setter{ev: ev, r: e.State.Clone(o.shape)}, true
}

// stage stages the write of the window k (read as e) that st made, with ev's sequence.
func (o *Op) stage(ev *event.Event, k string, e *event.Entry, st *setter) {
	w := event.Write{Projection: o.projection, Key: k, State: st.r, Seq: ev.Seq, Time: ev.Time, Entry: e, Roomy: st.inPlace && st.roomy}
	if e != nil && e.Time.After(w.Time) {
		w.Time = e.Time
	}
	ev.Writes = append(ev.Writes, w)
}

// newRecord returns the record of an empty open window [start, end).
func (o *Op) newRecord(start, end int64) *event.Record {
	r := event.NewRecord(o.shape, nil)
	r.Set(o.startSlot, event.ValueOf(timestamp(start)))
	r.Set(o.endSlot, event.ValueOf(timestamp(end)))
	r.Set(o.closedSlot, event.ValueOf(false))
	return r
}

// isClosed tells whether the window r says it is closed.
func (o *Op) isClosed(r *event.Record) bool {
	if r.Shape() != o.shape {
		b, _ := r.Get(closedField).(bool)
		return b
	}
	v := r.At(o.closedSlot)
	b, _ := v.Get().(bool)
	return b
}

// Advance implements operators.Clock: on tick, it closes the windows whose end <= to -
// lateness (emitting them), then deletes the closed ones whose end + retention <= to. It costs
// a look at the heads of the index when nothing is due.
func (o *Op) Advance(x *operators.Exec, tick *event.Event, _, to time.Time) error {
	if o.gap > 0 {
		o.settle()
	}
	if len(o.stale) > 0 {
		if err := o.dropStale(x, tick); err != nil {
			return err
		}
	}
	if h := o.horizon(to); len(o.open) > 0 && o.open[0].at <= h {
		if err := o.closeDue(x, tick, h); err != nil {
			return err
		}
	}
	w := nanos(to)
	if d, ok := o.closed.first(); ok && d.at+int64(o.retention) <= w {
		return o.expire(x, tick, w)
	}
	return nil
}

// closeDue closes, in order, the open windows whose end <= h.
func (o *Op) closeDue(x *operators.Exec, tick *event.Event, h int64) error {
	key := tick.Key
	defer func() {
		tick.Key = key
		delete(tick.Vars, "window")
	}()
	var prev due
	for len(o.open) > 0 && o.open[0].at <= h {
		d := o.open.pop()
		if d == prev {
			continue // indexed twice: made by an event whose effects were dropped, then again
		}
		prev = d
		if o.gap > 0 {
			end, ok := o.sessionEnd(d)
			if !ok {
				continue // merged into another or dropped with its event's effects
			}
			if end != d.at {
				o.open.push(due{at: end, start: d.start, key: d.key}) // it grew since
				continue
			}
			o.takeSession(d)
		}
		if err := o.closeWindow(x, tick, d); err != nil {
			return err
		}
	}
	return nil
}

// closeWindow closes the window d and emits it, unless it has no state (its event's effects
// were dropped) or was closed before a restart.
func (o *Op) closeWindow(x *operators.Exec, tick *event.Event, d due) error {
	k := o.kvKey(d.key, d.start)
	e, err := x.Store.Get(x.Ctx, o.projection, k)
	if err != nil {
		return fmt.Errorf("window %s: close %s: %w", o.projection, k, err)
	}
	if e == nil || e.State == nil {
		return nil
	}
	o.closed.push(d)
	if o.isClosed(e.State) {
		return nil // closed and emitted before a restart
	}
	st, _ := o.edit(tick, e)
	st.set(o.closedSlot, event.ValueOf(true))
	tick.Writes = append(tick.Writes, event.Write{Projection: o.projection, Key: k, State: st.r, Seq: tick.Seq, Time: e.Time, Entry: e, Roomy: st.inPlace && st.roomy})
	if err := o.emitWindow(x, tick, d.key, k, st.r); err != nil {
		return fmt.Errorf("window %s: emit %s: %w", o.projection, k, err)
	}
	return nil
}

// expire deletes the closed windows whose end + retention <= w.
func (o *Op) expire(x *operators.Exec, tick *event.Event, w int64) error {
	for {
		d, ok := o.closed.first()
		if !ok || d.at+int64(o.retention) > w {
			return nil
		}
		o.closed.drop()
		if err := o.delete(x, tick, o.kvKey(d.key, d.start)); err != nil {
			return err
		}
	}
}

// dropStale deletes the remnants of merges that Start found.
func (o *Op) dropStale(x *operators.Exec, tick *event.Event) error {
	for _, k := range o.stale {
		if err := o.delete(x, tick, k); err != nil {
			return err
		}
	}
	o.stale = nil
	return nil
}

// deleteTTL is the TTL of a deletion: the server removes the delete marker it leaves after
// that long, so that the projection's keys (which Start lists) do not grow with every window
// ever deleted.
const deleteTTL = time.Minute

// UsesTTL implements operators.TTLProjector: deletions carry a TTL (see deleteTTL).
func (o *Op) UsesTTL() bool { return true }

// delete stages the deletion of the window k on tick, if it has state.
func (o *Op) delete(x *operators.Exec, tick *event.Event, k string) error {
	e, err := x.Store.Get(x.Ctx, o.projection, k)
	if err != nil {
		return fmt.Errorf("window %s: delete %s: %w", o.projection, k, err)
	}
	if e != nil && e.State != nil {
		tick.Writes = append(tick.Writes, event.Write{Projection: o.projection, Key: k, Delete: true, TTL: deleteTTL, Seq: tick.Seq, Time: e.Time, Entry: e})
	}
	return nil
}

// emitWindow stages the derived event of the window k of key, which closed as r, when the
// handler lets the tick emit. An emit that cannot be made (an expression fails, the subject
// is not one to publish on) is staged as such (event.Output.Err): the pipeline dead-letters
// it, with the window as payload, and goes on.
func (o *Op) emitWindow(x *operators.Exec, tick *event.Event, key, k string, r *event.Record) error {
	em := o.emit
	if em == nil || em.handler == operators.Once && tick.Mode != event.Live {
		return nil
	}
	w := make(map[string]any, 2+len(o.aggs))
	w[startField], w[endField] = r.Get(startField), r.Get(endField)
	for _, a := range o.aggs {
		w[a.name] = r.Get(a.name)
	}
	tick.Key = key
	tick.SetVar("window", w)
	out := event.Output{Key: key, ID: "window:" + o.projection + ":" + k}
	out.Subject, out.Data, out.Err = o.render(x, tick)
	if out.Err != nil {
		out.Data, _ = json.Marshal(w) // a map of JSON values always encodes
	}
	out.Type = em.typ
	if out.Type == "" {
		out.Type = out.Subject
	}
	tick.Outputs = append(tick.Outputs, out)
	return nil
}

// render evaluates the emit's subject and data on tick.
func (o *Op) render(x *operators.Exec, tick *event.Event) (string, []byte, error) {
	em := o.emit
	subject, err := x.EvalString(em.subject, tick)
	if err != nil {
		return "", nil, err
	}
	if err := operators.CheckSubject(em.subject, subject); err != nil {
		return subject, nil, err
	}
	var body any
	if em.data != nil {
		if body, err = x.Eval(em.data, tick); err != nil {
			return subject, nil, err
		}
	} else {
		m := make(map[string]any, len(em.fields))
		for _, f := range em.fields {
			if m[f.name], err = x.Eval(f.expr, tick); err != nil {
				return subject, nil, err
			}
		}
		body = m
	}
	data, err := operators.EncodeData(body)
	return subject, data, err
}

// kvKey returns the KV key of key's window starting at start (nanoseconds): <key>.<start in
// Unix milliseconds>.
func (o *Op) kvKey(key string, start int64) string {
	o.buf = append(append(o.buf[:0], key...), '.')
	o.buf = strconv.AppendInt(o.buf, floorDiv(start, int64(time.Millisecond)), 10)
	return string(o.buf)
}

// horizon is watermark - lateness, in nanoseconds: windows ending by then are closed.
func (o *Op) horizon(watermark time.Time) int64 { return nanos(watermark) - int64(o.lateness) }

// Times are handled as Unix nanoseconds, clamped to ±2^62 (the years 1823 to 2116) so that
// adding a duration does not overflow.
const (
	minNanos = -(1 << 62)
	maxNanos = 1 << 62
)

var minTime, maxTime = time.Unix(0, minNanos), time.Unix(0, maxNanos)

// nanos returns t in Unix nanoseconds, clamped (see minNanos).
func nanos(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return minNanos
	case t.After(maxTime):
		return maxNanos
	}
	return t.UnixNano()
}

// timestamp formats the Unix nanoseconds ns as values show times (oracle.Timestamp).
func timestamp(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

// floorDiv is a / b rounded down (b > 0), also for negative a (times before 1970).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// floorMod is a - floorDiv(a, b)*b.
func floorMod(a, b int64) int64 { return a - floorDiv(a, b)*b }

// Claims implements [operators.Claimer]: a window's keys are all its projection's.
func (o *Op) Claims() (string, string) { return o.projection, "" }
