package operators

import (
	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/operators/expr"
)

// keyOp re-keys the events that follow it.
type keyOp struct{ expr *expr.Expr }

func keySpec() Spec {
	return Spec{
		Name:    "key",
		Summary: "key: EXPR re-keys the events that follow",
		Build: func(b BuildContext, raw any) (Operator, error) {
			e, err := CompileExpr(raw, expr.AnyResult, b.Vars)
			if err != nil {
				return nil, FieldErr("", err)
			}
			return &keyOp{expr: e}, nil
		},
	}
}

// Process implements [Operator].
func (k *keyOp) Process(x *Exec, ev *event.Event) (bool, error) {
	key, err := x.EvalString(k.expr, ev)
	if err != nil {
		return false, err
	}
	ev.Key, ev.KeyErr = key, nil
	ev.State = nil // state belongs to the previous key
	return true, nil
}
