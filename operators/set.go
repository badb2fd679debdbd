package operators

import (
	"fmt"

	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/operators/expr"
)

// setOp adds or replaces event fields.
type setOp struct{ fields []assign }

func setSpec() Spec {
	return Spec{
		Name:    "set",
		Summary: "set: {field: EXPR} adds or replaces event fields",
		Build: func(b BuildContext, raw any) (Operator, error) {
			fields, err := compileFields(raw, b.Vars)
			if err != nil {
				return nil, err
			}
			return &setOp{fields: fields}, nil
		},
	}
}

// Process implements [Operator]. Every expression sees the event as it was before the set,
// then all fields are assigned.
func (s *setOp) Process(x *Exec, ev *event.Event) (bool, error) {
	var small [8]any
	vals := small[:0]
	for _, a := range s.fields {
		v, err := x.Eval(a.expr, ev)
		if err != nil {
			return false, err
		}
		n, err := expr.Normalize(v)
		if err != nil {
			return false, fmt.Errorf("%w: %s: %v", expr.ErrEval, a.expr.Source, err)
		}
		vals = append(vals, n)
	}
	if ev.FieldMap() == nil {
		ev.Fields = make(map[string]any, len(s.fields))
	}
	for i, a := range s.fields {
		ev.Fields[a.field] = vals[i]
	}
	return true, nil
}
