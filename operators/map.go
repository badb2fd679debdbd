package operators

import (
	"fmt"
	"maps"

	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/operators/expr"
)

// mapOp replaces the event with the value of its expression, which must be a map.
type mapOp struct{ expr *expr.Expr }

func mapSpec() Spec {
	return Spec{
		Name:    "map",
		Summary: "map: EXPR replaces the event with EXPR's value (a map)",
		Build: func(b BuildContext, raw any) (Operator, error) {
			e, err := CompileExpr(raw, expr.AnyResult, b.Vars)
			if err != nil {
				return nil, FieldErr("", err)
			}
			return &mapOp{expr: e}, nil
		},
	}
}

// Process implements [Operator].
func (m *mapOp) Process(x *Exec, ev *event.Event) (bool, error) {
	v, err := x.Eval(m.expr, ev)
	if err != nil {
		return false, err
	}
	n, err := expr.Normalize(v)
	if err != nil {
		return false, fmt.Errorf("%w: %s: %v", expr.ErrEval, m.expr.Source, err)
	}
	fields, ok := n.(map[string]any)
	if !ok {
		return false, fmt.Errorf("%w: %s: got %T, want a map", expr.ErrEval, m.expr.Source, v)
	}
	ev.SetSlots(nil, nil)
	// The event's own copy: set writes into it, and the map may be (part of) a state.
	ev.Fields = maps.Clone(fields)
	return true, nil
}
