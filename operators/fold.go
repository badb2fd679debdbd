package operators

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/operators/expr"
)

// Handler says which events a fold or an emit reacts to: once, on or all (see the README's
// "Projections, derived events, dead letters").
type Handler string

// Handlers.
const (
	// Once fires for live, in-order events only: never for hydrated or outdated ones.
	Once Handler = "once"
	// On fires for live and hydrated events, not for outdated ones.
	On Handler = "on"
	// All fires for every event.
	All Handler = "all"
)

// AnyType is the `fold.on` entry that handles every type without a handler of its own.
const AnyType = "*"

// foldOp is a reducer: per event type, field assignments onto per-key state.
type foldOp struct {
	projection string
	fields     []string // the state fields it names: initial, assigned, read as state.x
	shape      *event.Shape
	initialMap map[string]any
	initial    *event.Record
	// initialSlots are the slots of initial's fields in shape, in the order of initialNames.
	initialNames []string
	initialSlots []int
	on           map[string][]assign
	handler      Handler
}

// Projection returns the name of the projection the fold writes.
func (f *foldOp) Projection() string { return f.projection }

// StateFields implements [Projector].
func (f *foldOp) StateFields() []string { return f.fields }

// event.Shape implements [Projector].
func (f *foldOp) Shape() *event.Shape { return f.shape }

// UseShape implements [Projector].
func (f *foldOp) UseShape(s *event.Shape) {
	f.shape = s
	f.initial = event.NewRecord(s, f.initialMap)
	f.initialNames = sortedKeys(f.initialMap)
	f.initialSlots = f.initialSlots[:0]
	for _, n := range f.initialNames {
		i, _ := s.Slot(n) // the shape has every field the fold names
		f.initialSlots = append(f.initialSlots, i)
	}
	for _, as := range f.on {
		for i := range as {
			as[i].slot, _ = s.Slot(as[i].field)
		}
	}
	expr.BindShape(s, f.Exprs()...)
}

func foldSpec() Spec {
	return Spec{
		Name:    "fold",
		Summary: "fold: {projection, initial, on: {TYPE: {field: EXPR}}, handler} folds events into per-key state",
		Build:   buildFold,
	}
}

