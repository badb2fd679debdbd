package window

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/operators/expr"
)

// function is an aggregate function.
type function uint8

// The aggregate functions, in the order of functionNames.
const (
	fnCount function = iota
	fnSum
	fnMin
	fnMax
	fnAvg
	fnLast
	fnDistinct
)

// functionNames are the names of the aggregate functions in YAML.
var functionNames = []string{"count", "sum", "min", "max", "avg", "last", "distinct"}

// Names of the fields a window's value holds besides the aggregates (see the package doc).
const (
	startField    = "start"
	endField      = "end"
	closedField   = "closed"
	countInternal = "_n"
	avgPrefix     = "_avg."
	setPrefix     = "_distinct."
)

// aggregate is one field of a window's value: `name: fn(EXPR)`.
type aggregate struct {
	name string
	fn   function
	expr *expr.Expr // nil for count
	// slot is the field's slot in the operator's shape; aux that of its internal field
	// (_avg.<name>, _distinct.<name>), -1 for none.
	slot, aux int
}

// internal returns the name of a's internal field, "" when it has none.
func (a *aggregate) internal() string {
	switch a.fn {
	case fnAvg:
		return avgPrefix + a.name
	case fnDistinct:
		return setPrefix + a.name
	}
	return ""
}

// numeric tells whether a needs finite numbers.
func (a *aggregate) numeric() bool { return a.fn >= fnSum && a.fn <= fnAvg }

// decodeAggregates reads aggregate: {name: fn(EXPR)}, sorted by name.
func decodeAggregates(raw any, vars []string) ([]aggregate, error) {
	if raw == nil {
		return nil, nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, operators.FieldErr("aggregate", fmt.Errorf("want a map of name -> fn(EXPR), got %s", operators.YAMLKind(raw)))
	}
	var errs []error
	var out []aggregate
	for _, name := range slices.Sorted(maps.Keys(m)) {
		a, err := parseAggregate(name, m[name], vars)
		if err != nil {
			errs = append(errs, operators.FieldErr("aggregate."+name, err))
			continue
		}
		out = append(out, a)
	}
	return out, errors.Join(errs...)
}

// parseAggregate reads one aggregate, `count()` or `fn(EXPR)`.
func parseAggregate(name string, raw any, vars []string) (aggregate, error) {
	a := aggregate{name: name, aux: -1}
	switch {
	case name == "" || strings.HasPrefix(name, "_"):
		return a, fmt.Errorf("aggregate name %q: want a name that does not start with _ (internal fields do)", name)
	case name == startField || name == endField || name == closedField:
		return a, fmt.Errorf("aggregate name %q is taken by the window's own field", name)
	}
	src, ok := raw.(string)
	if !ok {
		return a, fmt.Errorf("want fn(EXPR) or count(), got %s", operators.YAMLKind(raw))
	}
	s := strings.TrimSpace(src)
	open := strings.IndexByte(s, '(')
	if open < 0 || !strings.HasSuffix(s, ")") {
		return a, fmt.Errorf("%q: want fn(EXPR) or count(), fn one of %s", src, strings.Join(functionNames, ", "))
	}
	fn := strings.TrimSpace(s[:open])
	i := slices.Index(functionNames, fn)
	if i < 0 {
		return a, fmt.Errorf("unknown aggregate function %q (valid: %s)", fn, strings.Join(functionNames, ", "))
	}
	a.fn = function(i)
	inner := s[open+1 : len(s)-1]
	switch {
	case a.fn == fnCount && strings.TrimSpace(inner) != "":
		return a, fmt.Errorf("%q: count() takes no expression", src)
	case a.fn == fnCount:
		return a, nil
	case strings.TrimSpace(inner) == "":
		return a, fmt.Errorf("%q: %s needs an expression: %s(EXPR)", src, fn, fn)
	}
	x, err := expr.Compile(inner, expr.AnyResult, vars...)
	var fe *expr.FieldError
	if errors.As(err, &fe) && fe.Column > 0 {
		// The column inside the whole value, where the user sees the expression.
		fe.Column += strings.Index(src, "(") + 1
	}
	a.expr = x
	return a, err
}

// input is what one event contributes to one aggregate.
type input struct {
	num float64     // sum, min, max, avg
	val event.Value // last, distinct
	enc string      // distinct: the value's JSON encoding
}

// evaluate computes what ev contributes to each aggregate into o.in. An error is the event's
// dead letter: `aggregate <name>: ...`.
func (o *Op) evaluate(x *operators.Exec, ev *event.Event) error {
	for i := range o.aggs {
		a := &o.aggs[i]
		if a.fn == fnCount {
			continue
		}
		v, err := x.EvalValue(a.expr, ev)
		if err != nil {
			return fmt.Errorf("aggregate %s: %w", a.name, err)
		}
		in := &o.in[i]
		switch {
		case a.numeric():
			f, ok := o.number(v)
			if !ok {
				return fmt.Errorf("aggregate %s: %s(%s) is %s, not a finite number", a.name, functionNames[a.fn], a.expr.Source, describe(v))
			}
			in.num = f
		case a.fn == fnDistinct:
			b, err := json.Marshal(v.Get())
			if err != nil {
				return fmt.Errorf("aggregate %s: %s(%s): %w", a.name, functionNames[a.fn], a.expr.Source, err)
			}
			in.val, in.enc = v, string(b)
		default:
			in.val = v
		}
	}
	return nil
}

// number returns v's number without boxing it (a record's NumAt reads it unboxed); false
// when v holds no number. Values are finite: EvalValue refuses NaN and infinities.
func (o *Op) number(v event.Value) (float64, bool) {
	o.scratch.Set(0, v)
	return o.scratch.NumAt(scratchShape, 0, "v")
}

