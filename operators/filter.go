package operators

import (
	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/operators/expr"
)

// filterOp drops events for which its expression is false.
type filterOp struct{ cond *expr.Expr }

func filterSpec() Spec {
	return Spec{
		Name:    "filter",
		Summary: "filter: EXPR drops events for which EXPR is false",
		Build: func(b BuildContext, raw any) (Operator, error) {
			e, err := CompileExpr(raw, expr.BoolResult, b.Vars)
			if err != nil {
				return nil, FieldErr("", err)
			}
			return &filterOp{cond: e}, nil
		},
	}
}

// Process implements [Operator].
func (f *filterOp) Process(x *Exec, ev *event.Event) (bool, error) {
	return x.EvalBool(f.cond, ev)
}