func buildFold(b BuildContext, raw any) (Operator, error) {
	m, errs := Fields(raw, "", "projection", "initial", "on", "handler")
	if m == nil {
		return nil, errors.Join(errs...)
	}
	f := &foldOp{on: map[string][]assign{}}
	initial := map[string]any{}
	f.projection, _ = m["projection"].(string)
	if !ValidName(f.projection) {
		errs = append(errs, FieldErr("projection", fmt.Errorf("projection %q: want a name of letters, digits, - and _", f.projection)))
	}
	if raw, ok := m["initial"]; ok {
		init, err := fieldMap(raw)
		if err != nil {
			errs = append(errs, FieldErr("initial", err))
		} else if initial, err = jsonNormal(init); err != nil {
			errs = append(errs, FieldErr("initial", err))
		}
	}
	on, err := fieldMap(m["on"])
	if err != nil {
		errs = append(errs, FieldErr("on", fmt.Errorf("want a map of event type to field assignments: %w", err)))
	}
	for _, typ := range sortedKeys(on) {
		fields, err := compileFields(on[typ], b.Vars)
		if err != nil {
			errs = append(errs, PrefixFieldErrs("on."+typ, err))
			continue
		}
		f.on[typ] = fields
	}
	if f.handler, err = ParseHandler(m["handler"], On, All); err != nil {
		errs = append(errs, FieldErr("handler", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	f.bindShape(initial)
	return f, nil
}

// bindShape gives the fold the shape of the fields it names (initial, assigned, and read as
// state.x); a pipeline may give it a larger one (see [Projector]).
func (f *foldOp) bindShape(initial map[string]any) {
	f.initialMap = initial
	names := sortedKeys(initial)
	for _, as := range f.on {
		for _, a := range as {
			names = append(names, a.field)
		}
	}
	read, _ := expr.Fields("state", f.Exprs()...)
	f.UseShape(event.NewShape(append(names, read...)...))
	f.fields = f.shape.Names()
}

// Process implements [Operator]: it stages the key's next state on ev.
func (f *foldOp) Process(x *Exec, ev *event.Event) (bool, error) {
	if err := ev.Require(); err != nil {
		return false, err
	}
	var cur *event.Record
	var last event.Entry
	var from *event.Entry
	owned := false // cur may be changed in place
	w, staged := ev.Staged(f.projection, ev.Key)
	if staged {
		// an earlier fold of this event made it: a fresh copy, or the entry's own record
		cur, last.Time, from = w.State, w.Time, w.Entry
		owned = from != nil && from.Owned
	} else {
		e, err := x.Store.Get(x.Ctx, f.projection, ev.Key)
		if err != nil {
			return false, fmt.Errorf("fold %s: %w", f.projection, err)
		}
		from = e
		if e != nil && e.State != nil {
			if e.Seq >= ev.Seq {
				// Applied and committed before a restart: nothing to do, and its emits are
				// committed too (they are published before state).
				ev.Duplicate = true
				ev.State = e.State
				return true, nil
			}
			cur, last, owned = e.State, *e, e.Owned
			if filled, ok := f.filled(cur); ok {
				cur, owned = filled, false
			}
		}
	}
	if cur == nil {
		cur = f.initial
	}
	ev.State = cur
	handlers, ok := f.on[ev.Type]
	if !ok {
		if handlers, ok = f.on[AnyType]; !ok {
			return true, nil
		}
	}
	if !last.Time.IsZero() && ev.Time.Before(last.Time) {
		ev.Outdated = true
		if f.handler != All {
			return true, nil
		}
	}
	// Every value is computed from the state before the event, then assigned.
	var small [8]event.Value
	vals := small[:0]
	for _, a := range handlers {
		v, err := x.EvalValue(a.expr, ev)
		if err != nil {
			return false, err
		}
		vals = append(vals, v)
	}
	// In place when the record is the entry's own and only scalars are written, so that no
	// value can be (or hold) a state: the change is undone if the event's effects are dropped.
	inPlace := owned && cur.Shape() == f.shape && scalars(vals)
	next := cur
	if !inPlace {
		next = cur.Clone(f.shape)
	}
	roomy := inPlace && !staged && from != nil && from.Roomy
	for i, a := range handlers {
		old := next.At(a.slot)
		roomy = roomy && !old.Absent() && old.SameSize(vals[i])
		if inPlace {
			ev.SetInPlace(next, a.slot, vals[i])
		} else {
			next.Set(a.slot, vals[i])
		}
	}
	t := last.Time
	if ev.Time.After(t) {
		t = ev.Time
	}
	ev.Writes = append(ev.Writes, event.Write{Projection: f.projection, Key: ev.Key, State: next, Seq: ev.Seq, Time: t, Entry: from, Roomy: roomy})
	ev.State = next
	return true, nil
}

// scalars tells whether every value is a JSON scalar (no map, no slice).
func scalars(vals []event.Value) bool {
	for i := range vals {
		if !vals[i].Scalar() {
			return false
		}
	}
	return true
}

// jsonNormal returns m as it reads back from JSON, so that literal YAML values behave the
// same as state loaded from a KV bucket.
func jsonNormal(m map[string]any) (map[string]any, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	return out, json.Unmarshal(b, &out)
}

// InitialTypes implements [StateFieldsAssigned].
func (f *foldOp) InitialTypes() map[string]reflect.Type {
	out := make(map[string]reflect.Type, len(f.initialMap))
	for k, v := range f.initialMap {
		out[k] = expr.TypeOf(v)
	}
	return out
}

// Assigned implements [StateFieldsAssigned].
func (f *foldOp) Assigned() []string {
	var out []string
	for _, as := range f.on {
		for _, a := range as {
			out = append(out, a.field)
		}
	}
	return out
}

// CheckState implements [StateChecker]: every handler against the state, its value against
// the type its field has in initial.
func (f *foldOp) CheckState(st *expr.StateType) error {
	var errs []error
	for _, typ := range sortedKeys(f.on) {
		for _, a := range f.on[typ] {
			if err := st.Check(a.expr, expr.AnyResult, st.Type(a.field)); err != nil {
				errs = append(errs, FieldErr("on."+typ+"."+a.field, err))
			}
		}
	}
	return errors.Join(errs...)
}

// filled returns a copy of r with the fields of initial that r lacks set to their initial
// values, and true; r and false when it lacks none. A field added to initial after keys got
// state (a changed pipeline) so reaches them when they are next read, instead of reading as
// nil.
func (f *foldOp) filled(r *event.Record) (*event.Record, bool) {
	var out *event.Record
	for i, name := range f.initialNames {
		if r.Shape() == f.shape {
			if v := r.At(f.initialSlots[i]); !v.Absent() {
				continue
			}
		} else if _, ok := r.Field(name); ok {
			continue
		}
		if out == nil {
			out = r.Clone(f.shape)
		}
		out.Set(f.initialSlots[i], event.ValueOf(f.initialMap[name]))
	}
	return out, out != nil
}