// scratchShape is the shape of Op.scratch.
var scratchShape = event.NewShape("v")

// describe shows a value in an error.
func describe(v event.Value) string {
	b, err := json.Marshal(v.Get())
	if err != nil || len(b) > 64 {
		return fmt.Sprintf("a %T", v.Get())
	}
	return string(b)
}

// setter changes a window's record: in place, recording the undo on the event (a record the
// Store owns), or directly (a record of the operator's own, not yet staged).
type setter struct {
	ev      *event.Event
	r       *event.Record
	inPlace bool
	// roomy stays true while every change keeps the record's estimated size (see
	// event.Write.Roomy).
	roomy bool
}

// set sets the field at slot i.
func (s *setter) set(i int, v event.Value) {
	old := s.r.At(i)
	s.roomy = s.roomy && !old.Absent() && old.SameSize(v)
	if s.inPlace {
		s.ev.SetInPlace(s.r, i, v)
	} else {
		s.r.Set(i, v)
	}
}

// add applies the event evaluated in o.in to the window of s.
func (o *Op) add(s *setter) {
	r := s.r
	n, _ := o.numAt(r, o.nSlot)
	for i := range o.aggs {
		a, in := &o.aggs[i], &o.in[i]
		old, had := o.numAt(r, a.slot)
		switch a.fn {
		case fnCount:
			s.set(a.slot, event.NumberValue(old+1))
		case fnSum:
			s.set(a.slot, event.NumberValue(old+in.num))
		case fnMin:
			if !had || in.num < old {
				s.set(a.slot, event.NumberValue(in.num))
			}
		case fnMax:
			if !had || in.num > old {
				s.set(a.slot, event.NumberValue(in.num))
			}
		case fnAvg:
			sum, _ := o.numAt(r, a.aux)
			s.set(a.aux, event.NumberValue(sum+in.num))
			s.set(a.slot, event.NumberValue((sum+in.num)/(n+1)))
		case fnLast:
			s.set(a.slot, in.val)
		case fnDistinct:
			set, added := insert(setOf(r, a.aux), in.enc)
			if added {
				s.set(a.aux, event.ValueOf(set))
				s.set(a.slot, event.NumberValue(float64(len(set))))
			}
		}
	}
	if o.nSlot >= 0 {
		s.set(o.nSlot, event.NumberValue(n+1))
	}
}

// merge adds the aggregates of src, a session joined by an event, to dst, a record of the
// operator's own: the session they merge into.
func (o *Op) merge(dst, src *event.Record) {
	for i := range o.aggs {
		a := &o.aggs[i]
		d, hadD := o.numAt(dst, a.slot)
		v, hadS := o.numAt(src, a.slot)
		switch {
		case a.fn == fnCount || a.fn == fnSum:
			dst.Set(a.slot, event.NumberValue(d+v))
		case a.fn == fnMin && hadS && (!hadD || v < d), a.fn == fnMax && hadS && (!hadD || v > d):
			dst.Set(a.slot, event.NumberValue(v))
		case a.fn == fnAvg:
			x, _ := o.numAt(dst, a.aux)
			y, _ := o.numAt(src, a.aux)
			dst.Set(a.aux, event.NumberValue(x+y))
		case a.fn == fnLast:
			dst.Set(a.slot, src.At(a.slot))
		case a.fn == fnDistinct:
			set := union(setOf(dst, a.aux), setOf(src, a.aux))
			dst.Set(a.aux, event.ValueOf(set))
			dst.Set(a.slot, event.NumberValue(float64(len(set))))
		}
	}
	if o.nSlot >= 0 {
		x, _ := o.numAt(dst, o.nSlot)
		y, _ := o.numAt(src, o.nSlot)
		dst.Set(o.nSlot, event.NumberValue(x+y))
	}
}

// numAt reads the number at slot of r, a record of the operator's shape (0, false for slot
// -1 or a field without a number).
func (o *Op) numAt(r *event.Record, slot int) (float64, bool) {
	if slot < 0 {
		return 0, false
	}
	return r.NumAt(o.shape, slot, o.shape.Names()[slot])
}

// setOf returns the distinct set at slot of r: its values' JSON encodings, sorted.
func setOf(r *event.Record, slot int) []any {
	v := r.At(slot)
	s, _ := v.Get().([]any)
	return s
}

// insert returns set with enc added, a new slice, and true; or set and false when it holds
// enc already. set is never changed: a committed state may share it.
func insert(set []any, enc string) ([]any, bool) {
	i, found := slices.BinarySearchFunc(set, enc, compareEnc)
	if found {
		return set, false
	}
	out := make([]any, 0, len(set)+1)
	out = append(out, set[:i]...)
	out = append(out, enc)
	return append(out, set[i:]...), true
}

// union returns the sorted union of two sorted sets, a new slice.
func union(a, b []any) []any {
	out := make([]any, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		switch c := compareEnc(a[0], enc(b[0])); {
		case c < 0:
			out, a = append(out, a[0]), a[1:]
		case c > 0:
			out, b = append(out, b[0]), b[1:]
		default:
			out, a, b = append(out, a[0]), a[1:], b[1:]
		}
	}
	return append(append(out, a...), b...)
}

// compareEnc orders a set's element e and the encoding t.
func compareEnc(e any, t string) int { return strings.Compare(enc(e), t) }

// enc returns a set's element as the encoding it is.
func enc(e any) string {
	s, _ := e.(string)
	return s
}
