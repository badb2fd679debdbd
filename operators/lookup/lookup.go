// Package lookup is the lookup operator: a join of each event with the state of a key in a
// projection, this pipeline's or another's, which later expressions see as a variable.
package lookup

import (
	"errors"
	"fmt"
	"slices"

	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/operators/expr"
)

// Spec returns the spec of the lookup operator:
//
//   - lookup: {projection: users, key: event.user_id, as: user}
//
// Later expressions see `user`: the state of that key in that projection, or nil when it has
// none (or when the key expression gives nil). See [operators.Store.Lookup] for which state:
// this pipeline's latest, or another pipeline's committed state.
func Spec() operators.Spec {
	return operators.Spec{
		Name:    "lookup",
		Summary: "lookup: {projection, key: EXPR, as: NAME} sets NAME to the state of key in projection (nil: none)",
		Build:   build,
	}
}

// op is a built lookup.
type op struct {
	projection string
	key        *expr.Expr
	as         string
}

// reserved are the names an `as` may not take: the expression environment's own.
var reserved = []string{"event", "type", "key", "subject", "headers", "seq", "time", "state", "window", "timer"}

func build(b operators.BuildContext, raw any) (operators.Operator, error) {
	m, errs := operators.Fields(raw, "", "projection", "key", "as")
	if m == nil {
		return nil, errors.Join(errs...)
	}
	o := &op{}
	o.projection, _ = m["projection"].(string)
	if !operators.ValidName(o.projection) {
		errs = append(errs, operators.FieldErr("projection", fmt.Errorf("projection %q: want a name of letters, digits, - and _", o.projection)))
	}
	o.as, _ = m["as"].(string)
	switch {
	case !validIdent(o.as):
		errs = append(errs, operators.FieldErr("as", fmt.Errorf("as %q: want a variable name (letters, digits and _, not starting with a digit)", o.as)))
	case slices.Contains(reserved, o.as):
		errs = append(errs, operators.FieldErr("as", fmt.Errorf("as %q: the name is taken by the expressions' own variables %v", o.as, reserved)))
	case slices.Contains(b.Vars, o.as):
		errs = append(errs, operators.FieldErr("as", fmt.Errorf("as %q: an earlier lookup already sets it", o.as)))
	}
	var err error
	o.key, err = operators.CompileExpr(m["key"], expr.AnyResult, b.Vars)
	errs = append(errs, operators.FieldErr("key", err))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return o, nil
}

func validIdent(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// Process implements [operators.Operator]: it sets the variable to the looked-up state, that
// which an operator before it staged for this event when there is one. A key expression that
// fails is an error (the event is dead-lettered); one that gives nil looks nothing up.
func (o *op) Process(x *operators.Exec, ev *event.Event) (bool, error) {
	v, err := x.Eval(o.key, ev)
	if err != nil {
		return false, err
	}
	if v == nil {
		ev.SetVar(o.as, nil)
		return true, nil
	}
	k, err := expr.Text(v)
	if err != nil {
		return false, fmt.Errorf("%w: lookup key %s: %v", expr.ErrEval, o.key.Source, err)
	}
	var st map[string]any
	if w, ok := ev.Staged(o.projection, k); ok {
		st = w.State.Map() // an operator before this one changed it for this event
	} else if st, err = x.Store.Lookup(x.Ctx, o.projection, k); err != nil {
		return false, fmt.Errorf("lookup %s/%s: %w", o.projection, k, err)
	}
	if st == nil {
		ev.SetVar(o.as, nil) // a nil map would not read as nil
		return true, nil
	}
	ev.SetVar(o.as, st)
	return true, nil
}

// Binds implements [operators.Binder].
func (o *op) Binds() []string { return []string{o.as} }

// Reads implements [operators.Reader].
func (o *op) Reads() []string { return []string{o.projection} }

// ReadsKey implements [operators.KeyReader].
func (o *op) ReadsKey() (string, *expr.Expr) { return o.projection, o.key }

// Exprs implements [operators.Expressioner].
func (o *op) Exprs() []*expr.Expr { return []*expr.Expr{o.key} }
